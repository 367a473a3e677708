/**
 * IPv4 header (RFC 791): version/IHL, DSCP/ECN, total length, id, flags/fragment offset, TTL,
 * protocol, header checksum, addresses, options (IHL*4 - 20 bytes, up to 40).
 */
import { formatIpv4, parseIpv4 } from './address.js';
import { checkUint, outBuffer, put16, slice, u16, u8 } from './bytes.js';
import { internetChecksum, verifyChecksum } from './checksum.js';
import { fail, ok, type Parsed } from './result.js';

export const IPV4_MIN_HEADER = 20;
export const IPV4_MAX_HEADER = 60;
export const IP_PROTO_ICMP = 1;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;
export const IP_PROTO_ICMPV6 = 58;

export class Ipv4View {
  constructor(readonly bytes: Uint8Array) {}
  get version(): number | undefined {
    const b = u8(this.bytes, 0);
    return b === undefined ? undefined : b >> 4;
  }
  /** Header length in bytes (IHL * 4). */
  get headerLength(): number | undefined {
    const b = u8(this.bytes, 0);
    return b === undefined ? undefined : (b & 0x0f) * 4;
  }
  get dscp(): number | undefined {
    const b = u8(this.bytes, 1);
    return b === undefined ? undefined : b >> 2;
  }
  get ecn(): number | undefined {
    const b = u8(this.bytes, 1);
    return b === undefined ? undefined : b & 3;
  }
  get totalLength(): number | undefined {
    return u16(this.bytes, 2);
  }
  get identification(): number | undefined {
    return u16(this.bytes, 4);
  }
  get dontFragment(): boolean | undefined {
    const f = u16(this.bytes, 6);
    return f === undefined ? undefined : (f & 0x4000) !== 0;
  }
  get moreFragments(): boolean | undefined {
    const f = u16(this.bytes, 6);
    return f === undefined ? undefined : (f & 0x2000) !== 0;
  }
  /** Fragment offset in bytes (the field is in 8-byte units). */
  get fragmentOffset(): number | undefined {
    const f = u16(this.bytes, 6);
    return f === undefined ? undefined : (f & 0x1fff) * 8;
  }
  get ttl(): number | undefined {
    return u8(this.bytes, 8);
  }
  get protocol(): number | undefined {
    return u8(this.bytes, 9);
  }
  get checksum(): number | undefined {
    return u16(this.bytes, 10);
  }
  get src(): Uint8Array | undefined {
    return slice(this.bytes, 12, 4);
  }
  get dst(): Uint8Array | undefined {
    return slice(this.bytes, 16, 4);
  }
}

export interface Ipv4Repr {
  readonly src: string;
  readonly dst: string;
  readonly protocol: number;
  readonly ttl: number;
  readonly dscp: number;
  readonly ecn: number;
  readonly identification: number;
  readonly dontFragment: boolean;
  readonly moreFragments: boolean;
  /** In bytes; a multiple of 8. */
  readonly fragmentOffset: number;
  /** Raw option bytes (length a multiple of 4, at most 40). */
  readonly options: Uint8Array;
  readonly payload: Uint8Array;
}

export interface ParsedIpv4 extends Ipv4Repr {
  readonly headerLength: number;
  readonly totalLength: number;
  /** MF set or a non-zero offset: the payload is one piece of a larger datagram. */
  readonly isFragment: boolean;
}

export interface Ipv4ParseOptions {
  /** Default true. */
  readonly verifyChecksum?: boolean;
}

export function parseIpv4Packet(bytes: Uint8Array, opts: Ipv4ParseOptions = {}): Parsed<ParsedIpv4> {
  const v = new Ipv4View(bytes);
  if (bytes.length < IPV4_MIN_HEADER) return fail('truncated');
  if (v.version !== 4) return fail('bad-version');
  const hl = v.headerLength ?? 0;
  const total = v.totalLength ?? 0;
  if (hl < IPV4_MIN_HEADER || total < hl) return fail('bad-length');
  if (bytes.length < total) return fail('truncated');
  const header = bytes.subarray(0, hl);
  if (opts.verifyChecksum !== false && !verifyChecksum(header)) return fail('bad-checksum');
  const src = v.src;
  const dst = v.dst;
  if (src === undefined || dst === undefined) return fail('truncated');
  const mf = v.moreFragments ?? false;
  const fo = v.fragmentOffset ?? 0;
  return ok({
    src: formatIpv4(src) ?? '',
    dst: formatIpv4(dst) ?? '',
    protocol: v.protocol ?? 0,
    ttl: v.ttl ?? 0,
    dscp: v.dscp ?? 0,
    ecn: v.ecn ?? 0,
    identification: v.identification ?? 0,
    dontFragment: v.dontFragment ?? false,
    moreFragments: mf,
    fragmentOffset: fo,
    options: bytes.subarray(IPV4_MIN_HEADER, hl),
    payload: bytes.subarray(hl, total),
    headerLength: hl,
    totalLength: total,
    isFragment: mf || fo !== 0,
  });
}

export function emitIpv4Packet(repr: Ipv4Repr, into?: Uint8Array): Buffer {
  const src = parseIpv4(repr.src);
  const dst = parseIpv4(repr.dst);
  if (src === undefined || dst === undefined) throw new RangeError('emitIpv4: bad address');
  if (repr.options.length % 4 !== 0 || repr.options.length > 40) throw new RangeError('emitIpv4: bad options length');
  if (repr.fragmentOffset % 8 !== 0) throw new RangeError('emitIpv4: fragment offset not a multiple of 8');
  checkUint('protocol', repr.protocol, 8);
  checkUint('ttl', repr.ttl, 8);
  checkUint('dscp', repr.dscp, 6);
  checkUint('ecn', repr.ecn, 2);
  checkUint('identification', repr.identification, 16);
  checkUint('fragment offset', repr.fragmentOffset / 8, 13);
  const hl = IPV4_MIN_HEADER + repr.options.length;
  const total = hl + repr.payload.length;
  checkUint('total length', total, 16);
  const out = outBuffer(total, into);
  out[0] = 0x40 | (hl / 4);
  out[1] = (repr.dscp << 2) | repr.ecn;
  put16(out, 2, total);
  put16(out, 4, repr.identification);
  put16(out, 6, (repr.dontFragment ? 0x4000 : 0) | (repr.moreFragments ? 0x2000 : 0) | (repr.fragmentOffset / 8));
  out[8] = repr.ttl;
  out[9] = repr.protocol;
  out.set(src, 12);
  out.set(dst, 16);
  out.set(repr.options, 20);
  put16(out, 10, internetChecksum(out.subarray(0, hl)));
  out.set(repr.payload, hl);
  return out;
}
