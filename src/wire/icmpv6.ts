/**
 * ICMPv6 (RFC 4443) with the checksum over the IPv6 pseudo-header, and the two Neighbor Discovery
 * messages linkgate answers (RFC 4861): Neighbor Solicitation (135) and Advertisement (136) with
 * their source/target link-layer address options. Other types are kept as opaque bodies.
 */
import { formatIpv6, formatMac, isIpv6Multicast, parseIpv6, parseMac } from './address.js';
import { checkUint, outBuffer, put16, put32, slice, u16, u32, u8 } from './bytes.js';
import { fold, pseudoHeaderSum, sum16 } from './checksum.js';
import { IP_PROTO_ICMPV6 } from './ipv4.js';
import { fail, ok, type Parsed } from './result.js';

export const ICMPV6_NEIGHBOR_SOLICIT = 135;
export const ICMPV6_NEIGHBOR_ADVERT = 136;
export const NDP_OPT_SOURCE_LLADDR = 1;
export const NDP_OPT_TARGET_LLADDR = 2;
/** Bound on the options walked in one NDP message (a 1500-byte packet holds at most ~180). */
export const NDP_MAX_OPTIONS = 32;

export class Icmpv6View {
  constructor(readonly bytes: Uint8Array) {}
  get type(): number | undefined {
    return u8(this.bytes, 0);
  }
  get code(): number | undefined {
    return u8(this.bytes, 1);
  }
  get checksum(): number | undefined {
    return u16(this.bytes, 2);
  }
  /** The 32-bit word after the checksum (NA flags, echo id/seq...). */
  get word(): number | undefined {
    return u32(this.bytes, 4);
  }
  /** NS/NA target address. */
  get target(): Uint8Array | undefined {
    return slice(this.bytes, 8, 16);
  }
}

export interface NdpOption {
  readonly type: number;
  /** The option's bytes after type and length. */
  readonly data: Uint8Array;
}

export interface NdpOptions {
  readonly sourceLinkAddr?: string;
  readonly targetLinkAddr?: string;
  /** Every option in order, the two above included. */
  readonly all: readonly NdpOption[];
}

export interface NeighborSolicitRepr {
  readonly kind: 'ns';
  readonly target: string;
  readonly sourceLinkAddr?: string;
}

export interface NeighborAdvertRepr {
  readonly kind: 'na';
  readonly router: boolean;
  readonly solicited: boolean;
  readonly override: boolean;
  readonly target: string;
  readonly targetLinkAddr?: string;
}

export interface OtherIcmpv6Repr {
  readonly kind: 'other';
  readonly type: number;
  readonly code: number;
  /** Everything after the checksum. */
  readonly body: Uint8Array;
}

export type Icmpv6Repr = NeighborSolicitRepr | NeighborAdvertRepr | OtherIcmpv6Repr;

export type ParsedIcmpv6 =
  (NeighborSolicitRepr & { readonly options: NdpOptions }) | (NeighborAdvertRepr & { readonly options: NdpOptions }) | OtherIcmpv6Repr;

/** Walks NDP options (8-byte units; a zero length is illegal and refuses the whole message). */
export function parseNdpOptions(bytes: Uint8Array, max = NDP_MAX_OPTIONS): Parsed<NdpOptions> {
  const all: NdpOption[] = [];
  let sll: string | undefined;
  let tll: string | undefined;
  let off = 0;
  while (off < bytes.length) {
    const type = u8(bytes, off);
    const units = u8(bytes, off + 1);
    if (type === undefined || units === undefined) return fail('bad-option');
    if (units === 0) return fail('bad-option');
    if (all.length >= max) return fail('bad-option');
    const data = slice(bytes, off + 2, units * 8 - 2);
    if (data === undefined) return fail('bad-option');
    if (type === NDP_OPT_SOURCE_LLADDR || type === NDP_OPT_TARGET_LLADDR) {
      // Ethernet: one unit, 6 address bytes (RFC 2464 8).
      const mac = slice(data, 0, 6);
      const text = mac && formatMac(mac);
      if (text !== undefined && units === 1) {
        if (type === NDP_OPT_SOURCE_LLADDR) sll ??= text;
        else tll ??= text;
      }
    }
    all.push({ type, data });
    off += units * 8;
  }
  return ok({
    all,
    ...(sll !== undefined ? { sourceLinkAddr: sll } : {}),
    ...(tll !== undefined ? { targetLinkAddr: tll } : {}),
  });
}

export interface Icmpv6ParseOptions {
  /** Default true. */
  readonly verifyChecksum?: boolean;
}

