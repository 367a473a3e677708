/**
 * The benchmark suite: `npm run bench` (about 9–12 minutes), `npm run bench -- --quick` (under a
 * minute). Runs as root; builds its own lab (guest namespaces wired to a hypervisor namespace),
 * runs nginx, haproxy→nginx and linkgate there in turn, generates load from inside the guests,
 * then linkgate with the upstream backend in front of the nova test backend, and writes
 * bench/results/latest.{md,json,svg}. See bench/README.md.
 *
 *   --quick             short: 1 round, 1 s per measurement, 4 guests at once, an 8-guest storm
 *   --rounds N          rounds of alternation (default 3; quick 1)
 *   --duration S        seconds per measurement (default 5; quick 1)
 *   --guests N          guests of the "at once" scenario (default 50; quick 4)
 *   --storm N           guests of the boot storm (default 200; quick 8)
 *   --registry N        instances of the registry scale scenario (default 100000; quick 10000)
 *   --no-daemon-scale   skip starting a daemon with --registry instances (quick skips it)
 *   --out DIR           where the results go (default bench/results)
 *   bench/<what>.bench.ts   run that one benchmark script instead (CONTRIBUTING.md)
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createLab, type Lab, type LabConfig } from '../src/lab/lab.js';
import { installLabSafetyNet } from '../src/lab/safety.js';
import { adminGet } from '../src/lab/admin.js';
import { startDaemon, type DaemonProc } from '../src/lab/daemon.js';
import { startNova, type Nova, type NovaInstance, type NovaState } from '../test/helpers/nova.js';
import { fakeInstances } from './lib/instances.js';
import { buildLgload, lgloadGang, readLatencies, runLgload, runWrk, type LgloadResult, type WrkResult } from './lib/loadgen.js';
import { machineInfo, median, percentile, repoRoot, sleep } from './lib/machine.js';
import { makePeer, PEERS, rssKbOf, type Peer, type PeerName } from './lib/peers.js';
import { fmtRatio, fmtUs, markdown, scenarioTable, svgChart, targetTable, type Extra, type Row, type Target } from './lib/report.js';
import type { RegistryFigures } from './registry.bench.js';

// ---- options ---------------------------------------------------------------------------------

interface Options {
  readonly quick: boolean;
  readonly rounds: number;
  readonly duration: number;
  readonly guests: number;
  readonly storm: number;
  readonly registry: number;
  readonly daemonScale: boolean;
  readonly out: string;
}

function parseArgs(argv: readonly string[]): Options {
  const quick = argv.includes('--quick');
  const num = (flag: string, dflt: number, min: number, max: number): number => {
    const i = argv.indexOf(flag);
    if (i < 0) return dflt;
    const v = Number(argv[i + 1]);
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${flag} wants an integer ${min}..${max}`);
    return v;
  };
  const outAt = argv.indexOf('--out');
  const out = outAt >= 0 ? resolve(argv[outAt + 1] ?? '') : join(repoRoot(), 'bench', 'results');
  return {
    quick,
    rounds: num('--rounds', quick ? 1 : 3, 1, 10),
    duration: num('--duration', quick ? 1 : 5, 1, 60),
    guests: num('--guests', quick ? 4 : 50, 1, 200),
    storm: num('--storm', quick ? 8 : 200, 1, 240),
    registry: num('--registry', quick ? 10_000 : 100_000, 1, 1_000_000),
    daemonScale: !quick && !argv.includes('--no-daemon-scale'),
    out,
  };
}

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const PATH_ID = '/latest/meta-data/instance-id';
const CRAWL_ROOTS = ['/latest/meta-data/', '/latest/user-data', '/latest/dynamic/instance-identity/document'];
/** Concurrent connections of one wrk (keep-alive and new-connection runs). */
const WRK_CONNS = 16;

// ---- figures ---------------------------------------------------------------------------------

/** One measurement of one scenario on one peer in one round. */
interface Sample {
  readonly round: number;
  readonly rps: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly errors: number;
  readonly detail: Readonly<Record<string, unknown>>;
}

type Samples = Map<string, Map<PeerName, Sample[]>>;

function record(all: Samples, scenario: string, peer: PeerName, s: Sample): void {
  let m = all.get(scenario);
  if (m === undefined) all.set(scenario, (m = new Map<PeerName, Sample[]>()));
  let l = m.get(peer);
  if (l === undefined) m.set(peer, (l = []));
  l.push(s);
}

/** One measurement as a Sample: its rate and percentiles, `errors`, everything else as detail. */
const sampleOf = (
  round: number,
  m: { readonly rps: number; readonly p50_us: number; readonly p99_us: number },
  errors: number,
): Sample => ({
  round,
  rps: m.rps,
  p50_us: m.p50_us,
  p99_us: m.p99_us,
  errors,
  detail: { ...m },
});

const fromWrk = (round: number, w: WrkResult): Sample => sampleOf(round, w, w.socket_errors + w.status_errors);

function lineOf(peer: PeerName, scenario: string, s: Sample): string {
  const extra = Object.entries(s.detail)
    .filter(([k]) => ['conns_per_req', 'mismatches', 'guests', 'rate', 'script', 'slowest_over_median', 'total_s'].includes(k))
    .map(([k, v]) => `${k}=${typeof v === 'number' ? Math.round(v * 1000) / 1000 : JSON.stringify(v)}`)
    .join(' ');
  return `  ${scenario} · ${peer}: ${Math.round(s.rps)} req/s, p50 ${fmtUs(s.p50_us)}, p99 ${fmtUs(s.p99_us)}, errors ${s.errors} ${extra}`;
}

// ---- scenarios -------------------------------------------------------------------------------

interface Ctx {
  readonly o: Options;
  readonly lab: Lab;
  readonly config: LabConfig;
  readonly lgload: string;
  readonly dir: string;
}

const idOf = (ctx: Ctx, i: number): string => ctx.config.instances[i - 1]?.id ?? '?';
const track = (lab: Lab): { add(pid: number): void; remove(pid: number): void } => ({
  add: (pid) => lab.trackPid(pid),
  remove: (pid) => lab.untrackPid(pid),
});

function mergeLatencies(files: readonly string[]): { p50: number; p99: number; n: number } {
  const parts = files.filter((f) => existsSync(f)).map(readLatencies);
  const all = new Uint32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  all.sort();
  return { p50: percentile(all, 50), p99: percentile(all, 99), n: all.length };
}

