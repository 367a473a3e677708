/**
 * Ethernet II frames with up to two 802.1Q / 802.1ad tags (no FCS: what AF_PACKET delivers).
 *
 *   dst(6) src(6) [tpid(2) tci(2)]{0,2} ethertype(2) payload
 */
import { formatMac, parseMac } from './address.js';
import { checkUint, outBuffer, put16, slice, u16 } from './bytes.js';
import { fail, ok, type Parsed } from './result.js';

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;
export const ETHERTYPE_QINQ_OLD = 0x9100;

export const ETHERNET_HEADER_LEN = 14;
export const VLAN_TAG_LEN = 4;
/** Minimum frame length without FCS; shorter frames are padded on emit when asked. */
export const ETHERNET_MIN_FRAME = 60;
export const MAX_VLAN_TAGS = 2;

const isTagType = (t: number): boolean => t === ETHERTYPE_VLAN || t === ETHERTYPE_QINQ || t === ETHERTYPE_QINQ_OLD;

/** Raw accessors over a frame; every getter returns undefined when its bytes are missing. */
export class EthernetView {
  constructor(readonly bytes: Uint8Array) {}
  get dst(): Uint8Array | undefined {
    return slice(this.bytes, 0, 6);
  }
  get src(): Uint8Array | undefined {
    return slice(this.bytes, 6, 6);
  }
  /** The type/TPID field right after the addresses (0x8100 for a tagged frame). */
  get outerType(): number | undefined {
    return u16(this.bytes, 12);
  }
  /** True when the first type field is a VLAN TPID. */
  get tagged(): boolean {
    const t = this.outerType;
    return t !== undefined && isTagType(t);
  }
}

export interface VlanTag {
  /** 0x8100 (802.1Q), 0x88a8 (802.1ad) or 0x9100. */
  readonly tpid: number;
  readonly pcp: number;
  readonly dei: boolean;
  readonly vid: number;
}

export interface EthernetRepr {
  readonly dst: string;
  readonly src: string;
  /** Outermost first; empty for an untagged frame. */
  readonly vlans: readonly VlanTag[];
  readonly ethertype: number;
  /** Everything after the header (may include link padding). A view, not a copy, when parsed. */
  readonly payload: Uint8Array;
}

export interface ParsedEthernet extends EthernetRepr {
  readonly headerLength: number;
}

export function parseEthernet(bytes: Uint8Array): Parsed<ParsedEthernet> {
  const v = new EthernetView(bytes);
  const dst = v.dst;
  const src = v.src;
  let type = v.outerType;
  if (dst === undefined || src === undefined || type === undefined) return fail('truncated');
  let off = 14;
  const vlans: VlanTag[] = [];
  while (isTagType(type)) {
    if (vlans.length === MAX_VLAN_TAGS) return fail('unsupported');
    const tci = u16(bytes, off);
    const inner = u16(bytes, off + 2);
    if (tci === undefined || inner === undefined) return fail('truncated');
    vlans.push({ tpid: type, pcp: tci >> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0x0fff });
    type = inner;
    off += 4;
  }
  // Values below 0x0600 are 802.3 lengths (LLC frames), not Ethernet II types.
  if (type < 0x0600) return fail('unsupported');
  return ok({
    dst: formatMac(dst) ?? '',
    src: formatMac(src) ?? '',
    vlans,
    ethertype: type,
    payload: bytes.subarray(off),
    headerLength: off,
  });
}

export function ethernetHeaderLength(repr: Pick<EthernetRepr, 'vlans'>): number {
  return ETHERNET_HEADER_LEN + VLAN_TAG_LEN * repr.vlans.length;
}

export interface EthernetEmitOptions {
  /** Zero-pad to 60 bytes (the minimum on the wire without FCS). Default false. */
  readonly pad?: boolean;
}

export function emitEthernet(repr: EthernetRepr, into?: Uint8Array, opts: EthernetEmitOptions = {}): Buffer {
  const dst = parseMac(repr.dst);
  const src = parseMac(repr.src);
  if (dst === undefined || src === undefined) throw new RangeError('emitEthernet: bad MAC');
  if (repr.vlans.length > MAX_VLAN_TAGS) throw new RangeError('emitEthernet: too many VLAN tags');
  checkUint('ethertype', repr.ethertype, 16);
  const hl = ethernetHeaderLength(repr);
  const len = Math.max(hl + repr.payload.length, opts.pad === true ? ETHERNET_MIN_FRAME : 0);
  const out = outBuffer(len, into);
  out.set(dst, 0);
  out.set(src, 6);
  let off = 12;
  for (const tag of repr.vlans) {
    if (!isTagType(tag.tpid)) throw new RangeError(`emitEthernet: TPID ${tag.tpid} is not a VLAN type`);
    checkUint('pcp', tag.pcp, 3);
    checkUint('vid', tag.vid, 12);
    put16(out, off, tag.tpid);
    put16(out, off + 2, (tag.pcp << 13) | (tag.dei ? 0x1000 : 0) | tag.vid);
    off += 4;
  }
  put16(out, off, repr.ethertype);
  out.set(repr.payload, hl);
  return out;
}
