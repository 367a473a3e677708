// Frames a guest sends to the host's port (ARP requests, Neighbor Solicitations), well-formed or
// hostile, built with the wire layer; a Python injector that puts hex frames on a link; and
// known-good frames captured from Linux.
import {
  ARP_REQUEST,
  emitArp,
  emitEthernet,
  emitIcmpv6,
  emitIpv6Packet,
  solicitedNodeAddress,
  ipv6MulticastMac,
  internetChecksum,
  parseIpv6,
  pseudoHeaderSum,
} from '../../src/wire/index.js';
import type { ResponderCounters } from '../../src/packet/responder.js';

export interface ArpOpts {
  src?: string;
  senderMac?: string;
  targetIp?: string;
  vlan?: number;
  pad?: number;
  hlen?: number;
}

export interface NsOpts {
  src?: string;
  srcIp?: string;
  hopLimit?: number;
  sll?: string | null;
  corrupt?: (icmp: Buffer) => void;
  /** Leave the checksum as it was before `corrupt` (default: recompute it). */
  badChecksum?: boolean;
  payloadLength?: number;
  vlan?: number;
}

export interface GuestFrames {
  arpRequest: (o?: ArpOpts) => Buffer;
  neighborSolicit: (o?: NsOpts) => Buffer;
  /** Frames that pass the capture filter but must never be answered, with the counter they hit. */
  hostileFrames: () => Array<[string, Buffer, keyof ResponderCounters]>;
}

/** Builders for a guest (MAC, IPv4, IPv6) asking for the metadata addresses V4 / V6. */
export function guestFrames(g: { mac: string; ipv4: string; ipv6: string; v4: string; v6: string }): GuestFrames {
  const GUEST_MAC = g.mac;
  const GUEST_V4 = g.ipv4;
  const GUEST_V6 = g.ipv6;
  const V4 = g.v4;
  const V6 = g.v6;
  function arpRequest(o: ArpOpts = {}): Buffer {
    const src = o.src ?? GUEST_MAC;
    const arp = emitArp({
      operation: ARP_REQUEST,
      senderMac: o.senderMac ?? src,
      senderIp: GUEST_V4,
      targetMac: '00:00:00:00:00:00',
      targetIp: o.targetIp ?? V4,
    });
    if (o.hlen !== undefined) arp[4] = o.hlen;
    const payload = o.pad !== undefined ? Buffer.concat([arp, Buffer.alloc(o.pad)]) : arp;
    return emitEthernet({
      dst: 'ff:ff:ff:ff:ff:ff',
      src,
      vlans: o.vlan !== undefined ? [{ tpid: 0x8100, pcp: 0, dei: false, vid: o.vlan }] : [],
      ethertype: 0x0806,
      payload,
    });
  }

  function neighborSolicit(o: NsOpts = {}): Buffer {
    const src = o.src ?? GUEST_MAC;
    const srcIp = o.srcIp ?? GUEST_V6;
    const group = solicitedNodeAddress(V6) ?? '';
    const sll = o.sll === null ? undefined : (o.sll ?? src);
    const icmp = emitIcmpv6({ kind: 'ns', target: V6, ...(sll !== undefined ? { sourceLinkAddr: sll } : {}) }, srcIp, group);
    if (o.corrupt !== undefined) {
      o.corrupt(icmp);
      if (o.badChecksum !== true) {
        icmp.writeUInt16BE(0, 2);
        const ph = pseudoHeaderSum(parseIpv6(srcIp) ?? new Uint8Array(16), parseIpv6(group) ?? new Uint8Array(16), 58, icmp.length);
        icmp.writeUInt16BE(internetChecksum(icmp, ph), 2);
      }
    }
    const ip = emitIpv6Packet({
      src: srcIp,
      dst: group,
      nextHeader: 58,
      hopLimit: o.hopLimit ?? 255,
      trafficClass: 0,
      flowLabel: 0,
      payload: icmp,
    });
    if (o.payloadLength !== undefined) ip.writeUInt16BE(o.payloadLength, 4);
    return emitEthernet({
      dst: ipv6MulticastMac(group) ?? '',
      src,
      vlans: o.vlan !== undefined ? [{ tpid: 0x8100, pcp: 0, dei: false, vid: o.vlan }] : [],
      ethertype: 0x86dd,
      payload: ip,
    });
  }

  /** Frames that pass the capture filter but must never be answered, with the counter they hit. */
  function hostileFrames(): Array<[string, Buffer, keyof ResponderCounters]> {
    return [
      ['ARP with hlen 8', arpRequest({ hlen: 8 }), 'malformed'],
      ['ARP sender MAC differs from the frame source', arpRequest({ senderMac: '52:54:00:66:66:66' }), 'malformed'],
      ['NS with a bad checksum', neighborSolicit({ corrupt: (b) => (b[30] = 0x99), badChecksum: true }), 'bad_checksum'],
      ['NS with hop limit 64', neighborSolicit({ hopLimit: 64 }), 'malformed'],
      ['NS with a zero-length option', neighborSolicit({ corrupt: (b) => (b[25] = 0) }), 'malformed'],
      ['NS whose IPv6 payload length runs past the frame', neighborSolicit({ payloadLength: 400 }), 'truncated'],
      ['NS whose SLLA differs from the frame source', neighborSolicit({ sll: '52:54:00:66:66:66' }), 'malformed'],
      ['DAD NS with a source link-layer option', neighborSolicit({ srcIp: '::' }), 'malformed'],
      ['oversized ARP (3000 bytes)', arpRequest({ pad: 3000 - 42 }), 'oversized'],
      ['VLAN-tagged ARP', arpRequest({ vlan: 42 }), 'vlan_tagged'],
      ['VLAN-tagged NS', neighborSolicit({ vlan: 42 }), 'vlan_tagged'],
    ];
  }
  return { arpRequest, neighborSolicit, hostileFrames };
}

