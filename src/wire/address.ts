/**
 * Address text <-> bytes for MAC, IPv4 and IPv6, and the IPv6 solicited-node multicast helpers.
 * Parsers return undefined on bad text (never throw); formatters produce the canonical text
 * (MAC lowercase colon-separated, IPv4 dotted quad, IPv6 per RFC 5952).
 */

const HEX2 = /^[0-9a-fA-F]{1,2}$/;

export function parseMac(text: string): Uint8Array | undefined {
  if (typeof text !== 'string') return undefined;
  const parts = text.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => HEX2.test(p))) return undefined;
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

/** "aa:bb:cc:dd:ee:ff" for 6 bytes; undefined for any other length. */
export function formatMac(b: Uint8Array): string | undefined {
  if (b.length !== 6) return undefined;
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

export function parseIpv4(text: string): Uint8Array | undefined {
  if (typeof text !== 'string') return undefined;
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] ?? '';
    // Decimal only, no leading zeros (they read as octal in some libcs).
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

export function formatIpv4(b: Uint8Array): string | undefined {
  return b.length === 4 ? Array.from(b).join('.') : undefined;
}

export function parseIpv6(text: string): Uint8Array | undefined {
  if (typeof text !== 'string' || text.length > 45 || text.length < 2) return undefined;
  let s = text;
  const words: number[] = [];
  // An embedded dotted IPv4 tail (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = s.lastIndexOf(':');
  if (lastColon === -1) return undefined;
  if (s.indexOf('.', lastColon) !== -1) {
    const v4 = parseIpv4(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    const hi = ((v4[0] ?? 0) << 8) | (v4[1] ?? 0);
    const lo = ((v4[2] ?? 0) << 8) | (v4[3] ?? 0);
    s = `${s.slice(0, lastColon + 1)}${hi.toString(16)}:${lo.toString(16)}`;
  }
  const dbl = s.indexOf('::');
  if (dbl !== -1 && s.indexOf('::', dbl + 1) !== -1) return undefined;
  const parseGroup = (g: string): number | undefined => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : undefined);
  const parseList = (part: string): number[] | undefined => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      const v = parseGroup(g);
      if (v === undefined) return undefined;
      out.push(v);
    }
    return out;
  };
  if (dbl === -1) {
    const all = parseList(s);
    if (all === undefined) return undefined;
    words.push(...all);
    if (words.length !== 8) return undefined;
  } else {
    const head = parseList(s.slice(0, dbl));
    const rest = parseList(s.slice(dbl + 2));
    if (head === undefined || rest === undefined) return undefined;
    const given = head.length + rest.length;
    if (given > 7) return undefined;
    words.push(...head, ...new Array<number>(8 - given).fill(0), ...rest);
  }
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** RFC 5952 text: lowercase, no leading zeros, the longest run (>= 2) of zero words as "::". */
export function formatIpv6(b: Uint8Array): string | undefined {
  if (b.length !== 16) return undefined;
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push(((b[2 * i] ?? 0) << 8) | (b[2 * i + 1] ?? 0));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(':');
  if (bestLen < 2) return hex(w);
  return `${hex(w.slice(0, bestStart))}::${hex(w.slice(bestStart + bestLen))}`;
}

/** Canonical forms (or undefined): useful to compare configured text with parsed reprs. */
export const canonicalMac = (t: string): string | undefined => {
  const b = parseMac(t);
  return b && formatMac(b);
};
export const canonicalIpv4 = (t: string): string | undefined => {
  const b = parseIpv4(t);
  return b && formatIpv4(b);
};
export const canonicalIpv6 = (t: string): string | undefined => {
  const b = parseIpv6(t);
  return b && formatIpv6(b);
};

/** ff02::1:ffXX:XXXX for the low 24 bits of `addr` (RFC 4291 2.7.1). */
export function solicitedNodeBytes(addr: Uint8Array): Uint8Array {
  const out = new Uint8Array(16);
  out.set([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff]);
  out[13] = addr[13] ?? 0;
  out[14] = addr[14] ?? 0;
  out[15] = addr[15] ?? 0;
  return out;
}

export function solicitedNodeAddress(addr: string): string | undefined {
  const b = parseIpv6(addr);
  return b && formatIpv6(solicitedNodeBytes(b));
}

/** 33:33 + the low 32 bits of an IPv6 multicast address (RFC 2464 7). */
export function ipv6MulticastMacBytes(group: Uint8Array): Uint8Array {
  return Uint8Array.from([0x33, 0x33, group[12] ?? 0, group[13] ?? 0, group[14] ?? 0, group[15] ?? 0]);
}

export function ipv6MulticastMac(group: string): string | undefined {
  const b = parseIpv6(group);
  return b && formatMac(ipv6MulticastMacBytes(b));
}

export const isIpv6Multicast = (b: Uint8Array): boolean => b.length === 16 && b[0] === 0xff;
export const isIpv6Unspecified = (b: Uint8Array): boolean => b.length === 16 && b.every((x) => x === 0);
export const isMacMulticast = (b: Uint8Array): boolean => b.length === 6 && ((b[0] ?? 0) & 1) === 1;
export const isMacBroadcast = (b: Uint8Array): boolean => b.length === 6 && b.every((x) => x === 0xff);

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
