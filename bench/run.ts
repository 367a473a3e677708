/**
 * The benchmark suite: `npm run bench` (about 6–8 minutes), `npm run bench -- --quick` (under a
 * minute). Runs as root; builds its own lab (guest namespaces wired to a hypervisor namespace),
 * runs nginx, haproxy→nginx and linkgate there in turn, generates load from inside the guests,
 * and writes bench/results/latest.{md,json,svg}. See bench/README.md.
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
import { startDaemon } from '../src/lab/daemon.js';
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

const fromWrk = (round: number, w: WrkResult): Sample => ({
  round,
  rps: w.rps,
  p50_us: w.p50_us,
  p99_us: w.p99_us,
  errors: w.socket_errors + w.status_errors,
  detail: { ...w },
});

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
async function bootStorm(ctx: Ctx, round: number): Promise<Storm> {
  const n = ctx.o.storm;
  const files = Array.from({ length: n }, (_, k) => join(ctx.dir, `lat-storm-${round}-${k + 1}.bin`));
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
            put(`boot storm, ${o.storm} guests`, {
              round,
              rps: st.rps,
              p50_us: st.p50_us,
              p99_us: st.p99_us,
              errors: st.errors + st.mismatches,
              detail: { ...st },
            });
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

    // TODO(issue 6, upstream backend): once src/backends/upstream/ lands, run linkgate with
    // `default_backend: upstream` against a counting stub backend in the hv namespace (cache hits,
    // misses and coalescing under a storm; backend calls per instance per cache TTL ≤ 1).
    const upstreamDir = join(repoRoot(), 'src', 'backends', 'upstream');
    skipped.push(
      existsSync(upstreamDir)
        ? 'upstream backend (hits, misses, coalescing, backend calls): TODO — src/backends/upstream exists now, the scenario is not written yet'
        : 'upstream backend (hits, misses, coalescing, backend calls): TODO — src/backends/upstream does not exist yet',
    );
  } finally {
    await lab.down();
  }

  // ---- summary -------------------------------------------------------------------------------
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
      what: 'upstream backend: ≤ 1 backend fetch per instance per cache TTL',
      goal: '≤ 1',
      measured: 'not measured (TODO: upstream backend)',
      met: undefined,
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
