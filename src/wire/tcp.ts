/**
 * TCP header (RFC 9293): ports, sequence/acknowledgment numbers, data offset, flags, window,
 * checksum over the IPv4 or IPv6 pseudo-header, urgent pointer, and a bounded option walk.
 */
import { parseIpv4, parseIpv6 } from './address.js';
import { checkUint, outBuffer, put16, put32, slice, u16, u32, u8 } from './bytes.js';
import { fold, pseudoHeaderSum, sum16 } from './checksum.js';
import { IP_PROTO_TCP } from './ipv4.js';
import { fail, ok, type Parsed } from './result.js';

export const TCP_MIN_HEADER = 20;
export const TCP_MAX_HEADER = 60;

export interface TcpFlags {
  readonly fin: boolean;
  readonly syn: boolean;
  readonly rst: boolean;
  readonly psh: boolean;
  readonly ack: boolean;
  readonly urg: boolean;
  readonly ece: boolean;
  readonly cwr: boolean;
}

const FLAG_BITS: ReadonlyArray<[keyof TcpFlags, number]> = [
  ['fin', 0x01],
  ['syn', 0x02],
  ['rst', 0x04],
  ['psh', 0x08],
  ['ack', 0x10],
  ['urg', 0x20],
  ['ece', 0x40],
  ['cwr', 0x80],
];

export function flagsFromByte(b: number): TcpFlags {
  return {
    fin: (b & 0x01) !== 0,
    syn: (b & 0x02) !== 0,
    rst: (b & 0x04) !== 0,
    psh: (b & 0x08) !== 0,
    ack: (b & 0x10) !== 0,
    urg: (b & 0x20) !== 0,
    ece: (b & 0x40) !== 0,
    cwr: (b & 0x80) !== 0,
  };
}

export function flagsToByte(f: Partial<TcpFlags>): number {
  let b = 0;
  for (const [k, bit] of FLAG_BITS) if (f[k] === true) b |= bit;
  return b;
}

export class TcpView {
  constructor(readonly bytes: Uint8Array) {}
  get srcPort(): number | undefined {
    return u16(this.bytes, 0);
  }
  get dstPort(): number | undefined {
    return u16(this.bytes, 2);
  }
  get seq(): number | undefined {
    return u32(this.bytes, 4);
  }
  get ack(): number | undefined {
    return u32(this.bytes, 8);
  }
  /** Header length in bytes (data offset * 4). */
  get headerLength(): number | undefined {
    const b = u8(this.bytes, 12);
    return b === undefined ? undefined : (b >> 4) * 4;
  }
  get flags(): TcpFlags | undefined {
    const b = u8(this.bytes, 13);
    return b === undefined ? undefined : flagsFromByte(b);
  }
  get window(): number | undefined {
    return u16(this.bytes, 14);
  }
  get checksum(): number | undefined {
    return u16(this.bytes, 16);
  }
  get urgent(): number | undefined {
    return u16(this.bytes, 18);
  }
}

export interface TcpRepr {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  readonly flags: TcpFlags;
  readonly window: number;
  readonly urgent: number;
  /** Raw option bytes (padded to a multiple of 4 on emit; at most 40). */
  readonly options: Uint8Array;
  readonly payload: Uint8Array;
}

export interface ParsedTcp extends TcpRepr {
  readonly headerLength: number;
}

/** The addresses of the enclosing IP header (both IPv4 or both IPv6; text or bytes). */
export interface PseudoHeader {
  readonly src: string | Uint8Array;
  readonly dst: string | Uint8Array;
}

function addrBytes(a: string | Uint8Array): Uint8Array | undefined {
  if (typeof a !== 'string') return a.length === 4 || a.length === 16 ? a : undefined;
  return a.includes(':') ? parseIpv6(a) : parseIpv4(a);
}

function pseudoSum(ph: PseudoHeader, length: number): number | undefined {
  const s = addrBytes(ph.src);
  const d = addrBytes(ph.dst);
  if (s === undefined || d === undefined || s.length !== d.length) return undefined;
  return pseudoHeaderSum(s, d, IP_PROTO_TCP, length);
}

/**
 * Parses a TCP segment (the whole IP payload). With `pseudo`, the checksum is verified; without,
 * it is not (e.g. when the NIC already did).
 */
export function parseTcp(bytes: Uint8Array, pseudo?: PseudoHeader): Parsed<ParsedTcp> {
  const v = new TcpView(bytes);
  if (bytes.length < TCP_MIN_HEADER) return fail('truncated');
  const hl = v.headerLength ?? 0;
  if (hl < TCP_MIN_HEADER) return fail('bad-length');
  if (hl > bytes.length) return fail('truncated');
  if (pseudo !== undefined) {
    const acc = pseudoSum(pseudo, bytes.length);
    if (acc === undefined) return fail('malformed');
    if (fold(sum16(bytes, acc)) !== 0xffff) return fail('bad-checksum');
  }
  const options = bytes.subarray(TCP_MIN_HEADER, hl);
  const walked = parseTcpOptions(options);
  if (!walked.ok) return walked;
  return ok({
    srcPort: v.srcPort ?? 0,
    dstPort: v.dstPort ?? 0,
    seq: v.seq ?? 0,
    ack: v.ack ?? 0,
    flags: v.flags ?? flagsFromByte(0),
    window: v.window ?? 0,
    urgent: v.urgent ?? 0,
    options,
    payload: bytes.subarray(hl),
    headerLength: hl,
  });
}

