/**
 * Kernel state for the kernel path, driven from the registry's bindings:
 *   - nftables table (map ifname . MAC . IPv4 → mark, refused traffic counted and dropped),
 *   - the metadata address on `lo` (labelled `lo:linkgate`, so it can be told from an operator's),
 *   - one policy rule per network (`fwmark <tag|net>/<mask> lookup <table>`),
 *   - one /32 route per served guest via its port, in that network's table,
 *   - sysctls: tcp_fwmark_accept=1, src_valid_mark=1 on served ports (rp_filter sees the mark).
 * A binding is served while its interface exists and is up: link events reconcile within
 * milliseconds, and nothing requires an interface to exist at start.
 */
import type { Logger } from '../model/log.js';
import { networkRuleMatch } from './mark.js';
import {
  applyNft,
  elementKey,
  readCounters,
  renderDeleteTable,
  renderElementChanges,
  renderTable,
  type MapElement,
  type TableSpec,
} from './nft.js';
import { Rtnl, type LinkInfo } from './rtnl.js';
import { writeSysctl } from './sysctl.js';

export interface Binding extends MapElement {
  /** Numeric network id (0 = default), also encoded in `mark`. */
  readonly network: number;
}

export interface DataplaneOptions {
  readonly table: string;
  readonly listenIpv4: string;
  readonly port: number;
  /** Routing table of network N is routeTableBase + N. */
  readonly routeTableBase: number;
  /** Policy rule of network N has preference rulePrefBase + N. */
  readonly rulePrefBase: number;
  readonly log: Logger;
}

export const DEFAULT_DATAPLANE = { table: 'linkgate', routeTableBase: 27000, rulePrefBase: 9000 } as const;

const LO_LABEL = 'lo:linkgate';

interface Installed {
  readonly binding: Binding;
  readonly ifindex: number;
}

export class Dataplane {
  private readonly rtnl = new Rtnl();
  private readonly spec: TableSpec;
  private desired: readonly Binding[] = [];
  private readonly installed = new Map<string, Installed>();
  private readonly rules = new Set<number>();
  private readonly validMarkDone = new Set<number>();
  private ownsAddress = false;
  private loIndex = 1;
  private fwmarkAcceptBefore: string | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Reconcile runs, for tests and metrics. */
  reconciles = 0;

  constructor(private readonly opts: DataplaneOptions) {
    this.spec = { table: opts.table, listenIpv4: opts.listenIpv4, port: opts.port };
  }

  /**
   * Replaces whatever an earlier run left (table, routes, rules), installs the base state and
   * starts following link events. The caller then sets bindings.
   */
  async start(initial: readonly Binding[]): Promise<void> {
    const log = this.opts.log;
    this.desired = initial;
    this.fwmarkAcceptBefore = await writeSysctl(['net', 'ipv4', 'tcp_fwmark_accept'], '1');
    const routes = await this.rtnl.flushOwnRoutes();
    const rules = await this.rtnl.flushOwnRules();
    if (routes || rules) log.info({ routes, rules }, 'removed routes and rules left by an earlier run');
    await applyNft(renderTable(this.spec, []));
    const links = await this.rtnl.links();
    const lo = links.get('lo');
    if (!lo) throw new Error('no loopback interface in this network namespace');
    this.loIndex = lo.index;
    const addrs = await this.rtnl.addresses(lo.index);
    const label = addrs.get(this.opts.listenIpv4);
    if (label !== undefined && label !== LO_LABEL) {
      log.info({ address: this.opts.listenIpv4, label }, 'metadata address already on lo (not ours): leaving it in place');
    } else {
      await this.rtnl.addAddress(lo.index, this.opts.listenIpv4, LO_LABEL);
      this.ownsAddress = true;
    }
    await this.ensureRule(0);
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

  /** Bindings currently in the kernel map (interface present and up). */
  served(): Binding[] {
    return [...this.installed.values()].map((i) => i.binding);
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

  private async reconcileOnce(): Promise<void> {
    this.reconciles++;
    const links = await this.rtnl.links();
    const want = new Map<string, { binding: Binding; link: LinkInfo }>();
    for (const b of this.desired) {
      const link = links.get(b.ifname);
      if (link?.up) want.set(elementKey(b), { binding: b, link });
    }
    const add: Installed[] = [];
    const del: Installed[] = [];
    for (const [key, cur] of this.installed) {
      const w = want.get(key);
      if (!w || w.binding.mark !== cur.binding.mark || w.link.index !== cur.ifindex || w.binding.network !== cur.binding.network)
        del.push(cur);
    }
    for (const [key, w] of want) {
      const cur = this.installed.get(key);
      if (!cur || del.includes(cur)) add.push({ binding: w.binding, ifindex: w.link.index });
    }
    if (!add.length && !del.length) return;

    // Kernel map first for removals (refuse at once), routes first for additions (reply path ready).
    const delElems = del.map((d) => d.binding);
    const addElems = add.map((a) => a.binding);
    for (const a of add) {
      await this.ensureRule(a.binding.network);
      if (!this.validMarkDone.has(a.ifindex)) {
        await writeSysctl(['net', 'ipv4', 'conf', a.binding.ifname, 'src_valid_mark'], '1').catch(() => undefined);
        this.validMarkDone.add(a.ifindex);
      }
      await this.rtnl.addHostRoute(this.opts.routeTableBase + a.binding.network, a.binding.ipv4, a.ifindex);
    }
    try {
      await applyNft(renderElementChanges(this.spec, addElems, delElems));
    } catch (err) {
      // The kernel's map and ours disagree (someone edited the table?): rebuild it whole.
      this.opts.log.warn({ err: String(err) }, 'element update failed; rebuilding the nftables table');
      const all = [...want.values()].map((w) => w.binding);
      await applyNft(renderTable(this.spec, all));
    }
    for (const d of del) {
      this.installed.delete(elementKey(d.binding));
      const stillRouted = add.some((a) => a.binding.ipv4 === d.binding.ipv4 && a.binding.network === d.binding.network);
      if (!stillRouted) {
        await this.rtnl.delHostRoute(this.opts.routeTableBase + d.binding.network, d.binding.ipv4, d.ifindex).catch(() => undefined);
      }
    }
    for (const a of add) this.installed.set(elementKey(a.binding), a);
    this.opts.log.info(
      { added: add.map((a) => a.binding.ifname), removed: del.map((d) => d.binding.ifname), served: this.installed.size },
      'dataplane updated',
    );
  }

  private async ensureRule(network: number): Promise<void> {
    if (this.rules.has(network)) return;
    const { fwmark, fwmask } = networkRuleMatch(network);
    await this.rtnl.addFwmarkRule(this.opts.rulePrefBase + network, fwmark, fwmask, this.opts.routeTableBase + network);
    this.rules.add(network);
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
    await step('nftables table', () => applyNft(renderDeleteTable(this.opts.table)));
    await step('routes', () => this.rtnl.flushOwnRoutes());
    await step('rules', () => this.rtnl.flushOwnRules());
    if (this.ownsAddress) await step('address', () => this.rtnl.delAddress(this.loIndex, this.opts.listenIpv4));
    if (this.fwmarkAcceptBefore !== undefined && this.fwmarkAcceptBefore !== '1') {
      await step('sysctl', () => writeSysctl(['net', 'ipv4', 'tcp_fwmark_accept'], this.fwmarkAcceptBefore ?? '0'));
    }
    this.installed.clear();
    this.rtnl.close();
  }
}
