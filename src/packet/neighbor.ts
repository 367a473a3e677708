/**
 * The ARP/NDP decision for the metadata address, as a pure function of one captured frame:
 * either the reply frame to send, or the reason for sending nothing. No I/O; the responder
 * (responder.ts) feeds it frames from libpcap and sends what it returns.
 */
import {
  ARP_REPLY,
  ARP_REQUEST,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV6,
  IP_PROTO_ICMPV6,
  bytesEqual,
  canonicalIpv4,
  canonicalIpv6,
  canonicalMac,
  emitArp,
  emitEthernet,
  emitIcmpv6,
  emitIpv6Packet,
  ipv6MulticastMacBytes,
  ipv6UpperLayer,
  isIpv6Unspecified,
  isMacMulticast,
  parseArp,
  parseEthernet,
  parseIcmpv6,
  parseIpv6,
  parseIpv6Packet,
  parseMac,
  solicitedNodeBytes,
  formatMac,
  type VlanTag,
  type WireError,
} from '../wire/index.js';

/** Largest frame considered: 1500-byte payload, 14-byte header, two VLAN tags. */
export const MAX_FRAME_BYTES = 1522;

export interface NeighborConfig {
  /** The MAC to answer with (canonical lowercase text). */
  readonly mac: string;
  /** The IPv4 address to answer ARP for (e.g. 169.254.169.254). */
  readonly ipv4?: string;
  /** The IPv6 address to answer NDP for (e.g. fd00:ec2::254). */
  readonly ipv6?: string;
  /** VLAN ids (outermost tag, single-tagged frames only) that are answered; default: none. */
  readonly vlanIds?: ReadonlySet<number>;
  /** Answer only when this returns true (srcMac canonical; srcIp the ARP sender / IPv6 source). */
  readonly allowed?: (srcMac: string, srcIp: string) => boolean;
}

export type DropReason =
  | 'oversized'
  | 'truncated'
  | 'malformed'
  | 'bad-checksum'
  | 'vlan-tagged'
  | 'not-for-us'
  | 'own-frame'
  | 'not-allowed'
  | 'fragmented'
  | 'rate-limited';

export type Decision =
  | { readonly action: 'reply'; readonly proto: 'arp' | 'nd'; readonly frame: Buffer }
  | { readonly action: 'drop'; readonly proto: 'arp' | 'nd' | 'other'; readonly reason: DropReason };

const drop = (proto: 'arp' | 'nd' | 'other', reason: DropReason): Decision => ({ action: 'drop', proto, reason });

const wireReason = (e: WireError): DropReason => (e === 'truncated' ? 'truncated' : e === 'bad-checksum' ? 'bad-checksum' : 'malformed');

/** Validates and canonicalises a config; throws on bad addresses (a configuration error). */
export function neighborConfig(c: NeighborConfig): NeighborConfig {
  const mac = canonicalMac(c.mac);
  if (mac === undefined || isMacMulticast(parseMac(mac) ?? new Uint8Array())) throw new Error(`bad MAC ${c.mac}`);
  const ipv4 = c.ipv4 === undefined ? undefined : canonicalIpv4(c.ipv4);
  if (c.ipv4 !== undefined && ipv4 === undefined) throw new Error(`bad IPv4 address ${c.ipv4}`);
  const ipv6 = c.ipv6 === undefined ? undefined : canonicalIpv6(c.ipv6);
  if (c.ipv6 !== undefined && (ipv6 === undefined || ipv6.startsWith('ff'))) throw new Error(`bad IPv6 address ${c.ipv6}`);
  if (ipv4 === undefined && ipv6 === undefined) throw new Error('neither ipv4 nor ipv6 to answer for');
  for (const v of c.vlanIds ?? []) {
    if (!Number.isInteger(v) || v < 1 || v > 4094) throw new Error(`bad VLAN id ${v}`);
  }
  return {
    mac,
    ...(ipv4 !== undefined ? { ipv4 } : {}),
    ...(ipv6 !== undefined ? { ipv6 } : {}),
    ...(c.vlanIds !== undefined ? { vlanIds: c.vlanIds } : {}),
    ...(c.allowed !== undefined ? { allowed: c.allowed } : {}),
  };
}