/** N guests at once, each opening a new connection per request (2 in flight), each checking every body is its own id. */
async function manyGuests(ctx: Ctx, round: number, peer: PeerName): Promise<Sample> {
  const n = ctx.o.guests;
  const files = Array.from({ length: n }, (_, k) => join(ctx.dir, `lat-many-${peer}-${round}-${k + 1}.bin`));
  const gang = await lgloadGang(
    ctx.lgload,
    Array.from({ length: n }, (_, k) => ({
      ns: ctx.lab.guest(k + 1).ns,
      args: ['get', '-c', '2', '-d', String(ctx.o.duration), '-e', idOf(ctx, k + 1), '-o', files[k] as string, PATH_ID],
    })),
    ctx.o.duration,
    track(ctx.lab),
  );
  const res = await gang.go();
  const start = Math.min(...res.map((r) => r.start_us));
  const end = Math.max(...res.map((r) => r.end_us));
  const requests = res.reduce((a, r) => a + r.requests, 0);
  const mismatches = res.reduce((a, r) => a + r.mismatches, 0);
  const errors = res.reduce((a, r) => a + r.errors + r.non200, 0);
  const lat = mergeLatencies(files);
  for (const f of files) rmSync(f, { force: true });
  return {
    round,
    rps: requests / ((end - start) / 1e6),
    p50_us: lat.p50,
    p99_us: lat.p99,
    errors: errors + mismatches,
    detail: { guests: n, requests, mismatches, errors, first_error: res.find((r) => r.first_error)?.first_error ?? '' },
  };
}

interface Storm {
  readonly guests: number;
  readonly requests: number;
  readonly errors: number;
  readonly mismatches: number;
  readonly total_s: number;
  readonly rps: number;
  readonly finish_median_s: number;
  readonly finish_max_s: number;
  readonly slowest_over_median: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly per_guest_requests: number;
}

/** Every guest crawls its whole EC2 tree (new connection per request), all starting at one instant. */
async function bootStorm(ctx: Ctx, round: number, tag = 'storm'): Promise<Storm> {
  const n = ctx.o.storm;
  const files = Array.from({ length: n }, (_, k) => join(ctx.dir, `lat-${tag}-${round}-${k + 1}.bin`));
  const gang = await lgloadGang(
    ctx.lgload,
    Array.from({ length: n }, (_, k) => ({
      ns: ctx.lab.guest(k + 1).ns,
      args: ['crawl', '-d', '120', '-n', '5000', '-t', '10000', '-e', idOf(ctx, k + 1), '-o', files[k] as string, ...CRAWL_ROOTS],
    })),
    120,
    track(ctx.lab),
  );
  const res: LgloadResult[] = await gang.go();
  const start = Math.min(...res.map((r) => r.start_us));
  const end = Math.max(...res.map((r) => r.end_us));
  const finish = res.map((r) => (r.end_us - start) / 1e6);
  const requests = res.reduce((a, r) => a + r.requests, 0);
  const lat = mergeLatencies(files);
  for (const f of files) rmSync(f, { force: true });
  const med = median(finish);
  const total = (end - start) / 1e6;
  return {
    guests: n,
    requests,
    errors: res.reduce((a, r) => a + r.errors + r.non200, 0),
    mismatches: res.reduce((a, r) => a + r.mismatches, 0),
    total_s: total,
    rps: requests / total,
    finish_median_s: med,
    finish_max_s: Math.max(...finish),
    slowest_over_median: Math.max(...finish) / med,
    p50_us: lat.p50,
    p99_us: lat.p99,
    per_guest_requests: median(res.map((r) => r.requests)),
  };
}

function registryChild(n: number): Promise<RegistryFigures> {
  return new Promise((resolvePromise, reject) => {
    const env = { ...process.env };
    delete env['NODE_OPTIONS'];
    const child = spawn(
      process.execPath,
      [
        '--expose-gc',
        '--import=@tapjs/typescript/import',
        join(repoRoot(), 'bench', 'registry.bench.ts'),
        '--instances',
        String(n),
        '--json',
      ],
      { cwd: repoRoot(), env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.once('close', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      try {
        if (code !== 0) throw new Error(`exit ${code}`);
        resolvePromise(JSON.parse(line) as RegistryFigures);
      } catch (e) {
        reject(new Error(`registry bench failed (${e instanceof Error ? e.message : String(e)}): ${err.slice(-800)}`));
      }
    });
  });
}

interface DaemonScale {
  readonly instances: number;
  readonly ready_s: number;
  readonly rss_mb: number;
  readonly hwm_mb: number;
  readonly newconn_rps: number;
  readonly served: boolean;
}

/** The daemon itself with `n` instances (the lab's guests plus synthetic ones on absent interfaces). */
async function daemonScale(ctx: Ctx, n: number): Promise<DaemonScale> {
  const extra = fakeInstances(Math.max(0, n - ctx.config.instances.length));
  const path = join(ctx.dir, 'scale.json');
  writeFileSync(path, JSON.stringify({ ...ctx.config, instances: [...ctx.config.instances, ...extra] }));
  const t0 = Date.now();
  const d = await startDaemon(ctx.lab, path, { readyTimeoutMs: 180_000 });
  try {
    const readyS = (Date.now() - t0) / 1000;
    const r = await ctx.lab.curl(1, PATH_ID, { timeoutS: 5 });
    const served = r.status === 200 && r.body === idOf(ctx, 1);
    const w = await runWrk({
      ns: ctx.lab.guest(1).ns,
      path: PATH_ID,
      connections: WRK_CONNS,
      durationS: ctx.o.duration,
      close: true,
      dir: ctx.dir,
    });
    await sleep(500);
    let rss = rssKbOf(d.pid) / 1024;
    let hwm = 0;
    try {
      const st = readFileSync(`/proc/${d.pid}/status`, 'utf8');
      rss = Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0) / 1024;
      hwm = Number(/VmHWM:\s+(\d+)/.exec(st)?.[1] ?? 0) / 1024;
    } catch {
      /* gone */
    }
    return { instances: n, ready_s: readyS, rss_mb: rss, hwm_mb: hwm, newconn_rps: w.rps, served };
  } finally {
    await d.stop();
  }
}

