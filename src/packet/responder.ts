/**
 * NeighborResponder: answers ARP (IPv4) and Neighbor Solicitations (IPv6) for the metadata
 * address on one host-side port, where the kernel would not (a bridge with no IP, arp_ignore, a
 * port with no address). It opens libpcap on the port with a BPF filter that passes only
 * requests for the metadata address, so ordinary guest traffic never reaches user space; each
 * request is parsed and answered with the wire layer, and the reply is sent on the same handle.
 *
 * Every frame that reaches it is counted: replies, or the reason none was sent. Hostile input
 * (truncated, oversized, tagged, malformed, bad checksums) never throws and is never answered.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from '../model/log.js';
import { silentLogger } from '../model/log.js';
import { loadCap, type CapHandle, type CapModule } from './cap.js';
import { captureFilter, decide, neighborConfig, type Decision, type NeighborConfig } from './neighbor.js';

export const RESPONDER_COUNTERS = [
  /** Valid ARP requests for the IPv4 address (answered or not). */
  'arp_requests',
  'arp_replies',
  /** Valid Neighbor Solicitations for the IPv6 address (answered or not). */
  'nd_solicits',
  'nd_adverts',
  /** Frames refused by the parsers or by the protocol rules (sum of the details below + others). */
  'malformed',
  /** Well-formed frames deliberately not answered (tagged, not for us, not allowed, rate limited...). */
  'ignored',
  // details
  'truncated',
  'oversized',
  'bad_checksum',
  'vlan_tagged',
  'fragmented',
  'not_allowed',
  'rate_limited',
  'send_errors',
] as const;

export type ResponderCounterName = (typeof RESPONDER_COUNTERS)[number];
export type ResponderCounters = Record<ResponderCounterName, number>;

export function newResponderCounters(): ResponderCounters {
  return Object.fromEntries(RESPONDER_COUNTERS.map((n) => [n, 0])) as ResponderCounters;
}

export interface NeighborResponderOptions {
  /** The host-side port (TAP, veth, bridge port, or the bridge). */
  readonly ifname: string;
  /** MAC to answer with; default the port's own MAC. */
  readonly mac?: string;
  readonly ipv4?: string;
  readonly ipv6?: string;
  /** Answer only known guests: called with the requester's MAC and IP (ARP sender / IPv6 source). */
  readonly allowed?: (srcMac: string, srcIp: string) => boolean;
  /** VLAN ids answered on single-tagged frames (the reply carries the same tag). Default none. */
  readonly vlanIds?: readonly number[];
  /** Reply budget (token bucket, per second, burst = the same number). Default 200. */
  readonly maxRepliesPerSecond?: number;
  readonly log?: Logger;
  /** Incremented in place (missing names are added as 0); default a fresh object. */
  readonly counters?: Partial<ResponderCounters>;
  /** For tests: the libpcap binding. */
  readonly cap?: CapModule;
}

const IFNAME_RE = /^[A-Za-z0-9_.:@-]{1,15}$/;

/** The MAC of `ifname` from sysfs. */
export function interfaceMac(ifname: string): string {
  if (!IFNAME_RE.test(ifname) || ifname === '.' || ifname === '..') throw new Error(`bad interface name ${ifname}`);
  return readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim();
}

/**
 * Closed `cap` handles, kept until the process ends. cap's Pcap object holds a Nan::AsyncResource
 * whose destructor calls into V8; when the garbage collector frees a Pcap, that destructor runs
 * inside the collection and crashes the process (seen as a SIGSEGV in Pcap::~Pcap from a weak
 * callback, under gdb). A closed handle has released its libpcap handle and its buffer; what is
 * kept is a small object per responder ever stopped.
 */
const closedHandles: unknown[] = [];
function keepClosed(h: unknown): void {
  closedHandles.push(h);
}

export class NeighborResponder {
  readonly counters: ResponderCounters;
  private readonly log: Logger;
  private handle: CapHandle | undefined;
  private config: NeighborConfig | undefined;
  private tokens: number;
  private lastRefill = 0;
  private readonly rate: number;
  private readonly buffer = Buffer.alloc(65536);

  constructor(private readonly opts: NeighborResponderOptions) {
    if (!IFNAME_RE.test(opts.ifname)) throw new Error(`bad interface name ${opts.ifname}`);
    const c: Partial<ResponderCounters> = opts.counters ?? {};
    for (const n of RESPONDER_COUNTERS) c[n] ??= 0;
    this.counters = c as ResponderCounters;
    this.log = opts.log ?? silentLogger;
    this.rate = opts.maxRepliesPerSecond ?? 200;
    if (!(this.rate > 0)) throw new Error('maxRepliesPerSecond must be > 0');
    this.tokens = this.rate;
    if (opts.ipv4 === undefined && opts.ipv6 === undefined) throw new Error('neither ipv4 nor ipv6 to answer for');
  }

