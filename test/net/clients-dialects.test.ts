// GCE, OpenStack and Azure through the whole daemon, from inside guest namespaces (curl): the
// long poll (wait_for_change on a reload, timeouts, the per-instance bound), the Azure rate limit,
// the OpenStack password, identity JWTs checked against the admin API's keys, headers and bad input.
import t from 'tap';
import { createPublicKey, verify, type JsonWebKey } from 'node:crypto';
import { instanceNumericId } from '../../src/dialects/gce/index.js';
import type { LabInstance } from '../../src/lab/lab.js';
import type { Instance } from '../../src/model/instance.js';
import { adminGet, withServedLab } from '../helpers/net.js';

const GCE = '/computeMetadata/v1';
const FLAVOR = { 'Metadata-Flavor': 'Google' };
const AZ = { Metadata: 'true' };

t.test('long poll, rate limit, password, identity, headers and bad input', async (t) => {
  const { lab, config, configPath, daemon } = await withServedLab(t, {
    guests: 3,
    edit: (c) => {
      c['limits'] = { held_per_instance: 2, rate_per_s: { azure: 5 } };
    },
  });
  const inst = (i: number): LabInstance => config.instances[i - 1] as LabInstance;

  await t.test('wait_for_change returns when that instance changes (SIGHUP reload), not for others', async (t) => {
    const first = await lab.curl(1, `${GCE}/instance/hostname`, { headers: FLAVOR, responseHeaders: true });
    t.equal(first.body, 'guest-1');
    const etag = first.headers?.['etag'] ?? '';
    t.match(etag, /^[0-9a-f]{16}$/);
    t.equal(first.headers?.['metadata-flavor'], 'Google');

    const started = Date.now();
    const mine = lab.curl(1, `${GCE}/instance/hostname?wait_for_change=true&last_etag=${etag}&timeout_sec=30`, {
      headers: FLAVOR,
      timeoutS: 40,
      responseHeaders: true,
    });
    const other = lab.curl(2, `${GCE}/instance/hostname?wait_for_change=true&timeout_sec=3`, { headers: FLAVOR, timeoutS: 20 });
    const stale = await lab.curl(1, `${GCE}/instance/hostname?wait_for_change=true&last_etag=0123456789abcdef`, { headers: FLAVOR });
    t.equal(stale.body, 'guest-1', 'a stale etag answers at once');

    await new Promise((r) => setTimeout(r, 700));
    inst(1).hostname = 'renamed-1';
    await lab.writeConfig(config);
    const since = daemon.lines().length;
    process.kill(daemon.pid, 'SIGHUP');
    await daemon.waitFor((l) => l['msg'] === 'configuration reloaded (instances; listen/admin changes need a restart)', 5000, since);

    const got = await mine;
    const took = Date.now() - started;
    t.equal(got.status, 200);
    t.equal(got.body, 'renamed-1', 'the new value');
    t.not(got.headers?.['etag'], etag, 'with a new etag');
    t.ok(took < 10_000, `returned on the change (${took} ms), not at the timeout`);
    const o = await other;
    t.equal(o.body, 'guest-2', 'the other guest timed out with its own value');
    t.ok(Date.now() - started >= 2500, 'after its timeout');
  });

  await t.test('held requests: at most limits.held_per_instance per instance; a long wait outlives the request timeout', async (t) => {
    const started = Date.now();
    const a = lab.curl(3, `${GCE}/instance/id?wait_for_change=true&timeout_sec=12`, { headers: FLAVOR, timeoutS: 30 });
    const b = lab.curl(3, `${GCE}/instance/id?wait_for_change=true&timeout_sec=12`, { headers: FLAVOR, timeoutS: 30 });
    await new Promise((r) => setTimeout(r, 800));
    const third = await lab.curl(3, `${GCE}/instance/id?wait_for_change=true&timeout_sec=12`, { headers: FLAVOR, responseHeaders: true });
    t.equal(third.status, 503, 'a third held request for the instance is refused');
    t.equal(third.headers?.['metadata-flavor'], 'Google', 'in GCE style');
    const elsewhere = await lab.curl(2, `${GCE}/instance/id?wait_for_change=true&timeout_sec=1`, { headers: FLAVOR });
    t.equal(elsewhere.status, 200, 'another instance is not affected');
    const id = instanceNumericId(inst(3) as unknown as Instance);
    const [ra, rb] = await Promise.all([a, b]);
    t.same([ra.status, ra.body, rb.status, rb.body], [200, id, 200, id]);
    t.ok(Date.now() - started >= 11_500, `held for the full 12 s (${Date.now() - started} ms)`);
  });

  await t.test('Azure: 5 requests/s per instance, then 429; other instances unaffected', async (t) => {
    const url = 'http://169.254.169.254/metadata/instance/compute/vmId?api-version=2021-02-01&format=text';
    // One curl, 12 requests on one connection, each body discarded, each status printed.
    const argv = [
      'curl',
      '-q',
      '-s',
      '--noproxy',
      '*',
      '-H',
      'Metadata: true',
      '-w',
      '%{http_code}\\n',
      ...Array.from({ length: 12 }, () => ['-o', '/dev/null', url]).flat(),
    ];
    const codes = (await lab.exec(1, argv)).trim().split('\n');
    const ok = codes.filter((c) => c === '200').length;
    const limited = codes.filter((c) => c === '429').length;
    t.ok(ok >= 5 && ok <= 6, `${ok} answered (${codes.join(' ')})`);
    t.equal(ok + limited, 12, 'the rest got 429');
    t.equal((await lab.curl(2, '/metadata/instance/compute/name?api-version=2021-02-01&format=text', { headers: AZ })).body, 'guest-2');
    const busy = await lab.curl(1, '/metadata/instance?api-version=2021-02-01', { headers: AZ });
    if (busy.status === 429) t.same(JSON.parse(busy.body), { error: 'Too many requests' }, 'in Azure style');
    await new Promise((r) => setTimeout(r, 1100));
    t.equal(
      (await lab.curl(1, '/metadata/instance/compute/name?api-version=2021-02-01&format=text', { headers: AZ })).status,
      200,
      'refilled after a second',
    );
  });

  await t.test('OpenStack password: POST once, 409 after; per instance', async (t) => {
    const url = '/openstack/latest/password';
    t.equal((await lab.curl(1, url)).body, '');
    t.equal((await lab.curl(1, url, { method: 'POST', body: 'ZW5jcnlwdGVk' })).status, 200);
    t.equal((await lab.curl(1, url)).body, 'ZW5jcnlwdGVk');
    t.equal((await lab.curl(1, url, { method: 'POST', body: 'other' })).status, 409);
    t.equal((await lab.curl(2, url)).body, '', 'another guest does not see it');
    t.equal((await lab.curl(2, url, { method: 'POST', body: 'x'.repeat(1021) })).status, 400, 'over 1020 bytes');
  });

  await t.test('GCE identity: a JWT the admin API keys verify, naming this instance', async (t) => {
    const r = await lab.curl(1, `${GCE}/instance/service-accounts/default/identity?audience=https://example.com&format=full`, {
      headers: FLAVOR,
    });
    t.equal(r.status, 200);
    const [h, p, s] = r.body.split('.');
    const header = JSON.parse(Buffer.from(h ?? '', 'base64url').toString()) as { kid: string; alg: string };
    const keys = (await adminGet(config.admin.socket, '/v1/keys')).body as { keys: Array<JsonWebKey & { kid: string }> };
    const jwk = keys.keys.find((k) => k.kid === header.kid);
    t.ok(jwk, 'the kid is published on the admin API');
    t.equal(header.alg, 'RS256');
    t.ok(
      jwk && verify('sha256', Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(s ?? '', 'base64url')),
      'signature verifies',
    );
    const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) as {
      aud: string;
      google: { compute_engine: Record<string, unknown> };
    };
    t.equal(claims.aud, 'https://example.com');
    t.equal(claims.google.compute_engine['instance_id'], instanceNumericId(inst(1) as unknown as Instance));
    t.equal((await lab.curl(1, `${GCE}/instance/service-accounts/default/identity`, { headers: FLAVOR })).status, 400, 'no audience');
    t.equal((await lab.curl(1, `${GCE}/instance/service-accounts/default/token`, { headers: FLAVOR })).status, 404, 'no token configured');
    t.ok(configPath.endsWith('.json'));
  });

  await t.test("headers and bad input, each in its dialect's style", async (t) => {
    t.equal((await lab.curl(1, `${GCE}/instance/id`)).status, 403, 'GCE without Metadata-Flavor');
    t.equal(
      (await lab.curl(1, `${GCE}/instance/id`, { headers: { ...FLAVOR, 'X-Forwarded-For': '10.0.0.9' } })).status,
      403,
      'GCE with X-Forwarded-For',
    );
    const gnf = await lab.curl(1, `${GCE}/instance/nope`, { headers: FLAVOR });
    t.equal(gnf.status, 404);
    t.match(gnf.body, /Error 404 \(Not Found\)/);
    t.equal((await lab.curl(1, `${GCE}/instance/id?recursive=perhaps`, { headers: FLAVOR })).status, 400);
    const az = await lab.curl(1, '/metadata/instance?api-version=2021-02-01');
    t.equal(az.status, 400, 'Azure without Metadata: true');
    t.match(az.body, /Required metadata header not specified/);
    const noVer = await lab.curl(2, '/metadata/instance', { headers: AZ });
    t.equal(noVer.status, 400);
    t.match(noVer.body, /newest-versions/);
    t.equal(
      (await lab.curl(2, '/metadata/instance?api-version=2021-02-01&api-version=2021-02-01', { headers: AZ })).status,
      400,
      'duplicate parameter',
    );
    t.same(JSON.parse((await lab.curl(2, '/metadata/nope?api-version=2021-02-01', { headers: AZ })).body), { error: 'Not found' });
    const onf = await lab.curl(2, '/openstack/latest/nope');
    t.equal(onf.status, 404);
    t.match(onf.body, /404 Not Found/);
    t.equal((await lab.curl(2, '/openstack/latest/meta_data.json?x=1')).status, 400);
    // Nothing a guest sends names another instance.
    const other = inst(1).id;
    const md = JSON.parse(
      (await lab.curl(2, '/openstack/latest/meta_data.json', { headers: { 'X-Instance-ID': other, 'X-Forwarded-For': lab.guest(1).ipv4 } }))
        .body,
    ) as { name: string };
    t.equal(md.name, 'guest-2');
    t.equal(
      (await lab.curl(2, `/metadata/instance/compute/name?api-version=2021-02-01&format=text&client_id=${other}`, { headers: AZ })).status,
      400,
    );
  });
});