// ---- the upstream backend --------------------------------------------------------------------
//
// linkgate with `default_backend: upstream` in front of the nova-compatible test backend
// (test/helpers/nova-server.mjs: checks the signature, counts every call and when it arrived),
// which runs on 127.0.0.1 in the lab's hv namespace. Each round: the same daemon with the embedded
// store first (the baseline), then a fresh daemon with the upstream backend (its cache empty) and a
// fresh count at the backend: a cold storm, a warm storm, cold same-path bursts, cache hits and
// cache misses. The backend answers at once except during the bursts (then COALESCE_DELAY_MS).

const NOVA_PORT = 8775;
const NOVA_SECRET = 'bench-n0va-s3cret';
/** cache_ttl_s of the scenario: long enough that the warm storm follows the cold one within it. */
const UPSTREAM_TTL_S = 30;
/** Backend latency during the same-path bursts, so every request of a burst arrives while its fetch is under way. */
const COALESCE_DELAY_MS = 100;
/** Connections per guest in a same-path burst, all opened at one instant. */
const COALESCE_CONNS = 16;

/**
 * lgload and curl send an `Accept` header (any type), wrk none. Accept is one of the guest headers
 * passed upstream, so part of the cache key: a request without it is another cache entry (one more
 * backend fetch). The upstream rows' wrk runs send it too, so every client here asks the same.
 */
const SAME_ACCEPT = { Accept: '*/*' } as const;

const UP_SCENARIO = {
  baseline: 'upstream: embedded-store baseline, new conn',
  hit: 'upstream: cache hit, new conn',
  miss: 'upstream: cache miss, new conn',
  burst: (g: number): string => `upstream: ${g} guests × ${COALESCE_CONNS} same path, cold`,
  cold: (n: number): string => `upstream: cold storm, ${n} guests`,
  warm: (n: number): string => `upstream: warm storm, ${n} guests`,
};

/** The daemon's upstream counters (/v1/health → upstream), or their change over a step. */
interface UpCounters {
  readonly hit: number;
  readonly miss: number;
  readonly coalesced: number;
  readonly stale: number;
  readonly backendCalls: number;
  readonly refused: number;
  readonly failures: number;
  readonly timeouts: number;
}

const UP_KEYS = ['hit', 'miss', 'coalesced', 'stale', 'backendCalls', 'refused', 'failures', 'timeouts'] as const;

function field(o: unknown, key: string): unknown {
  return typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[key] : undefined;
}

async function upCounters(socket: string): Promise<UpCounters> {
  const r = await adminGet(socket, '/v1/health');
  const up = field(r.body, 'upstream');
  const cache = field(up, 'cache');
  const n = (v: unknown): number => (typeof v === 'number' ? v : NaN);
  return {
    hit: n(field(cache, 'hit')),
    miss: n(field(cache, 'miss')),
    coalesced: n(field(cache, 'coalesced')),
    stale: n(field(cache, 'stale')),
    backendCalls: n(field(up, 'backendCalls')),
    refused: n(field(up, 'refused')),
    failures: n(field(up, 'failures')),
    timeouts: n(field(up, 'timeouts')),
  };
}

const upDelta = (a: UpCounters, b: UpCounters): UpCounters =>
  Object.fromEntries(UP_KEYS.map((k) => [k, b[k] - a[k]])) as unknown as UpCounters;

/** What went wrong upstream (the daemon's counters): '' when nothing did. */
function fmtTrouble(c: UpCounters): string {
  const t: string[] = [];
  if (c.refused) t.push(`${c.refused} refused at once (503: backend queue full or circuit open)`);
  if (c.timeouts) t.push(`${c.timeouts} backend timeouts (504)`);
  if (c.failures - c.timeouts) t.push(`${c.failures - c.timeouts} backend failures`);
  if (c.stale) t.push(`${c.stale} stale answers`);
  return t.join(', ');
}

const fmtOutcomes = (c: UpCounters): string =>
  [`${c.miss} miss, ${c.coalesced} coalesced, ${c.hit} hit`, fmtTrouble(c)].filter((x) => x !== '').join(', ');

/** Backend calls per instance, for the keys (`<id> <url>`) `pick` accepts, between two snapshots. */
function callsPerInstance(ids: readonly string[], before: NovaState, after: NovaState, pick: (url: string) => boolean): number[] {
  const per = new Map<string, number>(ids.map((id) => [id, 0]));
  for (const [key, n] of Object.entries(after.byKey)) {
    const sp = key.indexOf(' ');
    const id = key.slice(0, sp);
    if (!per.has(id) || !pick(key.slice(sp + 1))) continue;
    per.set(id, (per.get(id) ?? 0) + n - (before.byKey[key] ?? 0));
  }
  return [...per.values()];
}

/** The most calls of one key within any window of `ms` (arrival times in ms). */
function maxInWindow(times: readonly number[], ms: number): number {
  const t = [...times].sort((a, b) => a - b);
  let best = 0;
  let j = 0;
  for (let i = 0; i < t.length; i++) {
    while ((t[i] ?? 0) - (t[j] ?? 0) >= ms) j++;
    best = Math.max(best, i - j + 1);
  }
  return best;
}

interface UpStorm extends Storm {
  readonly backend_calls: number;
  readonly fetches_per_instance_median: number;
  readonly fetches_per_instance_max: number;
  readonly daemon: UpCounters;
}

interface UpBurst {
  readonly guests: number;
  readonly conns: number;
  readonly path: string;
  readonly requests: number;
  readonly errors: number;
  readonly mismatches: number;
  readonly rps: number;
  readonly p50_us: number;
  readonly p99_us: number;
  readonly backend_delay_ms: number;
  /** Backend calls for the burst's path, per instance: min and max over the guests. */
  readonly calls_per_instance_min: number;
  readonly calls_per_instance_max: number;
  readonly daemon: UpCounters;
}

interface UpWrk {
  readonly wrk: WrkResult;
  readonly backend_calls: number;
  readonly daemon: UpCounters;
}

interface UpRound {
  readonly round: number;
  readonly baseline: WrkResult;
  readonly cold: UpStorm;
  readonly warm: UpStorm;
  readonly burst: UpBurst;
  readonly hit: UpWrk;
  readonly miss: UpWrk;
  /** Every backend call of the round: how many, how many keys, the most for one key within one TTL. */
  readonly backend: { readonly calls: number; readonly keys: number; readonly max_per_ttl: number; readonly worst_key: string };
}