/**
 * The BPF filter that lets through only ARP requests for `ipv4` and Neighbor Solicitations for
 * `ipv6` (fixed IPv6 header, ICMPv6 type 135, target = ipv6), untagged or with one VLAN tag.
 * Tagged frames are let through so that they are counted; whether they are answered is decided
 * per frame (NeighborConfig.vlanIds).
 */
export function captureFilter(c: Pick<NeighborConfig, 'ipv4' | 'ipv6'>): string {
  const parts: string[] = [];
  if (c.ipv4 !== undefined) {
    const b = Buffer.from(parseIpv4OrThrow(c.ipv4));
    parts.push(`(arp and arp[6:2] = 1 and arp[24:4] = 0x${b.toString('hex')})`);
  }
  if (c.ipv6 !== undefined) {
    const b = Buffer.from(parseIpv6OrThrow(c.ipv6));
    const words = [0, 4, 8, 12].map((i) => `ip6[${48 + i}:4] = 0x${b.subarray(i, i + 4).toString('hex')}`);
    parts.push(`(icmp6 and ip6[40] = 135 and ${words.join(' and ')})`);
  }
  const any = parts.join(' or ');
  // `vlan` shifts every later offset by 4, so it must come last.
  return `(${any}) or (vlan and (${any}))`;
}

function parseIpv4OrThrow(t: string): Uint8Array {
  const c = canonicalIpv4(t);
  if (c === undefined) throw new Error(`bad IPv4 address ${t}`);
  return Uint8Array.from(c.split('.'), Number);
}

function parseIpv6OrThrow(t: string): Uint8Array {
  const b = parseIpv6(t);
  if (b === undefined) throw new Error(`bad IPv6 address ${t}`);
  return b;
}

/** Decides what to do with one captured frame. Never throws on any frame. */
export function decide(frame: Uint8Array, c: NeighborConfig, truncatedCapture = false): Decision {
  if (frame.length > MAX_FRAME_BYTES) return drop('other', 'oversized');
  if (truncatedCapture) return drop('other', 'truncated');
  const eth = parseEthernet(frame);
  if (!eth.ok) return drop('other', wireReason(eth.error));
  const e = eth.value;
  const proto = e.ethertype === ETHERTYPE_ARP ? 'arp' : e.ethertype === ETHERTYPE_IPV6 ? 'nd' : 'other';
  if (proto === 'other') return drop('other', 'not-for-us');
  let vlans: readonly VlanTag[] = [];
  if (e.vlans.length > 0) {
    const tag = e.vlans[0];
    if (e.vlans.length !== 1 || tag === undefined || c.vlanIds?.has(tag.vid) !== true) return drop(proto, 'vlan-tagged');
    vlans = e.vlans;
  }
  if (e.src === c.mac) return drop(proto, 'own-frame');
  const srcMacBytes = parseMac(e.src);
  if (srcMacBytes === undefined || isMacMulticast(srcMacBytes) || srcMacBytes.every((x) => x === 0)) {
    return drop(proto, 'malformed');
  }
  return proto === 'arp' ? decideArp(e.src, e.payload, vlans, c) : decideNd(e.src, e.payload, vlans, c);
}

/** The caller's filter; one that throws refuses (decide() itself never throws). */
function isAllowed(c: NeighborConfig, mac: string, ip: string): boolean {
  if (c.allowed === undefined) return true;
  try {
    return c.allowed(mac, ip);
  } catch {
    return false;
  }
}

