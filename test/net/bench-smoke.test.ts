// The benchmark suite runs end to end (`npm run bench -- --quick`, smallest settings) and writes
// its table, JSON and chart. No timing is asserted: only that every scenario produced its row.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../src/lab/daemon.js';
import { isRoot } from '../helpers/net.js';

t.setTimeout(240_000);

t.test('bench --quick produces the results table', { skip: isRoot ? false : 'needs root (network namespaces)' }, async (t) => {
  const root = repoRoot();
  // The peers (nginx, haproxy) and wrk come from the bench-only install step.
  const deps = spawnSync('bash', [join(root, 'scripts', 'bench-deps.sh')], { encoding: 'utf8', timeout: 600_000 });
  t.equal(deps.status, 0, `scripts/bench-deps.sh: ${deps.stderr}`);

  const out = mkdtempSync(join(tmpdir(), 'lg-bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const env = { ...process.env };
  delete env['NODE_OPTIONS']; // the test runner's loader must not follow into the bench
  const r = spawnSync(
    process.execPath,
    [
      '--import=@tapjs/typescript/import',
      join(root, 'bench', 'run.ts'),
      '--quick',
      '--rounds',
      '1',
      '--duration',
      '1',
      '--guests',
      '2',
      '--storm',
      '3',
      '--registry',
      '1000',
      '--out',
      out,
    ],
    { cwd: root, env, encoding: 'utf8', timeout: 200_000 },
  );
  t.equal(r.status, 0, `bench exit status\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  t.match(r.stdout, /\| scenario +\| peer/, 'the table is printed');

  for (const f of ['latest.md', 'latest.json', 'latest.svg']) t.ok(existsSync(join(out, f)), `${f} written`);
  const md = existsSync(join(out, 'latest.md')) ? readFileSync(join(out, 'latest.md'), 'utf8') : '';
  const rows = md.split('\n').filter((l) => l.startsWith('| '));
  const has = (scenario: string, peer: string): boolean =>
    rows.some((l) => {
      const cells = l.split('|').map((c) => c.trim());
      return cells[1] === scenario && cells[2] === peer;
    });
  for (const scenario of ['keep-alive', 'new connection per request', '2 guests at once', 'new connection, half load']) {
    for (const peer of ['nginx', 'haproxy→nginx', 'linkgate']) t.ok(has(scenario, peer), `row: ${scenario} · ${peer}`);
  }
  t.ok(has('IMDSv2 token PUT + GET', 'linkgate'), 'row: IMDSv2');
  t.ok(has('boot storm, 3 guests', 'linkgate'), 'row: boot storm');
  t.match(md, /## Targets/);
  t.match(md, /Registry scale: 1,000 instances/);
  for (const scenario of [
    'upstream: embedded-store baseline, new conn',
    'upstream: cache hit, new conn',
    'upstream: cache miss, new conn',
    'upstream: 2 guests × 16 same path, cold',
    'upstream: cold storm, 3 guests',
    'upstream: warm storm, 3 guests',
  ]) {
    t.ok(has(scenario, 'linkgate'), `row: ${scenario}`);
  }
  t.match(md, /\| upstream backend: ≤ 1 backend fetch per instance per cache TTL .*\| (yes|NO) +\|/, 'upstream target measured');
  t.match(md, /Machine: \d+ CPUs/);

  const json = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { rows?: unknown[]; machine?: { commit?: unknown } };
  t.ok(Array.isArray(json.rows) && json.rows.length >= 14, 'JSON rows');
  t.type(json.machine?.commit, 'string');
  t.match(readFileSync(join(out, 'latest.svg'), 'utf8'), /^<svg /);
  // Isolation in the "at once" scenario holds for every peer (each answers by the sender's address).
  t.notMatch(md, /ISOLATION:/, 'no guest got another guest’s id');
});
