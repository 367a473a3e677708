/**
 * Registry scale, in-process: N instances (default 100 000) validated as a config file would be
 * and put into a Registry (src/identity); the process's RSS and heap before and after (both after
 * a forced GC), and the cost of byMark / byTriple lookups (random keys, warmed up).
 *
 *   node --expose-gc --import=@tapjs/typescript/import bench/registry.bench.ts [--instances N] [--json]
 *
 * With --json it prints one JSON object (the suite, bench/run.ts, runs it this way in a child
 * process so the RSS figure is this work's alone); otherwise one human line per figure and
 * bench/results/registry.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateConfig } from '../src/config/validate.js';
import { Registry } from '../src/identity/registry.js';
import { fakeInstances } from './lib/instances.js';
import { machineInfo, repoRoot } from './lib/machine.js';

export interface RegistryFigures {
  readonly instances: number;
  readonly validate_ms: number;
  readonly build_ms: number;
  readonly rss_before_mb: number;
  readonly rss_after_mb: number;
  readonly rss_delta_mb: number;
  readonly heap_delta_mb: number;
  readonly by_mark_ns: number;
  readonly by_triple_ns: number;
  readonly lookups: number;
  readonly gc: boolean;
}

const MB = 1024 * 1024;

function gc(): boolean {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) return false;
  g();
  g();
  return true;
}

export function measureRegistry(n: number): RegistryFigures {
  const hadGc = gc();
  const rss0 = process.memoryUsage().rss;
  const heap0 = process.memoryUsage().heapUsed;

  let raw: unknown = { host: 'bench-hv', instances: fakeInstances(n) };
  let t = performance.now();
  const res = validateConfig(raw, { hostname: 'bench-hv' });
  const validateMs = performance.now() - t;
  if (!res.ok) throw new Error(`config of ${n} instances is invalid: ${JSON.stringify(res.problems.slice(0, 3))}`);
  raw = undefined; // the daemon keeps the validated config, not the parsed file
  const instances = res.config.instances;
  t = performance.now();
  const reg = new Registry();
  reg.replaceAll(instances);
  const buildMs = performance.now() - t;
  gc();
  const rss1 = process.memoryUsage().rss;
  const heap1 = process.memoryUsage().heapUsed;

  // Lookup keys: every binding, in a shuffled order.
  const bindings = reg.bindings();
  const marks = bindings.map((b) => b.mark);
  const triples = bindings.map((b) => [b.ifname, b.mac, b.ipv4] as const);
  for (let i = marks.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [marks[i], marks[j]] = [marks[j] as number, marks[i] as number];
    [triples[i], triples[j]] = [triples[j] as (typeof triples)[number], triples[i] as (typeof triples)[number]];
  }
  const lookups = Math.min(2_000_000, Math.max(200_000, n * 10));
  let found = 0;
  const byMark = (count: number): number => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) if (reg.byMark(marks[i % marks.length] as number) !== undefined) found++;
    return Number(process.hrtime.bigint() - t0) / count;
  };
  const byTriple = (count: number): number => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      const k = triples[i % triples.length] as (typeof triples)[number];
      if (reg.byTriple(k[0], k[1], k[2]) !== undefined) found++;
    }
    return Number(process.hrtime.bigint() - t0) / count;
  };
  byMark(lookups / 4); // warm-up (JIT)
  const markNs = byMark(lookups);
  byTriple(lookups / 4);
  const tripleNs = byTriple(lookups);
  if (found < lookups) throw new Error('a registered binding was not found');
  if (reg.size !== n) throw new Error(`registry holds ${reg.size}, want ${n}`);

  const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;
  return {
    instances: n,
    validate_ms: round(validateMs),
    build_ms: round(buildMs),
    rss_before_mb: round(rss0 / MB),
    rss_after_mb: round(rss1 / MB),
    rss_delta_mb: round((rss1 - rss0) / MB),
    heap_delta_mb: round((heap1 - heap0) / MB),
    by_mark_ns: round(markNs),
    by_triple_ns: round(tripleNs),
    lookups,
    gc: hadGc,
  };
}

function main(argv: readonly string[]): void {
  const at = argv.indexOf('--instances');
  const n = at >= 0 ? Number(argv[at + 1]) : 100_000;
  if (!Number.isInteger(n) || n < 1 || n > 1_000_000) throw new Error('--instances wants an integer 1..1000000');
  const f = measureRegistry(n);
  if (argv.includes('--json')) {
    process.stdout.write(`${JSON.stringify(f)}\n`);
    return;
  }
  const say = (s: string): void => void process.stdout.write(`${s}\n`);
  say(`registry: ${n} instances: RSS +${f.rss_delta_mb} MB (${f.rss_before_mb} → ${f.rss_after_mb} MB), heap +${f.heap_delta_mb} MB`);
  say(`registry: validate ${f.validate_ms} ms, build ${f.build_ms} ms`);
  say(`registry: byMark ${f.by_mark_ns} ns, byTriple ${f.by_triple_ns} ns (n=${f.lookups} each)`);
  if (!f.gc) say('registry: (no --expose-gc: RSS figures include garbage)');
  const out = join(repoRoot(), 'bench', 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'registry.json'), `${JSON.stringify({ machine: machineInfo(), figures: f }, null, 2)}\n`);
}

if (process.argv[1] !== undefined && /registry\.bench\.ts$/.test(process.argv[1])) main(process.argv.slice(2));
