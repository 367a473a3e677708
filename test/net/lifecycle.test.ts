// Daemon lifecycle on the kernel path: SIGTERM drains and removes every piece of kernel state,
// kill -9 + restart converges to exactly one copy, SIGHUP reloads instances.
import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { startDaemon } from '../../src/lab/daemon.js';
import { eventually, hvState, withServedLab, type HvState } from '../helpers/net.js';

const ID = '/latest/meta-data/instance-id';

const ours = (s: HvState) => ({
  tables: s.tables.filter((l) => l.includes('linkgate')),
  routes: s.routes.filter((l) => /proto (0xa9|169)\b/.test(l)),
  rules: s.rules.filter((l) => /proto (0xa9|169)\b/.test(l) || /fwmark 0xa/.test(l)),
  metadataAddr: s.loAddrs.filter((a) => a.startsWith('169.254.169.254/') || a.startsWith('fd00:ec2::254/')),
});

t.test('SIGTERM: in-flight request finishes, then no table, route, rule or address is left', async (t) => {
  const { lab, daemon, config } = await withServedLab(t, {
    guests: 2,
    edit: (c) => {
      c.limits = { shutdown_grace_ms: 3000 };
    },
  });
  const running = ours(await hvState(lab));
  t.same(running.tables, ['table inet linkgate', 'table bridge linkgate'], 'its two tables while serving');
  t.equal(running.routes.length, 2, 'a route per guest while serving');
  t.equal(running.rules.length, 2, 'one policy rule per family while serving');
  t.same(running.metadataAddr, ['169.254.169.254/32', 'fd00:ec2::254/128']);

  // Guest 1 starts a request and sends the rest of it only after SIGTERM was delivered.
  const slow = `
    const net = require('node:net');
    const s = net.connect(80, '169.254.169.254', () => {
      s.write('GET ${ID} HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n');
      setTimeout(() => s.write('\\r\\n'), 1200);
    });
    let buf = '';
    s.on('data', (d) => buf += d);
    s.on('close', () => console.log(JSON.stringify(buf)));
    s.on('error', (e) => console.log(JSON.stringify('error ' + e.code)));`;
  const inflight = lab.exec(1, [process.execPath, '-e', slow], { timeoutMs: 15_000 });
  await new Promise((r) => setTimeout(r, 400));
  const t0 = Date.now();
  const exit = await daemon.stop('SIGTERM');
  const response = JSON.parse(await inflight) as string;
  t.match(response, /^HTTP\/1\.1 200 OK/, 'the in-flight request was answered');
  t.match(response, new RegExp(`${config.instances[0]?.id}$`), 'with its own id');
  t.same(exit, { code: 0, signal: null }, 'exit 0');
  t.ok(Date.now() - t0 < 3000 + 2000, 'within the grace period');
  t.ok(
    daemon.lines().some((l) => l.msg === 'stopped'),
    'logged "stopped"',
  );

  const after = ours(await hvState(lab));
  t.same(after, { tables: [], routes: [], rules: [], metadataAddr: [] }, 'nothing of ours left');
  t.equal((await lab.curl(2, ID, { timeoutS: 1 })).status, 0, 'nothing answers any more');
});

t.test('SIGTERM with a request that never completes: bounded by the grace period', async (t) => {
  const { lab, daemon } = await withServedLab(t, {
    guests: 1,
    edit: (c) => {
      c.limits = { shutdown_grace_ms: 1000, header_timeout_ms: 30000 };
    },
  });
  const stuck = `
    const s = require('node:net').connect(80, '169.254.169.254', () => s.write('GET / HTTP/1.1\\r\\n'));
    s.on('close', () => console.log('closed')); s.on('error', () => console.log('closed'));`;
  const inflight = lab.exec(1, [process.execPath, '-e', stuck], { timeoutMs: 15_000 });
  await new Promise((r) => setTimeout(r, 300));
  const t0 = Date.now();
  const exit = await daemon.stop('SIGTERM');
  const took = Date.now() - t0;
  t.equal(exit.code, 0);
  t.ok(took >= 900 && took < 4000, `stopped after the grace period (${took} ms)`);
  t.equal((await inflight).trim(), 'closed', "the stuck client's connection was closed");
  t.same(ours(await hvState(lab)), { tables: [], routes: [], rules: [], metadataAddr: [] });
});

t.test('kill -9, then restart: serves again with exactly one of everything', async (t) => {
  const { lab, daemon, configPath, config } = await withServedLab(t, { guests: 2 });
  t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id);
  await daemon.kill9();
  const left = ours(await hvState(lab));
  t.equal(left.tables.length, 2, 'a killed daemon leaves its tables behind');
  t.equal(left.routes.length, 2, 'and its routes');

  const again = await startDaemon(lab, configPath);
  t.teardown(() => again.stop());
  t.ok(
    again.lines().some((l) => l.msg === 'removed routes and rules left by an earlier run'),
    'the new run noticed',
  );
  const state = ours(await hvState(lab));
  t.same(state.tables, ['table inet linkgate', 'table bridge linkgate'], 'exactly one of each table');
  t.equal(state.routes.length, 2, 'one route per guest, no duplicates');
  t.equal(state.rules.length, 2, 'one policy rule per family');
  t.same(state.metadataAddr, ['169.254.169.254/32', 'fd00:ec2::254/128']);
  for (const g of lab.guests()) t.equal((await lab.curl(g.index, ID)).body, config.instances[g.index - 1]?.id, `guest ${g.index} served`);
  const map = await lab.hvExec(['nft', 'list', 'map', 'inet', 'linkgate', 'ports4']);
  t.equal(map.match(/ : 0x/g)?.length, 2, 'two map elements');
  await again.stop();
  t.same(ours(await hvState(lab)), { tables: [], routes: [], rules: [], metadataAddr: [] });
});

t.test('SIGHUP reloads instances; an invalid file is refused and the running set kept', async (t) => {
  const { lab, daemon, config, configPath } = await withServedLab(t, { guests: 2 });
  const first = config.instances[0];
  const second = config.instances[1];
  if (!first || !second) throw new Error('lab config without instances');
  t.equal((await lab.curl(2, ID)).body, second.id);

  // Rename guest 1, drop guest 2.
  await writeFile(configPath, JSON.stringify({ ...config, instances: [{ ...first, hostname: 'renamed-1' }] }));
  let since = daemon.lines().length;
  process.kill(daemon.pid, 'SIGHUP');
  await daemon.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('configuration reloaded'), 5000, since);
  t.equal((await lab.curl(1, '/latest/meta-data/hostname')).body, 'renamed-1', 'guest 1 sees its new hostname');
  await eventually(async () => (await lab.curl(2, ID, { timeoutS: 1 })).status === 0, 2000);
  t.pass('guest 2 is refused once removed');

  // A broken file: refused, nothing changes.
  await writeFile(configPath, JSON.stringify({ instances: [{ id: 'x', ports: 'nope' }] }));
  since = daemon.lines().length;
  process.kill(daemon.pid, 'SIGHUP');
  const refused = await daemon.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('reload refused'), 5000, since);
  t.match(String(refused.msg), /instances\[0\]\.hostname/, 'the problem is named by its field path');
  t.equal((await lab.curl(1, '/latest/meta-data/hostname')).body, 'renamed-1', 'guest 1 still served as before');
});