  get running(): boolean {
    return this.handle !== undefined;
  }

  /** Opens the capture; throws if the port or libpcap cannot be opened. Idempotent. */
  start(): void {
    if (this.handle !== undefined) return;
    const o = this.opts;
    this.config = neighborConfig({
      mac: o.mac ?? interfaceMac(o.ifname),
      ...(o.ipv4 !== undefined ? { ipv4: o.ipv4 } : {}),
      ...(o.ipv6 !== undefined ? { ipv6: o.ipv6 } : {}),
      ...(o.vlanIds !== undefined ? { vlanIds: new Set(o.vlanIds) } : {}),
      ...(o.allowed !== undefined ? { allowed: o.allowed } : {}),
    });
    const filter = captureFilter(this.config);
    const cap = (o.cap ?? loadCap()).Cap;
    const h = new cap();
    const linkType = h.open(o.ifname, filter, 1 << 20, this.buffer);
    if (linkType !== 'ETHERNET') {
      h.close();
      keepClosed(h);
      throw new Error(`${o.ifname}: link type ${linkType}, not Ethernet`);
    }
    h.on('packet', (nbytes, truncated) => this.onPacket(nbytes, truncated));
    this.handle = h;
    this.log.info({ ifname: o.ifname, mac: this.config.mac, ipv4: o.ipv4, ipv6: o.ipv6, filter }, 'neighbor responder started');
  }

  /** Closes the capture. Idempotent. */
  stop(): void {
    const h = this.handle;
    if (h === undefined) return;
    this.handle = undefined;
    h.removeAllListeners('packet');
    try {
      h.close();
    } catch (e) {
      this.log.warn({ ifname: this.opts.ifname, err: String(e) }, 'neighbor responder: close failed');
    }
    keepClosed(h);
    this.log.info({ ifname: this.opts.ifname, counters: { ...this.counters } }, 'neighbor responder stopped');
  }

  /** Handles one frame as if captured (exposed for tests); returns the decision taken. */
  handleFrame(frame: Uint8Array, truncated = false): Decision | undefined {
    const c = this.config;
    if (c === undefined) return undefined;
    const d = decide(frame, c, truncated);
    this.account(d);
    if (d.action === 'reply') {
      if (!this.takeToken()) {
        this.counters.rate_limited++;
        this.counters.ignored++;
        return { action: 'drop', proto: d.proto, reason: 'rate-limited' };
      }
      try {
        this.handle?.send(d.frame, d.frame.length);
        if (d.proto === 'arp') this.counters.arp_replies++;
        else this.counters.nd_adverts++;
      } catch (e) {
        this.counters.send_errors++;
        this.log.warn({ ifname: this.opts.ifname, err: String(e) }, 'neighbor responder: send failed');
      }
    }
    return d;
  }

  private onPacket(nbytes: number, truncated: boolean): void {
    try {
      this.handleFrame(this.buffer.subarray(0, nbytes), truncated);
    } catch (e) {
      // decide() never throws by design; this guards the native callback all the same.
      this.counters.malformed++;
      this.log.error({ ifname: this.opts.ifname, err: String(e) }, 'neighbor responder: unexpected error');
    }
  }

  private account(d: Decision): void {
    const k = this.counters;
    if (d.action === 'reply') {
      if (d.proto === 'arp') k.arp_requests++;
      else k.nd_solicits++;
      return;
    }
    switch (d.reason) {
      case 'oversized':
        k.oversized++;
        k.malformed++;
        break;
      case 'truncated':
        k.truncated++;
        k.malformed++;
        break;
      case 'bad-checksum':
        k.bad_checksum++;
        k.malformed++;
        break;
      case 'malformed':
        k.malformed++;
        break;
      case 'fragmented':
        k.fragmented++;
        k.malformed++;
        break;
      case 'vlan-tagged':
        k.vlan_tagged++;
        k.ignored++;
        break;
      case 'not-allowed':
        if (d.proto === 'arp') k.arp_requests++;
        else k.nd_solicits++;
        k.not_allowed++;
        k.ignored++;
        break;
      case 'rate-limited':
        k.rate_limited++;
        k.ignored++;
        break;
      case 'not-for-us':
      case 'own-frame':
        k.ignored++;
        break;
    }
  }

  private takeToken(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.lastRefill) / 1000) * this.rate);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export { captureFilter, decide, neighborConfig } from './neighbor.js';
export type { Decision, DropReason, NeighborConfig } from './neighbor.js';