/** The nova backend's view of the lab's instances (their EC2 tree is built from these). */
function novaInstances(config: LabConfig): Record<string, NovaInstance> {
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  const out: Record<string, NovaInstance> = {};
  for (const inst of config.instances) {
    const port = inst.ports[0];
    const keys = Array.isArray(inst['ssh_keys']) ? inst['ssh_keys'].filter((k): k is string => typeof k === 'string') : undefined;
    const tags = field(inst, 'tags');
    const userData = str(inst['user_data']);
    out[inst.id] = {
      project: str(inst['project']) ?? 'default',
      hostname: inst.hostname,
      ...(port ? { mac: port.mac, ipv4: port.ipv4 } : {}),
      ...(keys ? { ssh_keys: keys } : {}),
      ...(userData !== undefined ? { user_data: userData } : {}),
      ...(typeof tags === 'object' && tags !== null
        ? { tags: Object.fromEntries(Object.entries(tags).filter((e): e is [string, string] => typeof e[1] === 'string')) }
        : {}),
    };
  }
  return out;
}

/** Waits until guest 1 is answered through the upstream backend (a path of its own, so no storm path gets cached). */
async function waitUpstream(ctx: Ctx, d: DaemonProc, round: number): Promise<void> {
  const until = Date.now() + 15_000;
  let last = '';
  for (let k = 0; Date.now() < until && d.running(); k++) {
    const r = await ctx.lab.curl(1, `${PATH_ID}?ready=${round}-${k}`, { timeoutS: 2 });
    if (r.status === 200 && r.body === idOf(ctx, 1)) return;
    last = `status ${r.status} ${r.body.slice(0, 80)} ${r.error.trim()}`;
    await sleep(100);
  }
  throw new Error(`linkgate (upstream backend) is not serving guest 1: ${last} ${d.output().stderr.slice(-400)}`);
}

/** `guests` guests each open COALESCE_CONNS connections for one same, never asked path at one instant. */
async function sameBurst(ctx: Ctx, round: number, nova: Nova, socket: string): Promise<UpBurst> {
  const g = ctx.o.guests;
  const path = `${PATH_ID}?cold=${round}`;
  const files = Array.from({ length: g }, (_, k) => join(ctx.dir, `lat-burst-${round}-${k + 1}.bin`));
  const ids = Array.from({ length: g }, (_, k) => idOf(ctx, k + 1));
  const gang = await lgloadGang(
    ctx.lgload,
    ids.map((id, k) => ({
      ns: ctx.lab.guest(k + 1).ns,
      args: [
        'get',
        '-c',
        String(COALESCE_CONNS),
        '-n',
        String(COALESCE_CONNS),
        '-d',
        '30',
        '-t',
        '10000',
        '-e',
        id,
        '-o',
        files[k] ?? '',
        path,
      ],
    })),
    30,
    track(ctx.lab),
  );
  await nova.setDelay(COALESCE_DELAY_MS);
  const c0 = await upCounters(socket);
  const before = await nova.state();
  let res: LgloadResult[];
  try {
    res = await gang.go();
  } finally {
    await nova.setDelay(0);
  }
  const after = await nova.state();
  const c1 = await upCounters(socket);
  const per = callsPerInstance(ids, before, after, (url) => url === path);
  const start = Math.min(...res.map((r) => r.start_us));
  const end = Math.max(...res.map((r) => r.end_us));
  const requests = res.reduce((a, r) => a + r.requests, 0);
  const lat = mergeLatencies(files);
  for (const f of files) rmSync(f, { force: true });
  return {
    guests: g,
    conns: COALESCE_CONNS,
    path,
    requests,
    errors: res.reduce((a, r) => a + r.errors + r.non200, 0),
    mismatches: res.reduce((a, r) => a + r.mismatches, 0),
    rps: requests / ((end - start) / 1e6),
    p50_us: lat.p50,
    p99_us: lat.p99,
    backend_delay_ms: COALESCE_DELAY_MS,
    calls_per_instance_min: Math.min(...per),
    calls_per_instance_max: Math.max(...per),
    daemon: upDelta(c0, c1),
  };
}

/** One round of the upstream scenarios (see the head of this section). */
async function upstreamRound(ctx: Ctx, round: number, embedded: Peer, nova: Nova, upConfigPath: string): Promise<UpRound> {
  const g1 = ctx.lab.guest(1).ns;
  const wrk = (close: boolean, durationS: number, uniqueTag?: string): Promise<WrkResult> =>
    runWrk({
      ns: g1,
      path: PATH_ID,
      connections: WRK_CONNS,
      durationS,
      close,
      dir: ctx.dir,
      headers: SAME_ACCEPT,
      ...(uniqueTag !== undefined ? { uniqueTag } : {}),
    });

  // The baseline: the same daemon with the embedded store, new connection per request.
  await embedded.start();
  let baseline: WrkResult;
  try {
    await wrk(false, 1);
    baseline = await wrk(true, ctx.o.duration);
  } finally {
    await embedded.stop();
  }

  await nova.setDelay(0);
  await nova.reset();
  const socket = ctx.config.admin.socket;
  const d = await startDaemon(ctx.lab, upConfigPath, { readyTimeoutMs: 120_000 });
  try {
    await waitUpstream(ctx, d, round);
    await wrk(false, 1, `warm${round}`); // warm-up: misses on paths of their own, not counted

    const ids = Array.from({ length: ctx.o.storm }, (_, k) => idOf(ctx, k + 1));
    const crawlPath = (url: string): boolean => !url.includes('?');
    const storm = async (tag: string): Promise<UpStorm> => {
      const c0 = await upCounters(socket);
      const s0 = await nova.state();
      const st = await bootStorm(ctx, round, tag);
      const s1 = await nova.state();
      const c1 = await upCounters(socket);
      const per = callsPerInstance(ids, s0, s1, crawlPath);
      return {
        ...st,
        backend_calls: s1.calls - s0.calls,
        fetches_per_instance_median: median(per),
        fetches_per_instance_max: Math.max(...per),
        daemon: upDelta(c0, c1),
      };
    };
    const cold = await storm('upcold');
    const warm = await storm('upwarm');
    const burst = await sameBurst(ctx, round, nova, socket);

    const measured = async (close: boolean, uniqueTag?: string): Promise<UpWrk> => {
      const c0 = await upCounters(socket);
      const s0 = await nova.state();
      const w = await wrk(close, ctx.o.duration, uniqueTag);
      const s1 = await nova.state();
      const c1 = await upCounters(socket);
      return { wrk: w, backend_calls: s1.calls - s0.calls, daemon: upDelta(c0, c1) };
    };
    await ctx.lab.curl(1, PATH_ID, { timeoutS: 5 }); // cached already by the storms, unless a storm failed there
    const hit = await measured(true);
    const miss = await measured(true, `miss${round}`);

    const all = await nova.times();
    let maxPerTtl = 0;
    let worst = '';
    for (const [key, t] of Object.entries(all.times)) {
      const m = maxInWindow(t, UPSTREAM_TTL_S * 1000);
      if (m > maxPerTtl) [maxPerTtl, worst] = [m, key];
    }
    return {
      round,
      baseline,
      cold,
      warm,
      burst,
      hit,
      miss,
      backend: { calls: all.calls, keys: Object.keys(all.times).length, max_per_ttl: maxPerTtl, worst_key: worst },
    };
  } finally {
    await d.stop();
  }
}