/**
 * Parses an ICMPv6 message; `src`/`dst` are the IPv6 addresses (bytes or text) for the checksum.
 * NS/NA shorter than 24 bytes, with a non-zero code, a multicast target, or bad options are refused.
 */
export function parseIcmpv6(
  bytes: Uint8Array,
  src: Uint8Array | string,
  dst: Uint8Array | string,
  opts: Icmpv6ParseOptions = {},
): Parsed<ParsedIcmpv6> {
  const v = new Icmpv6View(bytes);
  const type = v.type;
  const code = v.code;
  if (bytes.length < 4 || type === undefined || code === undefined) return fail('truncated');
  if (opts.verifyChecksum !== false) {
    const s = typeof src === 'string' ? parseIpv6(src) : src;
    const d = typeof dst === 'string' ? parseIpv6(dst) : dst;
    if (s === undefined || d === undefined || s.length !== 16 || d.length !== 16) return fail('malformed');
    if (fold(sum16(bytes, pseudoHeaderSum(s, d, IP_PROTO_ICMPV6, bytes.length))) !== 0xffff) return fail('bad-checksum');
  }
  if (type !== ICMPV6_NEIGHBOR_SOLICIT && type !== ICMPV6_NEIGHBOR_ADVERT) {
    return ok({ kind: 'other', type, code, body: bytes.subarray(4) });
  }
  if (bytes.length < 24) return fail('truncated');
  if (code !== 0) return fail('malformed');
  const target = v.target;
  const word = v.word;
  if (target === undefined || word === undefined) return fail('truncated');
  if (isIpv6Multicast(target)) return fail('malformed');
  const options = parseNdpOptions(bytes.subarray(24));
  if (!options.ok) return options;
  const targetText = formatIpv6(target) ?? '';
  const o = options.value;
  if (type === ICMPV6_NEIGHBOR_SOLICIT) {
    return ok({
      kind: 'ns',
      target: targetText,
      options: o,
      ...(o.sourceLinkAddr !== undefined ? { sourceLinkAddr: o.sourceLinkAddr } : {}),
    });
  }
  return ok({
    kind: 'na',
    router: (word & 0x80000000) !== 0,
    solicited: (word & 0x40000000) !== 0,
    override: (word & 0x20000000) !== 0,
    target: targetText,
    options: o,
    ...(o.targetLinkAddr !== undefined ? { targetLinkAddr: o.targetLinkAddr } : {}),
  });
}

function bodyLength(repr: Icmpv6Repr): number {
  if (repr.kind === 'other') return 4 + repr.body.length;
  const ll = repr.kind === 'ns' ? repr.sourceLinkAddr : repr.targetLinkAddr;
  return 24 + (ll !== undefined ? 8 : 0);
}

/** Emits the message with its checksum computed over the pseudo-header of `src` -> `dst`. */
export function emitIcmpv6(repr: Icmpv6Repr, src: string, dst: string, into?: Uint8Array): Buffer {
  const s = parseIpv6(src);
  const d = parseIpv6(dst);
  if (s === undefined || d === undefined) throw new RangeError('emitIcmpv6: bad address');
  const len = bodyLength(repr);
  const out = outBuffer(len, into);
  if (repr.kind === 'other') {
    checkUint('type', repr.type, 8);
    checkUint('code', repr.code, 8);
    out[0] = repr.type;
    out[1] = repr.code;
    out.set(repr.body, 4);
  } else {
    const target = parseIpv6(repr.target);
    if (target === undefined) throw new RangeError('emitIcmpv6: bad target');
    out[0] = repr.kind === 'ns' ? ICMPV6_NEIGHBOR_SOLICIT : ICMPV6_NEIGHBOR_ADVERT;
    if (repr.kind === 'na') {
      put32(out, 4, ((repr.router ? 0x80000000 : 0) | (repr.solicited ? 0x40000000 : 0) | (repr.override ? 0x20000000 : 0)) >>> 0);
    }
    out.set(target, 8);
    const ll = repr.kind === 'ns' ? repr.sourceLinkAddr : repr.targetLinkAddr;
    if (ll !== undefined) {
      const mac = parseMac(ll);
      if (mac === undefined) throw new RangeError('emitIcmpv6: bad link-layer address');
      out[24] = repr.kind === 'ns' ? NDP_OPT_SOURCE_LLADDR : NDP_OPT_TARGET_LLADDR;
      out[25] = 1;
      out.set(mac, 26);
    }
  }
  put16(out, 2, ~fold(sum16(out, pseudoHeaderSum(s, d, IP_PROTO_ICMPV6, len))) & 0xffff);
  return out;
}
