/**
 * ARP/NDP responders for the metadata addresses, one per port where the kernel would not answer:
 * every port with an IPv6 guest (the kernel answers NDP only for addresses on the receiving
 * interface, and ours is on lo) and IPv4 ports where `arp_ignore` is set on the interface that
 * sees the ARP (the port, or its bridge). They answer known guest MACs only.
 */
import type { ServedBinding } from '../dataplane/dataplane.js';
import { readSysctl } from '../dataplane/sysctl.js';
import type { Logger } from '../model/log.js';
import { NeighborResponder, newResponderCounters, type ResponderCounters } from '../packet/responder.js';

interface Running {
  readonly responder: NeighborResponder;
  readonly signature: string;
}

const arpIgnore = (dev: string): Promise<number> => readSysctl(['net', 'ipv4', 'conf', dev, 'arp_ignore']).then(Number, () => 0);

export class Responders {
  private readonly running = new Map<string, Running>();
  /** Totals over all responders, including stopped ones. */
  readonly counters: ResponderCounters = newResponderCounters();

  constructor(private readonly opts: { readonly ipv4: string; readonly ipv6: string | false; readonly log: Logger }) {}

  async sync(served: readonly ServedBinding[]): Promise<void> {
    const byPort = new Map<string, ServedBinding[]>();
    for (const s of served) byPort.set(s.binding.ifname, [...(byPort.get(s.binding.ifname) ?? []), s]);
    const wanted = new Map<string, { ipv4: boolean; ipv6: boolean; mac: string; macs: Set<string> }>();
    // The kernel uses max(all, interface) for arp_ignore: `all` is read once per update.
    const all = await arpIgnore('all');
    for (const [ifname, list] of byPort) {
      const first = list[0];
      if (!first) continue;
      const ipv6 = this.opts.ipv6 !== false && list.some((s) => s.binding.ipv6 !== undefined);
      const ipv4 = Math.max(all, await arpIgnore(first.bridge ?? ifname)) > 0;
      if (ipv4 || ipv6) wanted.set(ifname, { ipv4, ipv6, mac: first.answerMac, macs: new Set(list.map((s) => s.binding.mac)) });
    }
    for (const [ifname, r] of this.running) {
      const w = wanted.get(ifname);
      if (!w || signatureOf(w) !== r.signature) {
        r.responder.stop();
        this.running.delete(ifname);
      }
    }
    for (const [ifname, w] of wanted) {
      if (this.running.has(ifname)) continue;
      const responder = new NeighborResponder({
        ifname,
        mac: w.mac,
        ...(w.ipv4 ? { ipv4: this.opts.ipv4 } : {}),
        ...(w.ipv6 && this.opts.ipv6 !== false ? { ipv6: this.opts.ipv6 } : {}),
        allowed: (srcMac) => w.macs.has(srcMac),
        counters: this.counters,
        log: this.opts.log,
      });
      try {
        responder.start();
        this.running.set(ifname, { responder, signature: signatureOf(w) });
      } catch (err) {
        this.opts.log.warn({ err: String(err), ifname }, 'cannot start the neighbour responder on this port');
      }
    }
  }

  get size(): number {
    return this.running.size;
  }

  stop(): void {
    for (const r of this.running.values()) r.responder.stop();
    this.running.clear();
  }
}

function signatureOf(w: { ipv4: boolean; ipv6: boolean; mac: string; macs: Set<string> }): string {
  return `${w.ipv4}|${w.ipv6}|${w.mac}|${[...w.macs].sort().join(',')}`;
}
