// The command line as scripts use it: exit codes and messages (no network needed).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../src/lab/daemon.js';

const bin = join(repoRoot(), 'bin', 'linkgate');
const dir = mkdtempSync(join(tmpdir(), 'lgcli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function linkgate(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const good = file(
  'good.yaml',
  `instances:
  - id: i-0a1b2c3d4e5f60718
    hostname: web-1
    ports:
      - interface: lgtap1
        mac: 52:54:00:0A:00:0B
        ipv4: 10.10.0.11
`,
);

const bad = file(
  'bad.yaml',
  `listen:
  port: 99999
instances:
  - id: i-1
    hostname: web_1!
    ports:
      - interface: lgtap1
        mac: 01:00:5e:00:00:01
        ipv4: 10.10.0.300
    colour: blue
  - id: i-1
    hostname: web-2
    ports: []
`,
);

t.test('check: a valid file', async (t) => {
  const r = linkgate('check', '--config', good);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /ok \(1 instances\)/);
});

t.test('check: every problem, with its field path, exit 2', async (t) => {
  const r = linkgate('check', '--config', bad);
  t.equal(r.code, 2);
  for (const path of [
    'listen.port',
    'instances[0].hostname',
    'instances[0].ports[0].mac',
    'instances[0].ports[0].ipv4',
    'instances[0].colour',
    'instances[1].id',
    'instances[1].ports',
  ]) {
    t.match(r.stderr, new RegExp(`^${path.replace(/[[\].]/g, '\\$&')}: `, 'm'), `names ${path}`);
  }
});

t.test('serve: a bad config never starts, exit 2 with the problems', async (t) => {
  const r = linkgate('serve', '--config', bad);
  t.equal(r.code, 2);
  t.match(r.stderr, /instances\[0\]\.ports\[0\]\.mac/);
  t.notMatch(r.stdout, /"msg":"ready"/);
  const missing = linkgate('serve', '--config', join(dir, 'nope.yaml'));
  t.equal(missing.code, 2);
  t.match(missing.stderr, /nope\.yaml/);
});

t.test('usage', async (t) => {
  const help = linkgate('--help');
  t.equal(help.code, 0);
  for (const cmd of ['serve', 'check', 'lab up', 'lab down', 'demo']) t.match(help.stdout, cmd);
  for (const cmd of ['serve', 'check', 'lab', 'demo']) {
    const r = linkgate(cmd, '--help');
    t.equal(r.code, 0, `${cmd} --help`);
    t.match(r.stdout, /^usage: linkgate/);
  }
  t.equal(linkgate('frobnicate').code, 2);
  t.equal(linkgate('check').code, 2, 'check without --config');
  t.equal(linkgate('lab', 'sideways').code, 2);
  t.equal(linkgate('demo', '--guests', '0').code, 2);
});