export function emitTcp(repr: TcpRepr, pseudo: PseudoHeader, into?: Uint8Array): Buffer {
  for (const [k, bits] of [
    ['srcPort', 16],
    ['dstPort', 16],
    ['seq', 32],
    ['ack', 32],
    ['window', 16],
    ['urgent', 16],
  ] as const) {
    checkUint(k, repr[k], bits);
  }
  if (repr.options.length > 40) throw new RangeError('emitTcp: options longer than 40 bytes');
  const optLen = Math.ceil(repr.options.length / 4) * 4;
  const hl = TCP_MIN_HEADER + optLen;
  const len = hl + repr.payload.length;
  const acc = pseudoSum(pseudo, len);
  if (acc === undefined) throw new RangeError('emitTcp: bad pseudo-header addresses');
  const out = outBuffer(len, into);
  put16(out, 0, repr.srcPort);
  put16(out, 2, repr.dstPort);
  put32(out, 4, repr.seq);
  put32(out, 8, repr.ack);
  out[12] = (hl / 4) << 4;
  out[13] = flagsToByte(repr.flags);
  put16(out, 14, repr.window);
  put16(out, 18, repr.urgent);
  out.set(repr.options, TCP_MIN_HEADER);
  out.set(repr.payload, hl);
  put16(out, 16, ~fold(sum16(out, acc)) & 0xffff);
  return out;
}

export type TcpOption =
  | { readonly kind: 'mss'; readonly value: number }
  | { readonly kind: 'window-scale'; readonly shift: number }
  | { readonly kind: 'sack-permitted' }
  | { readonly kind: 'sack'; readonly blocks: ReadonlyArray<readonly [number, number]> }
  | { readonly kind: 'timestamp'; readonly value: number; readonly echo: number }
  | { readonly kind: 'unknown'; readonly type: number; readonly data: Uint8Array };

/**
 * Walks TCP options (EOL ends the list, NOP is skipped). An option whose length is < 2, runs past
 * the area, or has the wrong size for its kind refuses the whole list ('bad-option').
 */
export function parseTcpOptions(bytes: Uint8Array): Parsed<TcpOption[]> {
  const out: TcpOption[] = [];
  let off = 0;
  while (off < bytes.length) {
    const kind = u8(bytes, off) ?? 0;
    if (kind === 0) break;
    if (kind === 1) {
      off += 1;
      continue;
    }
    const len = u8(bytes, off + 1);
    if (len === undefined || len < 2) return fail('bad-option');
    const data = slice(bytes, off + 2, len - 2);
    if (data === undefined) return fail('bad-option');
    switch (kind) {
      case 2:
        if (len !== 4) return fail('bad-option');
        out.push({ kind: 'mss', value: u16(data, 0) ?? 0 });
        break;
      case 3:
        if (len !== 3) return fail('bad-option');
        out.push({ kind: 'window-scale', shift: u8(data, 0) ?? 0 });
        break;
      case 4:
        if (len !== 2) return fail('bad-option');
        out.push({ kind: 'sack-permitted' });
        break;
      case 5: {
        if ((len - 2) % 8 !== 0 || len === 2) return fail('bad-option');
        const blocks: Array<readonly [number, number]> = [];
        for (let i = 0; i < data.length; i += 8) blocks.push([u32(data, i) ?? 0, u32(data, i + 4) ?? 0]);
        out.push({ kind: 'sack', blocks });
        break;
      }
      case 8:
        if (len !== 10) return fail('bad-option');
        out.push({ kind: 'timestamp', value: u32(data, 0) ?? 0, echo: u32(data, 4) ?? 0 });
        break;
      default:
        out.push({ kind: 'unknown', type: kind, data });
    }
    off += len;
  }
  return ok(out);
}

/** Encodes options (unpadded; emitTcp pads with zeros = EOL). */
export function emitTcpOptions(opts: readonly TcpOption[]): Buffer {
  const parts: number[] = [];
  for (const o of opts) {
    switch (o.kind) {
      case 'mss':
        checkUint('mss', o.value, 16);
        parts.push(2, 4, o.value >> 8, o.value & 0xff);
        break;
      case 'window-scale':
        checkUint('shift', o.shift, 8);
        parts.push(3, 3, o.shift);
        break;
      case 'sack-permitted':
        parts.push(4, 2);
        break;
      case 'sack': {
        const b = Buffer.alloc(o.blocks.length * 8);
        o.blocks.forEach(([l, r], i) => {
          checkUint('sack', l, 32);
          checkUint('sack', r, 32);
          put32(b, i * 8, l);
          put32(b, i * 8 + 4, r);
        });
        parts.push(5, 2 + b.length, ...b);
        break;
      }
      case 'timestamp': {
        const b = Buffer.alloc(8);
        checkUint('ts', o.value, 32);
        checkUint('ts', o.echo, 32);
        put32(b, 0, o.value);
        put32(b, 4, o.echo);
        parts.push(8, 10, ...b);
        break;
      }
      case 'unknown':
        checkUint('option kind', o.type, 8);
        if (o.type < 2 || o.data.length > 38) throw new RangeError('emitTcpOptions: bad unknown option');
        parts.push(o.type, 2 + o.data.length, ...o.data);
        break;
    }
  }
  if (parts.length > 40) throw new RangeError('emitTcpOptions: longer than 40 bytes');
  return Buffer.from(parts);
}
