/**
 * Kernel state for the kernel path, driven from the registry's bindings:
 *   - nftables tables `inet linkgate` and `bridge linkgate` (nft.ts): maps (port . MAC . IP) →
 *     mark, refused traffic counted and dropped, bridged metadata traffic marked by its real
 *     ingress port and kept from other ports and the uplink;
 *   - the metadata addresses on `lo` (the IPv4 one labelled `lo:linkgate`, so it can be told
 *     from an operator's);
 *   - one policy rule per network and family (`fwmark <tag|net>/<mask> lookup <27000+net>`);
 *   - per served guest: a host route via its port in its network's table, and permanent
 *     neighbour entries (the configured MAC; replies never depend on ARP/NDP or a bridge's FDB);
 *   - sysctls: tcp_fwmark_accept=1; src_valid_mark=1 on served ports and their bridges.
 * A binding is served while its interface exists and is up: link events reconcile within
 * milliseconds, and nothing requires an interface to exist at start.
 */
import type { Logger } from '../model/log.js';
import type { Family } from './addr.js';
import { networkRuleMatch } from './mark.js';
import {
  applyNft,
  emptyElements,
  nftIfname,
  nftIp,
  nftMac,
  nftMark,
  readCounters,
  renderDeleteTables,
  renderElementDiff,
  renderTables,
  runNft,
  type Elements,
  type TableSpec,
} from './nft.js';
import { Rtnl, type LinkInfo } from './rtnl.js';
import { writeSysctl } from './sysctl.js';

/** One (port, MAC, IP) binding of a guest NIC, as the registry hands it down. */
export interface Binding {
  readonly ifname: string;
  readonly mac: string;
  readonly ipv4: string;
  readonly ipv6?: string | undefined;
  /** The bridge `ifname` is a port of, when it is one. */
  readonly bridge?: string | undefined;
  readonly mark: number;
  /** Numeric network id (0 = default), also encoded in `mark`. */
  readonly network: number;
}

/** A binding the kernel serves right now, with what the daemon needs to know about its port. */
export interface ServedBinding {
  readonly binding: Binding;
  readonly ifindex: number;
  /** MAC of the port, or of its bridge when bridged: what ARP/NDP answers should carry. */
  readonly answerMac: string;
  /** Bridge name when the port is bridged and the bridge exists. */
  readonly bridge: string | undefined;
}

export interface DataplaneOptions {
  readonly table: string;
  readonly listenIpv4: string;
  /** Undefined: no IPv6 metadata address. */
  readonly listenIpv6: string | undefined;
  readonly port: number;
  /** Routing table of network N is routeTableBase + N. */
  readonly routeTableBase: number;
  /** Policy rule of network N has preference rulePrefBase + N. */
  readonly rulePrefBase: number;
  readonly log: Logger;
  /** Called after every reconcile that changed what is served. */
  readonly onServed?: (served: readonly ServedBinding[]) => void;
}

export const DEFAULT_DATAPLANE = { table: 'linkgate', routeTableBase: 27000, rulePrefBase: 9000 } as const;

const LO_LABEL = 'lo:linkgate';

function bindingKey(b: Binding): string {
  return `${b.ifname}|${b.mac}|${b.ipv4}`;
}

function sameInstall(a: ServedBinding, b: ServedBinding): boolean {
  const x = a.binding;
  const y = b.binding;
  return (
    a.ifindex === b.ifindex &&
    a.answerMac === b.answerMac &&
    a.bridge === b.bridge &&
    x.mark === y.mark &&
    x.network === y.network &&
    x.ipv6 === y.ipv6 &&
    x.bridge === y.bridge
  );
}

/** The map elements for a set of served bindings. */
export function elementsFor(served: Iterable<ServedBinding>, withIpv6: boolean): Elements {
  const els = emptyElements();
  for (const s of served) {
    const b = s.binding;
    const head = `${nftIfname(b.ifname)} . ${nftMac(b.mac)}`;
    const k4 = `${head} . ${nftIp(b.ipv4, 4)}`;
    const k6 = b.ipv6 !== undefined && withIpv6 ? `${head} . ${nftIp(b.ipv6, 6)}` : undefined;
    els['inet ports4'].set(k4, nftMark(b.mark));
    if (k6) els['inet ports6'].set(k6, nftMark(b.mark));
    if (s.bridge !== undefined) {
      els['inet bridges'].set(nftIfname(s.bridge), '');
      els['bridge ports4'].set(k4, nftMark(b.mark));
      if (k6) els['bridge ports6'].set(k6, nftMark(b.mark));
      els['bridge brmac'].set(nftIfname(b.ifname), nftMac(s.answerMac));
    }
  }
  return els;
}