function decideArp(ethSrc: string, payload: Uint8Array, vlans: readonly VlanTag[], c: NeighborConfig): Decision {
  if (c.ipv4 === undefined) return drop('arp', 'not-for-us');
  const p = parseArp(payload);
  if (!p.ok) return drop('arp', wireReason(p.error));
  const a = p.value;
  if (a.operation !== ARP_REQUEST || a.targetIp !== c.ipv4) return drop('arp', 'not-for-us');
  // The requester must be who the frame says it is: the reply goes to that MAC.
  if (a.senderMac !== ethSrc) return drop('arp', 'malformed');
  if (!isAllowed(c, a.senderMac, a.senderIp)) return drop('arp', 'not-allowed');
  const arp = emitArp({
    operation: ARP_REPLY,
    senderMac: c.mac,
    senderIp: c.ipv4,
    targetMac: a.senderMac,
    targetIp: a.senderIp,
  });
  const frame = emitEthernet({ dst: a.senderMac, src: c.mac, vlans, ethertype: ETHERTYPE_ARP, payload: arp }, undefined, {
    pad: true,
  });
  return { action: 'reply', proto: 'arp', frame };
}

function decideNd(ethSrc: string, payload: Uint8Array, vlans: readonly VlanTag[], c: NeighborConfig): Decision {
  if (c.ipv6 === undefined) return drop('nd', 'not-for-us');
  const ip = parseIpv6Packet(payload);
  if (!ip.ok) return drop('nd', wireReason(ip.error));
  const upper = ipv6UpperLayer(ip.value);
  if (!upper.ok) return drop('nd', wireReason(upper.error));
  if (upper.value.fragment !== undefined) return drop('nd', 'fragmented');
  if (upper.value.protocol !== IP_PROTO_ICMPV6) return drop('nd', 'not-for-us');
  const icmp = parseIcmpv6(upper.value.payload, ip.value.srcBytes, ip.value.dstBytes);
  if (!icmp.ok) return drop('nd', wireReason(icmp.error));
  const m = icmp.value;
  if (m.kind !== 'ns' || m.target !== c.ipv6) return drop('nd', 'not-for-us');
  // RFC 4861 7.1.1: hop limit 255 (never forwarded).
  if (ip.value.hopLimit !== 255) return drop('nd', 'malformed');
  const dad = isIpv6Unspecified(ip.value.srcBytes);
  if (dad) {
    // DAD: sent to the solicited-node group, with no source link-layer option.
    const target = parseIpv6(c.ipv6) ?? new Uint8Array(16);
    if (!bytesEqual(ip.value.dstBytes, solicitedNodeBytes(target)) || m.sourceLinkAddr !== undefined) {
      return drop('nd', 'malformed');
    }
  }
  if (m.sourceLinkAddr !== undefined && m.sourceLinkAddr !== ethSrc) return drop('nd', 'malformed');
  if (!isAllowed(c, ethSrc, ip.value.src)) return drop('nd', 'not-allowed');
  // A DAD probe is answered to all-nodes, unsolicited; otherwise unicast to the asker.
  const allNodes = 'ff02::1';
  const dstIp = dad ? allNodes : ip.value.src;
  const dstMac = dad ? (formatMac(ipv6MulticastMacBytes(parseIpv6(allNodes) ?? new Uint8Array(16))) ?? '') : ethSrc;
  const na = emitIcmpv6(
    { kind: 'na', router: false, solicited: !dad, override: true, target: c.ipv6, targetLinkAddr: c.mac },
    c.ipv6,
    dstIp,
  );
  const ip6 = emitIpv6Packet({
    src: c.ipv6,
    dst: dstIp,
    nextHeader: IP_PROTO_ICMPV6,
    hopLimit: 255,
    trafficClass: 0,
    flowLabel: 0,
    payload: na,
  });
  const frame = emitEthernet({ dst: dstMac, src: c.mac, vlans, ethertype: ETHERTYPE_IPV6, payload: ip6 });
  return { action: 'reply', proto: 'nd', frame };
}
