// The upstream backend seen from guests, against a nova-compatible server in the lab's hypervisor
// namespace: signed identity headers, spoofed guest headers stripped, coalescing, TTL, stale-if-
// error, fast failure, oversized answers, and never another instance's cached answer.
import t from 'tap';
import { adminGet, withLab } from '../helpers/net.js';
import { startNova } from '../helpers/nova.js';
import { startDaemon } from '../../src/lab/daemon.js';

t.setTimeout(120_000);

const SECRET = 'n0va-s3cret';
const PORT = 8775;

interface Echo {
  uuid: string;
  url: string;
  n: number;
  headers: Record<string, string>;
}

t.test('upstream backend', async (t) => {
  const lab = await withLab(t, { guests: 3 });
  const config = lab.config({
    backends: {
      upstream: { url: `http://127.0.0.1:${PORT}`, shared_secret: SECRET, cache_ttl_s: 2, timeout_ms: 800, stale_if_error_s: 60 },
    },
  });
  const [g1, g2] = config.instances;
  if (!g1 || !g2) throw new Error('lab');
  g1.backend = 'upstream';
  g2.backend = 'upstream'; // guest 3 stays embedded
  const nova = await startNova(t, lab, {
    port: PORT,
    secret: SECRET,
    instances: Object.fromEntries(config.instances.map((i) => [i.id, { project: 'proj-lab' }])),
  });
  const daemon = await startDaemon(lab, await lab.writeConfig(config));
  void daemon;
  const get = async (i: number, path: string, headers: Record<string, string> = {}) => lab.curl(i, path, { headers, timeoutS: 5 });

  await t.test('signed identity headers; the guest cannot set them', async (t) => {
    const r = await get(1, '/openstack/latest/meta_data.json', {
      'X-Instance-ID': g2.id,
      'X-Instance-ID-Signature': 'forged',
      'X-Tenant-ID': 'other-project',
      'X-Forwarded-For': '10.0.0.99',
      'X-Instance-ID-Extra': 'x',
    });
    t.equal(r.status, 200, 'nova accepted the signature (compare_digest)');
    const echo = JSON.parse(r.body) as Echo;
    t.equal(echo.uuid, g1.id, "guest 1's identity, not the one it claimed");
    t.equal(echo.headers['x-instance-id'], g1.id);
    t.equal(echo.headers['x-tenant-id'], 'proj-lab');
    t.equal(echo.headers['x-forwarded-for'], lab.guest(1).ipv4, 'X-Forwarded-For is the guest IP, alone');
    t.notOk('x-instance-id-extra' in echo.headers, 'other X-Instance-ID* headers stripped');
    t.equal((await get(3, '/latest/meta-data/instance-id')).body, config.instances[2]?.id, 'embedded instance still rendered locally');
    // The helper checks signatures for real: a wrong one gets 403 (asked from the hv namespace).
    const forged = await lab.hvExec([
      'curl',
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '-H',
      `X-Instance-ID: ${g1.id}`,
      '-H',
      'X-Tenant-ID: proj-lab',
      '-H',
      `X-Instance-ID-Signature: ${'0'.repeat(64)}`,
      `${nova.url}/x`,
    ]);
    t.equal(forged, '403', 'nova helper: bad signature 403');
  });

  await t.test('100 concurrent identical requests: one backend call; no cross-instance answer', async (t) => {
    await nova.setDelay(400);
    const path = '/openstack/latest/meta_data.json?coalesce=1';
    const burst = (n: number) => `
      const http = require('node:http');
      const all = Array.from({ length: ${n} }, () => new Promise((resolve) => {
        http.get({ host: '169.254.169.254', path: ${JSON.stringify(path)}, agent: false }, (res) => {
          let b = ''; res.on('data', (d) => b += d); res.on('end', () => resolve(res.statusCode + ' ' + b));
        }).on('error', (e) => resolve('error ' + e.message));
      }));
      Promise.all(all).then((r) => console.log(JSON.stringify(r)));`;
    const [out1, out2] = await Promise.all([
      lab.exec(1, [process.execPath, '-e', burst(100)], { timeoutMs: 20_000 }),
      lab.exec(2, [process.execPath, '-e', burst(20)], { timeoutMs: 20_000 }),
    ]);
    await nova.setDelay(0);
    const r1 = JSON.parse(out1) as string[];
    const r2 = JSON.parse(out2) as string[];
    t.ok(
      r1.every((l) => l.startsWith('200 ') && (JSON.parse(l.slice(4)) as Echo).uuid === g1.id),
      'guest 1: 100 × 200, all its own',
    );
    t.ok(
      r2.every((l) => l.startsWith('200 ') && (JSON.parse(l.slice(4)) as Echo).uuid === g2.id),
      'guest 2: 20 × 200, all its own',
    );
    t.equal(await nova.callsFor(g1.id, path), 1, '100 requests of guest 1 → 1 backend call');
    t.equal(await nova.callsFor(g2.id, path), 1, "guest 2 has its own (one) call: never guest 1's cached answer");
  });

  await t.test('TTL: cached, then fetched again after cache_ttl_s', async (t) => {
    const path = '/openstack/latest/meta_data.json?ttl=1';
    const a = await get(1, path);
    const b = await get(1, path);
    t.equal(a.body, b.body, 'second answer from the cache');
    t.equal(await nova.callsFor(g1.id, path), 1);
    await new Promise((r) => setTimeout(r, 2200));
    const c = await get(1, path);
    t.not(c.body, a.body, 'fresh answer after the TTL');
    t.equal(await nova.callsFor(g1.id, path), 2);
    await get(1, '/missing');
    await get(1, '/missing');
    t.equal(await nova.callsFor(g1.id, '/missing'), 1, '404 cached too');
  });

  await t.test('oversized backend answer: 502, not cached', async (t) => {
    t.equal((await get(1, '/big')).status, 502);
    t.equal((await get(1, '/big')).status, 502);
    t.equal(await nova.callsFor(g1.id, '/big'), 2, 'asked again: not cached');
  });

  await t.test('slow backend: 504 within the timeout', async (t) => {
    await nova.setDelay(3000);
    const t0 = Date.now();
    const r = await get(2, '/openstack/latest/meta_data.json?slow=1');
    t.equal(r.status, 504);
    t.ok(Date.now() - t0 < 1500, `answered in ${Date.now() - t0} ms`);
    await nova.setDelay(0);
  });

  await t.test('backend down: stale-if-error, fast 503/504 otherwise, circuit breaker', async (t) => {
    const path = '/openstack/latest/meta_data.json?stale=1';
    const fresh = await get(1, path);
    t.equal(fresh.status, 200);
    await nova.stop();
    await new Promise((r) => setTimeout(r, 2200)); // past the TTL
    const stale = await get(1, path);
    t.equal(stale.status, 200, 'expired answer served while the backend is down');
    t.equal(stale.body, fresh.body);
    for (let k = 0; k < 8; k++) {
      const t0 = Date.now();
      const r = await get(1, `/openstack/latest/meta_data.json?down=${k}`);
      const ms = Date.now() - t0;
      t.ok((r.status === 503 || r.status === 504) && ms < 1500, `nothing stale: ${r.status} in ${ms} ms`);
    }
    const stats = (await adminGet(config.admin.socket, '/v1/stats')).body as { upstream: { breakerOpened: number; refused: number } };
    t.ok(stats.upstream.breakerOpened >= 1, 'the circuit opened');
    t.ok(stats.upstream.refused >= 1, 'and refused without trying');
    await nova.restart();
    await new Promise((r) => setTimeout(r, 2200)); // the breaker's open time
    t.equal((await get(2, '/openstack/latest/meta_data.json?back=1')).status, 200, 'backend back: served again');
  });
});