// ---- the run ---------------------------------------------------------------------------------

async function main(argv: readonly string[]): Promise<number> {
  const script = argv.find((a) => a.endsWith('.bench.ts'));
  if (script !== undefined) {
    // `npm run bench -- bench/<what>.bench.ts`: that script alone (it reads process.argv itself).
    process.argv = [process.argv[0] ?? 'node', resolve(script), ...argv.filter((a) => a !== script)];
    await import(pathToFileURL(resolve(script)).href);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: needs root (it creates network namespaces)\n');
    return 1;
  }
  const o = parseArgs(argv);
  installLabSafetyNet();
  const machine = machineInfo();
  const started = Date.now();
  const settings =
    `${o.rounds} round(s), ${o.duration} s per measurement, wrk -t1 -c${WRK_CONNS}, ${o.guests} guests at once, ` +
    `${o.storm}-guest storm, registry ${o.registry.toLocaleString('en-US')} instances`;
  say(`linkgate bench (${o.quick ? 'quick' : 'full'}): ${settings}`);
  say(`machine: ${machine.nproc} CPUs (${machine.cpu}), kernel ${machine.kernel}, node ${machine.node}, commit ${machine.commit}`);

  const lgload = await buildLgload();
  const samples: Samples = new Map();
  const storms: Storm[] = [];
  const rss = new Map<PeerName, number[]>();
  const extras: Extra[] = [];
  const skipped: string[] = [];
  let registry: RegistryFigures | undefined;
  let scale: DaemonScale | undefined;
  const upRounds: UpRound[] = [];
  let halfRate = NaN;

  const labGuests = Math.max(o.guests, o.storm, 1);
  const t0 = Date.now();
  const lab = await createLab({ guests: labGuests });
  say(`lab ${lab.prefix}: ${labGuests} guests in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  try {
    const config = lab.config();
    const configPath = await lab.writeConfig(config);
    const dir = join(lab.dir, 'bench');
    mkdirSync(dir, { recursive: true });
    const ctx: Ctx = { o, lab, config, lgload, dir };
    const peers: Peer[] = PEERS.map((name) => makePeer(name, { lab, config, configPath, dir }));
    const g1 = lab.guest(1).ns;
    const wrk = (close: boolean, extra: { imdsv2?: boolean; durationS?: number } = {}): Promise<WrkResult> =>
      runWrk({ ns: g1, path: PATH_ID, connections: WRK_CONNS, durationS: extra.durationS ?? o.duration, close, dir, ...extra });

    // Phase 1: saturation, alternating peers round by round.
    for (let round = 1; round <= o.rounds; round++) {
      for (const peer of peers) {
        say(`round ${round}/${o.rounds}: ${peer.name}`);
        await peer.start();
        try {
          await wrk(false, { durationS: 1 }); // warm-up (JIT, caches, ARP), not counted
          const put = (scenario: string, s: Sample): void => {
            record(samples, scenario, peer.name, s);
            say(lineOf(peer.name, scenario, s));
          };
          put('keep-alive', fromWrk(round, await wrk(false)));
          put('new connection per request', fromWrk(round, await wrk(true)));
          put(`${o.guests} guests at once`, await manyGuests(ctx, round, peer.name));
          if (peer.name === 'linkgate') {
            const v2 = await wrk(true, { imdsv2: true });
            put('IMDSv2 token PUT + GET', fromWrk(round, v2));
            const st = await bootStorm(ctx, round);
            storms.push(st);
            put(`boot storm, ${o.storm} guests`, sampleOf(round, st, st.errors + st.mismatches));
          }
          let l = rss.get(peer.name);
          if (l === undefined) rss.set(peer.name, (l = []));
          l.push(peer.rssKb());
        } finally {
          await peer.stop();
        }
      }
    }

    // Phase 2: latency at half of linkgate's saturated new-connection rate, same rate for every peer.
    const lgNew = samples.get('new connection per request')?.get('linkgate') ?? [];
    halfRate = Math.max(50, Math.round(median(lgNew.map((s) => s.rps)) / 2));
    for (let round = 1; round <= o.rounds; round++) {
      for (const peer of peers) {
        await peer.start();
        try {
          await wrk(false, { durationS: 1 });
          const r = await runLgload(
            lgload,
            g1,
            ['get', '-r', String(halfRate), '-c', '512', '-d', String(o.duration), '-e', idOf(ctx, 1), PATH_ID],
            o.duration,
          );
          const s: Sample = {
            round,
            rps: r.rps,
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            errors: r.errors + r.non200 + r.mismatches,
            detail: { rate: halfRate, requests: r.requests },
          };
          record(samples, 'new connection, half load', peer.name, s);
          say(lineOf(peer.name, 'new connection, half load', s));
        } finally {
          await peer.stop();
        }
      }
    }

    // Phase 3: scale.
    say(`registry: ${o.registry} instances (in-process)`);
    registry = await registryChild(o.registry);
    say(
      `  registry: RSS +${registry.rss_delta_mb} MB, heap +${registry.heap_delta_mb} MB, byMark ${registry.by_mark_ns} ns, ` +
        `byTriple ${registry.by_triple_ns} ns, validate ${registry.validate_ms} ms, build ${registry.build_ms} ms`,
    );
    if (o.daemonScale) {
      say(`daemon with ${o.registry} instances`);
      try {
        scale = await daemonScale(ctx, o.registry);
        say(
          `  daemon: ready in ${scale.ready_s.toFixed(1)} s, RSS ${scale.rss_mb.toFixed(0)} MB (peak ${scale.hwm_mb.toFixed(0)} MB), ` +
            `new-conn ${Math.round(scale.newconn_rps)} req/s, guest 1 served: ${scale.served}`,
        );
      } catch (e) {
        skipped.push(`daemon with ${o.registry} instances: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
        say(`  daemon scale failed: ${skipped[skipped.length - 1] ?? ''}`);
      }
    } else {
      skipped.push(`daemon with ${o.registry} instances (RSS from /proc): ${o.quick ? 'not in --quick' : '--no-daemon-scale'}`);
    }

    // Phase 4: the upstream backend against the nova test backend (see "the upstream backend" above).
    say(`upstream backend: ${o.rounds} round(s), cache_ttl_s ${UPSTREAM_TTL_S}, nova test backend on 127.0.0.1:${NOVA_PORT} in the hv`);
    const stops: (() => unknown)[] = [];
    try {
      const nova = await startNova({ teardown: (fn) => void stops.push(fn) }, lab, {
        port: NOVA_PORT,
        secret: NOVA_SECRET,
        instances: novaInstances(config),
      });
      const upConfigPath = join(dir, 'upstream.json');
      writeFileSync(
        upConfigPath,
        JSON.stringify({
          ...config,
          backends: { upstream: { url: nova.url, shared_secret: NOVA_SECRET, cache_ttl_s: UPSTREAM_TTL_S } },
          default_backend: 'upstream',
        }),
      );
      const embedded = peers.find((p) => p.name === 'linkgate');
      if (embedded === undefined) throw new Error('no linkgate peer');
      for (let round = 1; round <= o.rounds; round++) {
        say(`upstream round ${round}/${o.rounds}`);
        const u = await upstreamRound(ctx, round, embedded, nova, upConfigPath);
        upRounds.push(u);
        const put = (scenario: string, s: Sample): void => {
          record(samples, scenario, 'linkgate', s);
          say(`  ${scenario}: ${Math.round(s.rps)} req/s, p50 ${fmtUs(s.p50_us)}, p99 ${fmtUs(s.p99_us)}, errors ${s.errors}`);
        };
        const fromStorm = (st: UpStorm): Sample => sampleOf(round, st, st.errors + st.mismatches);
        put(UP_SCENARIO.baseline, fromWrk(round, u.baseline));
        put(UP_SCENARIO.hit, { ...fromWrk(round, u.hit.wrk), detail: { ...u.hit } });
        put(UP_SCENARIO.miss, { ...fromWrk(round, u.miss.wrk), detail: { ...u.miss } });
        put(UP_SCENARIO.burst(o.guests), {
          round,
          rps: u.burst.rps,
          p50_us: u.burst.p50_us,
          p99_us: u.burst.p99_us,
          errors: u.burst.errors + u.burst.mismatches,
          detail: { ...u.burst },
        });
        put(UP_SCENARIO.cold(o.storm), fromStorm(u.cold));
        put(UP_SCENARIO.warm(o.storm), fromStorm(u.warm));
        say(
          `  backend: ${u.backend.calls} calls for ${u.backend.keys} (instance, path) keys, at most ${u.backend.max_per_ttl} ` +
            `per key within ${UPSTREAM_TTL_S} s; cold storm ${u.cold.fetches_per_instance_max} fetches per instance at most ` +
            `(${u.cold.per_guest_requests} req/guest), warm storm ${u.warm.backend_calls}; burst ${u.burst.calls_per_instance_min}–` +
            `${u.burst.calls_per_instance_max} per instance (${fmtOutcomes(u.burst.daemon)})`,
        );
        for (const [what, st] of [
          ['cold storm', u.cold],
          ['warm storm', u.warm],
        ] as const) {
          say(`  ${what}: ${fmtOutcomes(st.daemon)}`);
        }
      }
    } catch (e) {
      skipped.push(`upstream backend: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      say(`  upstream backend failed: ${skipped[skipped.length - 1] ?? ''}`);
    } finally {
      for (const stop of stops) await stop();
    }
  } finally {
    await lab.down();
  }

  // ---- summary -------------------------------------------------------------------------------
  const upSum = (f: (u: UpRound) => number): number => upRounds.reduce((a, u) => a + f(u), 0);
  const upMed = (f: (u: UpRound) => number): number => median(upRounds.map(f));
  const upMax = (f: (u: UpRound) => number): number => Math.max(...upRounds.map(f));
  const upNotes = new Map<string, string>();
  if (upRounds.length) {
    const embeddedStorm = median(storms.map((st) => st.rps));
    const base = upMed((u) => u.baseline.rps);
    /** The daemon's trouble summed over the rounds, as a note suffix. */
    const trouble = (f: (u: UpRound) => UpCounters): string => {
      const sum = Object.fromEntries(UP_KEYS.map((k) => [k, upSum((u) => f(u)[k])])) as unknown as UpCounters;
      const t = fmtTrouble(sum);
      return t === '' ? '' : `; ${t}`;
    };
    const hit = upMed((u) => u.hit.wrk.rps);
    const burstOut = upRounds.map((u) => u.burst.daemon);
    upNotes.set(UP_SCENARIO.baseline, 'same daemon, embedded store, before each upstream round');
    upNotes.set(
      UP_SCENARIO.hit,
      `${fmtRatio(hit / base)} the embedded store; ${upSum((u) => u.hit.backend_calls)} backend calls for ${upSum((u) => u.hit.wrk.requests)} req`,
    );
    upNotes.set(
      UP_SCENARIO.miss,
      `${(upSum((u) => u.miss.backend_calls) / upSum((u) => u.miss.wrk.requests)).toFixed(2)} backend calls/req; ` +
        `${fmtRatio(upMed((u) => u.miss.wrk.rps) / hit)} the hit rate`,
    );
    upNotes.set(
      UP_SCENARIO.burst(o.guests),
      `backend ${COALESCE_DELAY_MS} ms; ${Math.min(...upRounds.map((u) => u.burst.calls_per_instance_min))}–` +
        `${upMax((u) => u.burst.calls_per_instance_max)} backend calls/instance; ` +
        `${burstOut.reduce((a, c) => a + c.miss, 0)} miss, ${burstOut.reduce((a, c) => a + c.coalesced, 0)} coalesced, ` +
        `${burstOut.reduce((a, c) => a + c.hit, 0)} hit`,
    );
    upNotes.set(
      UP_SCENARIO.cold(o.storm),
      `${upMed((u) => u.cold.per_guest_requests)} req/guest, total ${upMed((u) => u.cold.total_s).toFixed(2)} s; ` +
        `≤ ${upMax((u) => u.cold.fetches_per_instance_max)} backend fetches/instance; ` +
        `${fmtRatio(upMed((u) => u.cold.rps) / embeddedStorm)} the embedded storm` +
        trouble((u) => u.cold.daemon),
    );
    upNotes.set(
      UP_SCENARIO.warm(o.storm),
      `total ${upMed((u) => u.warm.total_s).toFixed(2)} s; ${upSum((u) => u.warm.backend_calls)} backend calls, ` +
        `${upSum((u) => u.warm.daemon.hit)} hits; ${fmtRatio(upMed((u) => u.warm.rps) / embeddedStorm)} the embedded storm` +
        trouble((u) => u.warm.daemon),
    );
  }
  const rows: Row[] = [];
  for (const [scenario, byPeer] of samples) {
    for (const peer of PEERS) {
      const l = byPeer.get(peer);
      if (l === undefined || l.length === 0) continue;
      const cpr = l.map((s) => s.detail['conns_per_req']).filter((x): x is number => typeof x === 'number');
      const notes: string[] = [];
      if (cpr.length && scenario.startsWith('new connection per')) notes.push(`${median(cpr).toFixed(3)} conns/req`);
      if (scenario.includes('guests at once')) {
        const mm = l.reduce((a, s) => a + Number(s.detail['mismatches'] ?? 0), 0);
        notes.push(mm === 0 ? 'isolation: every body its sender’s' : `ISOLATION: ${mm} wrong bodies`);
      }
      if (scenario.startsWith('IMDSv2')) notes.push('pairs/s = req/s ÷ 2');
      if (scenario.startsWith('boot storm')) {
        const st = storms[storms.length >> 1];
        if (st) notes.push(`${st.per_guest_requests} req/guest, total ${st.total_s.toFixed(2)} s`);
      }
      if (scenario.includes('half load')) notes.push(`open loop at ${halfRate} req/s, incl. handshake`);
      const upNote = upNotes.get(scenario);
      if (upNote !== undefined) notes.push(upNote);
      rows.push({
        scenario,
        peer,
        rps: median(l.map((s) => s.rps)),
        p50_us: median(l.map((s) => s.p50_us)),
        p99_us: median(l.map((s) => s.p99_us)),
        errors: l.reduce((a, s) => a + s.errors, 0),
        rounds: l.length,
        note: notes.join('; '),
      });
    }
  }
  const get = (scenario: string, peer: PeerName): Row | undefined => rows.find((r) => r.scenario === scenario && r.peer === peer);
  const nc = (p: PeerName): number => get('new connection per request', p)?.rps ?? NaN;
  const ka = (p: PeerName): number => get('keep-alive', p)?.rps ?? NaN;
  const stormRps = median(storms.map((s) => s.rps));
  const stormFair = median(storms.map((s) => s.slowest_over_median));
  const stormErr = storms.reduce((a, s) => a + s.errors + s.mismatches, 0);
  const half = get('new connection, half load', 'linkgate');
  const targets: Target[] = [
    {
      what: 'new connection per request vs haproxy→nginx',
      goal: '≥ 1.0×',
      measured: `${fmtRatio(nc('linkgate') / nc('haproxy'))} (${Math.round(nc('linkgate'))} vs ${Math.round(nc('haproxy'))} req/s)`,
      met: nc('linkgate') / nc('haproxy') >= 1.0,
    },
    {
      what: 'new connection per request vs nginx (stretch)',
      goal: '≥ 0.8×',
      measured: `${fmtRatio(nc('linkgate') / nc('nginx'))} (${Math.round(nc('linkgate'))} vs ${Math.round(nc('nginx'))} req/s)`,
      met: nc('linkgate') / nc('nginx') >= 0.8,
    },
    {
      what: 'keep-alive vs nginx',
      goal: '≥ 0.5×',
      measured: `${fmtRatio(ka('linkgate') / ka('nginx'))} (${Math.round(ka('linkgate'))} vs ${Math.round(ka('nginx'))} req/s)`,
      met: ka('linkgate') / ka('nginx') >= 0.5,
    },
    {
      what: `boot storm (${o.storm} guests): every guest finishes without an error`,
      goal: '0 errors',
      measured: `${stormErr} errors/wrong bodies`,
      met: storms.length ? stormErr === 0 : undefined,
    },
    {
      what: 'boot storm throughput vs saturated new-connection rate',
      goal: '≥ 0.9×',
      measured: `${fmtRatio(stormRps / nc('linkgate'))} (${Math.round(stormRps)} vs ${Math.round(nc('linkgate'))} req/s)`,
      met: storms.length ? stormRps / nc('linkgate') >= 0.9 : undefined,
    },
    {
      what: 'boot storm fairness: slowest guest vs median guest',
      goal: '≤ 3×',
      measured: fmtRatio(stormFair),
      met: storms.length ? stormFair <= 3 : undefined,
    },
    {
      what: 'p99 at half the saturating new-connection load',
      goal: '< 1 ms',
      measured: half ? `${fmtUs(half.p99_us)} at ${halfRate} req/s (p50 ${fmtUs(half.p50_us)})` : '–',
      met: half ? half.p99_us < 1000 : undefined,
    },
    {
      what: `${o.registry.toLocaleString('en-US')} registered instances: RSS`,
      goal: '< 200 MB',
      measured: [
        registry ? `registry in-process +${registry.rss_delta_mb} MB` : '',
        scale ? `daemon ${scale.rss_mb.toFixed(0)} MB RSS (peak ${scale.hwm_mb.toFixed(0)} MB)` : '',
      ]
        .filter((x) => x !== '')
        .join('; '),
      met: scale ? scale.rss_mb < 200 : registry ? registry.rss_delta_mb < 200 : undefined,
    },
    {
      what: `upstream backend: ≤ 1 backend fetch per instance per cache TTL (${o.storm}-guest storm)`,
      goal: '≤ 1',
      measured: upRounds.length
        ? `max ${upMax((u) => u.backend.max_per_ttl)} per (instance, path) in any ${UPSTREAM_TTL_S} s window, over all ` +
          `${upSum((u) => u.backend.calls)} backend calls; cold storm ${upMax((u) => u.cold.fetches_per_instance_max)} ` +
          `fetches/instance for ${upMed((u) => u.cold.per_guest_requests)} paths, warm storm ${upSum((u) => u.warm.backend_calls)}` +
          (upSum((u) => u.cold.errors + u.warm.errors) > 0
            ? ` (guest errors: cold ${upSum((u) => u.cold.errors)}, warm ${upSum((u) => u.warm.errors)}; a refused path is not cached: the next storm fetches it)`
            : '')
        : 'not measured (see skipped)',
      met: upRounds.length ? upMax((u) => u.backend.max_per_ttl) <= 1 : undefined,
    },
  ];

  if (storms.length) {
    extras.push({
      title: `Boot storm: ${o.storm} guests, each a full EC2 crawl, new connection per request`,
      lines: [
        '| round | guests | requests | total | req/s | finish median | slowest | slowest/median | p50 | p99 | errors |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
        ...storms.map(
          (s, i) =>
            `| ${i + 1} | ${s.guests} | ${s.requests} | ${s.total_s.toFixed(2)} s | ${Math.round(s.rps)} | ${s.finish_median_s.toFixed(2)} s | ` +
            `${s.finish_max_s.toFixed(2)} s | ${s.slowest_over_median.toFixed(2)}× | ${fmtUs(s.p50_us)} | ${fmtUs(s.p99_us)} | ${s.errors + s.mismatches} |`,
        ),
      ],
    });
  }
  if (upRounds.length) {
    const storm = median(storms.map((st) => st.rps));
    extras.push({
      title: `Upstream backend: linkgate → nova test backend, cache_ttl_s ${UPSTREAM_TTL_S}`,
      lines: [
        `Every instance \`backend: upstream\` (\`default_backend: upstream\`); the backend is test/helpers/nova-server.mjs on ` +
          `127.0.0.1:${NOVA_PORT} in the hv namespace (checks the HMAC signature, answers an EC2 tree, counts every call and ` +
          `its arrival time). Each round: a fresh daemon (empty cache) and fresh counts; the backend answers at once, except ` +
          `${COALESCE_DELAY_MS} ms during the same-path burst. wrk rows: guest 1, -c${WRK_CONNS}, new connection per request; ` +
          `storms: lgload crawl as in the boot storm (the cold one right after start, the warm one right after it).`,
        '',
        '| round | embedded req/s | hit req/s | hit ÷ embedded | miss req/s | backend calls/miss | burst: calls/instance | burst: miss/coalesced/hit | ' +
          'cold storm | warm storm | cold ÷ embedded storm | backend calls | keys | max per key per TTL |',
        '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
        ...upRounds.map(
          (u) =>
            `| ${u.round} | ${Math.round(u.baseline.rps)} | ${Math.round(u.hit.wrk.rps)} | ${fmtRatio(u.hit.wrk.rps / u.baseline.rps)} | ` +
            `${Math.round(u.miss.wrk.rps)} | ${(u.miss.backend_calls / u.miss.wrk.requests).toFixed(2)} | ` +
            `${u.burst.calls_per_instance_min}–${u.burst.calls_per_instance_max} | ${u.burst.daemon.miss}/${u.burst.daemon.coalesced}/${u.burst.daemon.hit} | ` +
            `${u.cold.total_s.toFixed(2)} s, ${Math.round(u.cold.rps)} req/s, ${u.cold.errors + u.cold.mismatches} err | ` +
            `${u.warm.total_s.toFixed(2)} s, ${Math.round(u.warm.rps)} req/s, ${u.warm.errors + u.warm.mismatches} err | ` +
            `${fmtRatio(u.cold.rps / storm)} | ${u.backend.calls} | ${u.backend.keys} | ${u.backend.max_per_ttl} |`,
        ),
      ],
    });
  }
  if (registry) {
    const r = registry;
    extras.push({
      title: `Registry scale: ${r.instances.toLocaleString('en-US')} instances`,
      lines: [
        `- in-process (src/identity Registry, instances validated by src/config): RSS +${r.rss_delta_mb} MB ` +
          `(${r.rss_before_mb} → ${r.rss_after_mb} MB), heap +${r.heap_delta_mb} MB; validate ${r.validate_ms} ms, build ${r.build_ms} ms`,
        `- lookups (random order, ${r.lookups.toLocaleString('en-US')} each): byMark ${r.by_mark_ns} ns, byTriple ${r.by_triple_ns} ns`,
        ...(scale
          ? [
              `- the daemon with ${scale.instances.toLocaleString('en-US')} instances: ready in ${scale.ready_s.toFixed(1)} s, ` +
                `RSS ${scale.rss_mb.toFixed(0)} MB (peak ${scale.hwm_mb.toFixed(0)} MB), new connection per request ` +
                `${Math.round(scale.newconn_rps)} req/s (vs ${Math.round(nc('linkgate'))} with ${o.storm}), guest 1 served: ${scale.served}`,
            ]
          : []),
      ],
    });
  }
  const rssLine = PEERS.map((p) => `${p} ${Math.round(median(rss.get(p) ?? []) / 1024)} MB`).join(', ');
  extras.push({ title: 'Server RSS after its rounds', lines: [`${rssLine} (haproxy→nginx counts both processes)`] });

  const report = { machine, mode: o.quick ? 'quick' : 'full', settings, rows, targets, extras, skipped };
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'latest.md'), markdown(report));
  writeFileSync(
    join(o.out, 'latest.json'),
    `${JSON.stringify(
      {
        ...report,
        options: o,
        half_load_rate: halfRate,
        storms,
        registry,
        daemon_scale: scale,
        upstream: upRounds.length
          ? { cache_ttl_s: UPSTREAM_TTL_S, burst_backend_delay_ms: COALESCE_DELAY_MS, burst_conns: COALESCE_CONNS, rounds: upRounds }
          : undefined,
        rss_kb: Object.fromEntries(rss),
        samples: Object.fromEntries([...samples].map(([k, v]) => [k, Object.fromEntries(v)])),
        elapsed_s: (Date.now() - started) / 1000,
      },
      null,
      2,
    )}\n`,
  );
  writeFileSync(
    join(o.out, 'latest.svg'),
    svgChart(rows, `linkgate vs peers: ${machine.nproc} CPUs, ${report.mode} run, ${machine.date.slice(0, 10)}`),
  );
  say('');
  say(scenarioTable(rows));
  say('');
  say(targetTable(targets));
  for (const s of skipped) say(`skipped: ${s}`);
  say(`\nresults: ${join(o.out, 'latest.md')} (+ .json, .svg); ${((Date.now() - started) / 1000).toFixed(0)} s`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  },
);