export class Dataplane {
  private readonly rtnl = new Rtnl();
  private readonly spec: TableSpec;
  private desired: readonly Binding[] = [];
  private readonly installed = new Map<string, ServedBinding>();
  private elements: Elements = emptyElements();
  private readonly rules = new Set<string>();
  private readonly validMarkDone = new Set<number>();
  private readonly ownedAddresses: string[] = [];
  private loIndex = 1;
  private fwmarkAcceptBefore: string | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Reconcile runs, for tests and metrics. */
  reconciles = 0;

  constructor(private readonly opts: DataplaneOptions) {
    this.spec = { table: opts.table, listenIpv4: opts.listenIpv4, listenIpv6: opts.listenIpv6, port: opts.port };
  }

  private get families(): Family[] {
    return this.opts.listenIpv6 !== undefined ? [4, 6] : [4];
  }

  /**
   * Replaces whatever an earlier run left (tables, routes, rules), installs the base state and
   * starts following link events.
   */
  async start(initial: readonly Binding[]): Promise<void> {
    const log = this.opts.log;
    this.desired = initial;
    const leftover = await runNft(['list', 'table', 'inet', this.opts.table]).then(
      () => true,
      () => false,
    );
    this.fwmarkAcceptBefore = await writeSysctl(['net', 'ipv4', 'tcp_fwmark_accept'], '1');
    const routes = await this.rtnl.flushOwnRoutes();
    const rules = await this.rtnl.flushOwnRules();
    if (routes || rules || leftover) log.info({ routes, rules, table: leftover }, 'removed routes and rules left by an earlier run');
    await applyNft(renderTables(this.spec, this.elements));
    const lo = (await this.rtnl.links()).get('lo');
    if (!lo) throw new Error('no loopback interface in this network namespace');
    this.loIndex = lo.index;

    const v4 = await this.rtnl.addresses(lo.index, 4);
    const label = v4.get(this.opts.listenIpv4);
    if (label !== undefined && label !== LO_LABEL) {
      log.info({ address: this.opts.listenIpv4, label }, 'metadata address already on lo (not ours): leaving it in place');
    } else {
      await this.rtnl.addAddress(lo.index, this.opts.listenIpv4, LO_LABEL);
      this.ownedAddresses.push(this.opts.listenIpv4);
    }
    const m6 = this.opts.listenIpv6;
    if (m6 !== undefined) {
      // IPv6 addresses carry no label: one already there is ours only if our table was too.
      const present = (await this.rtnl.addresses(lo.index, 6)).has(m6);
      if (present && !leftover) {
        log.info({ address: m6 }, 'metadata IPv6 address already on lo (not ours): leaving it in place');
      } else {
        await this.rtnl.addAddress(lo.index, m6, '');
        this.ownedAddresses.push(m6);
      }
    }
    await this.ensureRules(0);
    this.rtnl.watchLinks(
      () => void this.reconcile(), // never rejects: reconcile logs its own failures
      (err) => log.error({ err: err.message }, 'link event socket failed'),
    );
    await this.reconcile();
  }

  setBindings(bindings: readonly Binding[]): Promise<void> {
    this.desired = bindings;
    return this.reconcile();
  }

  /** What the kernel serves now (interface present and up). */
  served(): ServedBinding[] {
    return [...this.installed.values()];
  }

  counters(): Promise<Record<string, number>> {
    return readCounters(this.opts.table);
  }

  /**
   * Brings the kernel in line with (desired bindings × present links). Calls coalesce: one runs at
   * a time, and a call made meanwhile schedules exactly one more run.
   */
  reconcile(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.reconcileOnce().catch((err: unknown) => {
            this.opts.log.error({ err: String(err) }, 'dataplane reconcile failed; will retry on the next change');
          });
        } while (this.again && !this.stopped);
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private wanted(links: Map<string, LinkInfo>): Map<string, ServedBinding> {
    const want = new Map<string, ServedBinding>();
    for (const b of this.desired) {
      const port = links.get(b.ifname);
      if (!port?.up) continue;
      const br = b.bridge !== undefined ? links.get(b.bridge) : undefined;
      const bridged = br !== undefined && br.mac !== '';
      want.set(bindingKey(b), {
        binding: b,
        ifindex: port.index,
        answerMac: bridged ? br.mac : port.mac,
        bridge: bridged ? br.name : undefined,
      });
    }
    return want;
  }

