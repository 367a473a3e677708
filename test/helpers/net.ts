// Helpers for root-level network tests: a lab per test with guaranteed teardown, and a view of
// the hv namespace's kernel state for assertions.
import { createLab, type Capture, type CaptureOptions, type CaptureWhere, type Lab, type LabOptions } from '../../src/lab/lab.js';
import { installLabSafetyNet } from '../../src/lab/safety.js';
import { run } from '../../src/lab/netns.js';

/** The part of a tap Test that withLab needs. */
export interface Teardownable {
  teardown(fn: () => unknown): void;
}

export const isRoot = process.getuid?.() === 0;

/** Creates a lab whose teardown (daemons stopped, namespaces deleted) runs when t ends. */
export async function withLab(t: Teardownable, opts: LabOptions): Promise<Lab> {
  installLabSafetyNet();
  const lab = await createLab(opts);
  t.teardown(() => lab.down());
  return lab;
}

export interface HvState {
  /** `nft list tables` lines, e.g. "table inet linkgate". */
  readonly tables: string[];
  /** `ip route show table all` lines, IPv4 then IPv6. */
  readonly routes: string[];
  /** `ip rule show` lines, IPv4 then IPv6. */
  readonly rules: string[];
  /** Addresses on lo, "a.b.c.d/len" (IPv6 too). */
  readonly loAddrs: string[];
  /** Ports of the lab's bridge, sorted (empty when the lab has no bridge). */
  readonly bridgePorts: string[];
}

const lines = (s: string): string[] =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');

export async function hvState(lab: Lab): Promise<HvState> {
  const [tables, routes, routes6, rules, rules6, addrJson, portsJson] = await Promise.all([
    lab.hvExec(['nft', 'list', 'tables']),
    run(['ip', '-n', lab.hv, 'route', 'show', 'table', 'all']),
    run(['ip', '-n', lab.hv, '-6', 'route', 'show', 'table', 'all']),
    run(['ip', '-n', lab.hv, 'rule', 'show']),
    run(['ip', '-n', lab.hv, '-6', 'rule', 'show']),
    run(['ip', '-n', lab.hv, '-j', 'addr', 'show', 'dev', 'lo']),
    lab.bridge === undefined ? Promise.resolve('[]') : run(['ip', '-n', lab.hv, '-j', 'link', 'show', 'master', lab.bridge]),
  ]);
  // iproute2's JSON: [{ addr_info: [{ local, prefixlen }] }]
  const parsed = JSON.parse(addrJson) as Array<{ addr_info?: Array<{ local?: string; prefixlen?: number }> }>;
  const loAddrs = parsed.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local ?? '?'}/${a.prefixlen ?? '?'}`));
  const bridgePorts = (JSON.parse(portsJson) as Array<{ ifname?: string }>).map((l) => l.ifname ?? '?').sort();
  return {
    tables: lines(tables),
    routes: [...lines(routes), ...lines(routes6)],
    rules: [...lines(rules), ...lines(rules6)],
    loAddrs,
    bridgePorts,
  };
}

/**
 * `lab.startCapture` (resolves once tcpdump is capturing), also stopped when `t` ends in case the
 * test fails before it calls `stop()`. E.g. `where` = `{ ns: lab.uplink.ns, ifname: 'eth0' }`, or
 * `{ ns: lab.hv, ifname: lab.guest(2).hostIf }` for another guest's port.
 */
export async function withCapture(t: Teardownable, lab: Lab, where: CaptureWhere, filter: string, opts?: CaptureOptions): Promise<Capture> {
  const cap = await lab.startCapture(where, filter, opts);
  t.teardown(() => cap.stop());
  return cap;
}

export { adminGet, adminRequest } from '../../src/lab/admin.js';
import { startDaemon, type DaemonProc } from '../../src/lab/daemon.js';
import type { LabConfig } from '../../src/lab/lab.js';

export interface Served {
  readonly lab: Lab;
  readonly daemon: DaemonProc;
  readonly config: LabConfig;
  readonly configPath: string;
}

/**
 * A lab with `guests` guests and the daemon running in its hypervisor namespace; `edit` may change
 * the config before it is written, `before` may change the hypervisor namespace before the daemon
 * starts. Everything is torn down when `t` ends.
 */
export async function withServedLab(
  t: Teardownable,
  opts: LabOptions & { edit?: (c: LabConfig, lab: Lab) => void; before?: (lab: Lab) => Promise<void> },
): Promise<Served> {
  const lab = await withLab(t, opts);
  await opts.before?.(lab);
  const config = lab.config();
  opts.edit?.(config, lab);
  const configPath = await lab.writeConfig(config);
  const daemon = await startDaemon(lab, configPath);
  return { lab, daemon, config, configPath };
}

/** Polls `fn` every 50 ms until it returns true; resolves with the time it took, rejects after `ms`. */
export async function eventually(fn: () => Promise<boolean>, ms: number): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await fn()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
