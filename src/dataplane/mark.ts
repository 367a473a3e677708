/**
 * The packet mark linkgate's nftables map sets, and the accepted socket carries:
 *
 *   bits 31..28  tag 0xA: "set by linkgate" (lets `ip rule` match our traffic only)
 *   bits 27..20  network id (0 = the default network; tenant networks get 1..255)
 *   bits 19..0   slot: one per (port, MAC, IP) binding, never 0
 */
export const MARK_TAG = 0xa0000000;
export const MARK_TAG_MASK = 0xf0000000;
export const NETWORK_SHIFT = 20;
export const NETWORK_MASK = 0x0ff00000;
export const SLOT_MASK = 0x000fffff;
export const MAX_SLOT = SLOT_MASK;
export const MAX_NETWORK = 0xff;

export function makeMark(network: number, slot: number): number {
  if (!Number.isInteger(slot) || slot < 1 || slot > MAX_SLOT) throw new RangeError(`slot out of range: ${slot}`);
  if (!Number.isInteger(network) || network < 0 || network > MAX_NETWORK) throw new RangeError(`network out of range: ${network}`);
  return (MARK_TAG | (network << NETWORK_SHIFT) | slot) >>> 0;
}

/** Undefined when the mark was not set by linkgate. */
export function parseMark(mark: number): { network: number; slot: number } | undefined {
  if ((mark & MARK_TAG_MASK) >>> 0 !== MARK_TAG) return undefined;
  const slot = mark & SLOT_MASK;
  if (slot === 0) return undefined;
  return { network: (mark & NETWORK_MASK) >>> NETWORK_SHIFT, slot };
}

/** The `ip rule fwmark VALUE/MASK` that selects one network's replies. */
export function networkRuleMatch(network: number): { fwmark: number; fwmask: number } {
  return { fwmark: (MARK_TAG | (network << NETWORK_SHIFT)) >>> 0, fwmask: (MARK_TAG_MASK | NETWORK_MASK) >>> 0 };
}