  private async reconcileOnce(): Promise<void> {
    this.reconciles++;
    const links = await this.rtnl.links();
    const want = this.wanted(links);
    const del: ServedBinding[] = [];
    const add: ServedBinding[] = [];
    for (const [key, cur] of this.installed) {
      const w = want.get(key);
      if (!w || !sameInstall(w, cur)) del.push(cur);
    }
    for (const [key, w] of want) {
      const cur = this.installed.get(key);
      if (!cur || !sameInstall(w, cur)) add.push(w);
    }
    if (!add.length && !del.length) return;

    // Routes and neighbours first for additions (the reply path is ready before the map lets a
    // guest in), the map first for removals (a removed guest is refused at once).
    for (const a of add) await this.install(a, links);
    const elements = elementsFor(want.values(), this.opts.listenIpv6 !== undefined);
    const diff = renderElementDiff(this.opts.table, this.elements, elements);
    try {
      if (diff) await applyNft(diff);
    } catch (err) {
      // The kernel's maps and ours disagree (someone edited the tables?): rebuild them whole.
      this.opts.log.warn({ err: String(err) }, 'element update failed; rebuilding the nftables tables');
      await applyNft(renderTables(this.spec, elements));
    }
    this.elements = elements;
    for (const d of del) {
      this.installed.delete(bindingKey(d.binding));
      await this.uninstall(d, add);
    }
    for (const a of add) this.installed.set(bindingKey(a.binding), a);
    this.opts.log.info(
      { added: add.map((a) => a.binding.ifname), removed: del.map((d) => d.binding.ifname), served: this.installed.size },
      'dataplane updated',
    );
    this.opts.onServed?.(this.served());
  }

  private async install(a: ServedBinding, links: Map<string, LinkInfo>): Promise<void> {
    const b = a.binding;
    await this.ensureRules(b.network);
    for (const ifname of [b.ifname, a.bridge]) {
      const idx = ifname !== undefined ? links.get(ifname)?.index : undefined;
      if (ifname === undefined || idx === undefined || this.validMarkDone.has(idx)) continue;
      // rp_filter must see the mark when it looks the guest up in our tables.
      await writeSysctl(['net', 'ipv4', 'conf', ifname, 'src_valid_mark'], '1').catch(() => undefined);
      this.validMarkDone.add(idx);
    }
    const table = this.opts.routeTableBase + b.network;
    const ips = [b.ipv4, ...(b.ipv6 !== undefined && this.opts.listenIpv6 !== undefined ? [b.ipv6] : [])];
    for (const ip of ips) {
      await this.rtnl.addNeighbor(a.ifindex, ip, b.mac);
      await this.rtnl.addHostRoute(table, ip, a.ifindex);
    }
  }

  private async uninstall(d: ServedBinding, added: readonly ServedBinding[]): Promise<void> {
    const b = d.binding;
    const table = this.opts.routeTableBase + b.network;
    for (const ip of [b.ipv4, ...(b.ipv6 !== undefined ? [b.ipv6] : [])]) {
      // A replacement for the same address in the same network already re-pointed the route.
      const replaced = added.some((a) => a.binding.network === b.network && (a.binding.ipv4 === ip || a.binding.ipv6 === ip));
      if (!replaced) await this.rtnl.delHostRoute(table, ip, d.ifindex).catch(() => undefined);
      const sameNeighbor = added.some((a) => a.ifindex === d.ifindex && (a.binding.ipv4 === ip || a.binding.ipv6 === ip));
      if (!sameNeighbor) await this.rtnl.delNeighbor(d.ifindex, ip).catch(() => undefined);
    }
  }

  private async ensureRules(network: number): Promise<void> {
    for (const family of this.families) {
      const key = `${family}/${network}`;
      if (this.rules.has(key)) continue;
      const { fwmark, fwmask } = networkRuleMatch(network);
      await this.rtnl.addFwmarkRule(family, this.opts.rulePrefBase + network, fwmark, fwmask, this.opts.routeTableBase + network);
      this.rules.add(key);
    }
  }

  /** Removes everything this daemon installed. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.running?.catch(() => undefined);
    const log = this.opts.log;
    const step = async (what: string, fn: () => Promise<unknown>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        log.error({ err: String(err) }, `cleanup: ${what} failed`);
      }
    };
    await step('nftables tables', () => applyNft(renderDeleteTables(this.opts.table)));
    for (const s of this.installed.values()) {
      for (const ip of [s.binding.ipv4, ...(s.binding.ipv6 !== undefined ? [s.binding.ipv6] : [])]) {
        await step('neighbour', () => this.rtnl.delNeighbor(s.ifindex, ip));
      }
    }
    await step('routes', () => this.rtnl.flushOwnRoutes());
    await step('rules', () => this.rtnl.flushOwnRules());
    for (const a of this.ownedAddresses) await step('address', () => this.rtnl.delAddress(this.loIndex, a));
    if (this.fwmarkAcceptBefore !== undefined && this.fwmarkAcceptBefore !== '1') {
      await step('sysctl', () => writeSysctl(['net', 'ipv4', 'tcp_fwmark_accept'], this.fwmarkAcceptBefore ?? '0'));
    }
    this.installed.clear();
    this.rtnl.close();
  }
}