// Runs inside namespace B: sends the hex frames given on stdin (one per line) on argv[1], then
// counts for argv[3] seconds the ARP replies / Neighbor Advertisements whose source MAC is argv[2].
export const INJECT = `
import socket, sys, time
ifname, amac, secs = sys.argv[1], bytes.fromhex(sys.argv[2].replace(':', '')), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
s.settimeout(0.1)
for line in sys.stdin:
    line = line.strip()
    if line:
        s.send(bytes.fromhex(line))
n = 0
end = time.time() + secs
while time.time() < end:
    try:
        d = s.recv(65535)
    except socket.timeout:
        continue
    if d[6:12] != amac:
        continue
    if d[12:14] == b'\\x08\\x06' and d[20:22] == b'\\x00\\x02':
        n += 1
    if d[12:14] == b'\\x86\\xdd' and len(d) > 54 and d[54] == 136:
        n += 1
print(n)
`;

// ---- known-good vectors ---------------------------------------------------------------------
// Frames captured from a Linux 6.x kernel in a network namespace pair (52:54:00:aa:bb:01 = host
// side with fd00:ec2::254 / 10.9.0.1, 52:54:00:aa:bb:02 = guest). KERNEL_NS / KERNEL_NA: the
// guest's kernel asking for fd00:ec2::254, and the host kernel's answer.

export const hex = (s: string): Buffer => Buffer.from(s.replace(/[^0-9a-f]/gi, ''), 'hex');

export const KERNEL_NS = hex(`
  3333 ff00 0254 5254 00aa bb02 86dd 6000 0000 0020 3aff fd00 0ec2 0000 0000 0000
  0000 0000 0002 ff02 0000 0000 0000 0000 0001 ff00 0254 8700 4f6e 0000 0000 fd00
  0ec2 0000 0000 0000 0000 0000 0254 0101 5254 00aa bb02`);
export const KERNEL_NA = hex(`
  5254 00aa bb02 5254 00aa bb01 86dd 6000 0000 0020 3aff fd00 0ec2 0000 0000 0000
  0000 0000 0254 fd00 0ec2 0000 0000 0000 0000 0000 0002 8800 dfb0 6000 0000 fd00
  0ec2 0000 0000 0000 0000 0000 0254 0201 5254 00aa bb01`);
export const KERNEL_DAD_NS = hex(`
  3333 ffaa bb02 5254 00aa bb02 86dd 6000 0000 0020 3aff 0000 0000 0000 0000 0000
  0000 0000 0000 ff02 0000 0000 0000 0000 0001 ffaa bb02 8700 680c 0000 0000 fe80
  0000 0000 0000 5054 00ff feaa bb02 0e01 4b37 85e9 6e43`);
export const KERNEL_MLD = hex(`
  3333 0000 0016 5254 00aa bb02 86dd 6000 0000 0038 0001 0000 0000 0000 0000 0000
  0000 0000 0000 ff02 0000 0000 0000 0000 0000 0000 0016 3a00 0502 0000 0100 8f00
  b1c1 0000 0002 0400 0000 ff02 0000 0000 0000 0000 0001 ff00 0002 0400 0000 ff02
  0000 0000 0000 0000 0001 ffaa bb02`);
export const KERNEL_ARP_REQ = hex(`
  ffff ffff ffff 5254 00aa bb02 0806 0001 0800 0604 0001 5254 00aa bb02 0a09 0002
  0000 0000 0000 0a09 0001`);
export const KERNEL_ARP_REPLY = hex(`
  5254 00aa bb02 5254 00aa bb01 0806 0001 0800 0604 0002 5254 00aa bb01 0a09 0001
  5254 00aa bb02 0a09 0002`);
// SYN with its checksum fixed to the value tcpdump computed (0xd917; veth left it partial).
export const KERNEL_SYN = hex(`
  5254 00aa bb01 5254 00aa bb02 0800 4500 003c 293c 4000 4006 fd6b 0a09 0002 0a09
  0001 8056 0051 1d27 a404 0000 0000 a002 faf0 d917 0000 0204 05b4 0402 080a 4db3
  d059 0000 0000 0103 030a`);
export const KERNEL_RST = hex(`
  5254 00aa bb02 5254 00aa bb01 0800 4500 0028 0000 4000 4006 26bc 0a09 0001 0a09
  0002 0051 8056 0000 0000 1d27 a405 5014 0000 59e8 0000`);
