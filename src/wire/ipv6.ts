/**
 * IPv6 fixed header (RFC 8200) and a bounded walk over the extension headers that have the
 * generic (next header, length) shape: hop-by-hop, routing, fragment, destination options, AH.
 */
import { formatIpv6, parseIpv6 } from './address.js';
import { checkUint, outBuffer, put16, put32, slice, u16, u32, u8 } from './bytes.js';
import { fail, ok, type Parsed } from './result.js';

export const IPV6_HEADER_LEN = 40;
export const IPV6_NH_HOPBYHOP = 0;
export const IPV6_NH_ROUTING = 43;
export const IPV6_NH_FRAGMENT = 44;
export const IPV6_NH_AH = 51;
export const IPV6_NH_NONE = 59;
export const IPV6_NH_DSTOPTS = 60;
/** Walks stop (as 'unsupported') after this many extension headers. */
export const IPV6_MAX_EXT_HEADERS = 8;

export class Ipv6View {
  constructor(readonly bytes: Uint8Array) {}
  get version(): number | undefined {
    const b = u8(this.bytes, 0);
    return b === undefined ? undefined : b >> 4;
  }
  get trafficClass(): number | undefined {
    const w = u16(this.bytes, 0);
    return w === undefined ? undefined : (w >> 4) & 0xff;
  }
  get flowLabel(): number | undefined {
    const w = u32(this.bytes, 0);
    return w === undefined ? undefined : w & 0xfffff;
  }
  get payloadLength(): number | undefined {
    return u16(this.bytes, 4);
  }
  get nextHeader(): number | undefined {
    return u8(this.bytes, 6);
  }
  get hopLimit(): number | undefined {
    return u8(this.bytes, 7);
  }
  get src(): Uint8Array | undefined {
    return slice(this.bytes, 8, 16);
  }
  get dst(): Uint8Array | undefined {
    return slice(this.bytes, 24, 16);
  }
}

export interface Ipv6Repr {
  readonly src: string;
  readonly dst: string;
  readonly nextHeader: number;
  readonly hopLimit: number;
  readonly trafficClass: number;
  readonly flowLabel: number;
  /** Everything after the fixed header (extension headers included), as long as payloadLength says. */
  readonly payload: Uint8Array;
}

export interface ParsedIpv6 extends Ipv6Repr {
  /** The addresses as bytes too (pseudo-header checksums need them). */
  readonly srcBytes: Uint8Array;
  readonly dstBytes: Uint8Array;
}

export function parseIpv6Packet(bytes: Uint8Array): Parsed<ParsedIpv6> {
  const v = new Ipv6View(bytes);
  if (bytes.length < IPV6_HEADER_LEN) return fail('truncated');
  if (v.version !== 6) return fail('bad-version');
  const plen = v.payloadLength ?? 0;
  if (bytes.length < IPV6_HEADER_LEN + plen) return fail('truncated');
  const src = v.src;
  const dst = v.dst;
  if (src === undefined || dst === undefined) return fail('truncated');
  return ok({
    src: formatIpv6(src) ?? '',
    dst: formatIpv6(dst) ?? '',
    srcBytes: src,
    dstBytes: dst,
    nextHeader: v.nextHeader ?? 0,
    hopLimit: v.hopLimit ?? 0,
    trafficClass: v.trafficClass ?? 0,
    flowLabel: v.flowLabel ?? 0,
    payload: bytes.subarray(IPV6_HEADER_LEN, IPV6_HEADER_LEN + plen),
  });
}

export function emitIpv6Packet(repr: Ipv6Repr, into?: Uint8Array): Buffer {
  const src = parseIpv6(repr.src);
  const dst = parseIpv6(repr.dst);
  if (src === undefined || dst === undefined) throw new RangeError('emitIpv6: bad address');
  checkUint('next header', repr.nextHeader, 8);
  checkUint('hop limit', repr.hopLimit, 8);
  checkUint('traffic class', repr.trafficClass, 8);
  checkUint('flow label', repr.flowLabel, 20);
  checkUint('payload length', repr.payload.length, 16);
  const out = outBuffer(IPV6_HEADER_LEN + repr.payload.length, into);
  put32(out, 0, (6 * 0x10000000 + repr.trafficClass * 0x100000 + repr.flowLabel) >>> 0);
  put16(out, 4, repr.payload.length);
  out[6] = repr.nextHeader;
  out[7] = repr.hopLimit;
  out.set(src, 8);
  out.set(dst, 24);
  out.set(repr.payload, IPV6_HEADER_LEN);
  return out;
}

export interface Ipv6Fragment {
  /** In bytes. */
  readonly offset: number;
  readonly more: boolean;
  readonly identification: number;
}

export interface Ipv6UpperLayer {
  /** The first header that is not an extension header walked here (58 ICMPv6, 6 TCP, 59 none...). */
  readonly protocol: number;
  /** Offset of that header in the IPv6 payload. */
  readonly offset: number;
  readonly payload: Uint8Array;
  /** The extension header types passed, in order. */
  readonly extensions: readonly number[];
  readonly fragment?: Ipv6Fragment;
}

/**
 * Walks the extension headers of `repr.payload` (at most `max`) to the upper-layer protocol.
 * ESP (50) and unknown types end the walk and are returned as the protocol.
 */
export function ipv6UpperLayer(repr: Pick<Ipv6Repr, 'nextHeader' | 'payload'>, max = IPV6_MAX_EXT_HEADERS): Parsed<Ipv6UpperLayer> {
  const p = repr.payload;
  let nh = repr.nextHeader;
  let off = 0;
  const extensions: number[] = [];
  let fragment: Ipv6Fragment | undefined;
  for (;;) {
    const walkable =
      nh === IPV6_NH_HOPBYHOP || nh === IPV6_NH_ROUTING || nh === IPV6_NH_FRAGMENT || nh === IPV6_NH_DSTOPTS || nh === IPV6_NH_AH;
    if (!walkable) break;
    // Hop-by-hop is only legal first.
    if (nh === IPV6_NH_HOPBYHOP && extensions.length > 0) return fail('malformed');
    if (extensions.length >= max) return fail('unsupported');
    const next = u8(p, off);
    const lenField = u8(p, off + 1);
    if (next === undefined || lenField === undefined) return fail('truncated');
    let len: number;
    if (nh === IPV6_NH_FRAGMENT) {
      len = 8;
      const fo = u16(p, off + 2);
      const id = u32(p, off + 4);
      if (fo === undefined || id === undefined) return fail('truncated');
      if (fragment !== undefined) return fail('malformed');
      fragment = { offset: fo & 0xfff8, more: (fo & 1) === 1, identification: id };
    } else if (nh === IPV6_NH_AH) {
      len = (lenField + 2) * 4;
    } else {
      len = (lenField + 1) * 8;
    }
    if (off + len > p.length) return fail('truncated');
    extensions.push(nh);
    nh = next;
    off += len;
  }
  return ok({
    protocol: nh,
    offset: off,
    payload: p.subarray(off),
    extensions,
    ...(fragment !== undefined ? { fragment } : {}),
  });
}
