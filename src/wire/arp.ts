/**
 * ARP for Ethernet / IPv4 (RFC 826): htype 1, ptype 0x0800, hlen 6, plen 4; 28 bytes.
 */
import { formatIpv4, formatMac, parseIpv4, parseMac } from './address.js';
import { checkUint, outBuffer, put16, slice, u16, u8 } from './bytes.js';
import { fail, ok, type Parsed } from './result.js';

export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export class ArpView {
  constructor(readonly bytes: Uint8Array) {}
  get hardwareType(): number | undefined {
    return u16(this.bytes, 0);
  }
  get protocolType(): number | undefined {
    return u16(this.bytes, 2);
  }
  get hardwareLength(): number | undefined {
    return u8(this.bytes, 4);
  }
  get protocolLength(): number | undefined {
    return u8(this.bytes, 5);
  }
  get operation(): number | undefined {
    return u16(this.bytes, 6);
  }
  get senderMac(): Uint8Array | undefined {
    return slice(this.bytes, 8, 6);
  }
  get senderIp(): Uint8Array | undefined {
    return slice(this.bytes, 14, 4);
  }
  get targetMac(): Uint8Array | undefined {
    return slice(this.bytes, 18, 6);
  }
  get targetIp(): Uint8Array | undefined {
    return slice(this.bytes, 24, 4);
  }
}

export interface ArpRepr {
  /** ARP_REQUEST, ARP_REPLY, or another opcode (kept, not refused). */
  readonly operation: number;
  readonly senderMac: string;
  readonly senderIp: string;
  readonly targetMac: string;
  readonly targetIp: string;
}

export function parseArp(bytes: Uint8Array): Parsed<ArpRepr> {
  const v = new ArpView(bytes);
  if (bytes.length < 8) return fail('truncated');
  if (v.hardwareType !== 1 || v.protocolType !== 0x0800 || v.hardwareLength !== 6 || v.protocolLength !== 4) {
    return fail('unsupported');
  }
  const op = v.operation;
  const sm = v.senderMac;
  const si = v.senderIp;
  const tm = v.targetMac;
  const ti = v.targetIp;
  if (op === undefined || sm === undefined || si === undefined || tm === undefined || ti === undefined) {
    return fail('truncated');
  }
  return ok({
    operation: op,
    senderMac: formatMac(sm) ?? '',
    senderIp: formatIpv4(si) ?? '',
    targetMac: formatMac(tm) ?? '',
    targetIp: formatIpv4(ti) ?? '',
  });
}

export function emitArp(repr: ArpRepr, into?: Uint8Array): Buffer {
  const sm = parseMac(repr.senderMac);
  const si = parseIpv4(repr.senderIp);
  const tm = parseMac(repr.targetMac);
  const ti = parseIpv4(repr.targetIp);
  if (sm === undefined || si === undefined || tm === undefined || ti === undefined) {
    throw new RangeError('emitArp: bad address');
  }
  checkUint('operation', repr.operation, 16);
  const out = outBuffer(ARP_LEN, into);
  put16(out, 0, 1);
  put16(out, 2, 0x0800);
  out[4] = 6;
  out[5] = 4;
  put16(out, 6, repr.operation);
  out.set(sm, 8);
  out.set(si, 14);
  out.set(tm, 18);
  out.set(ti, 24);
  return out;
}
