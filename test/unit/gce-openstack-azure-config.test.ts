// Config fields for the GCE, OpenStack and Azure dialects (per-instance `gce`, `openstack`,
// `azure`; limits.held_per_instance and limits.rate_per_s) and the daemon's signing key.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, verify } from 'node:crypto';
import { formatProblems } from '../../src/config/load.js';
import { KEY_FILE, loadOrCreateKey, thumbprint } from '../../src/daemon/keys.js';
import { signJwt } from '../../src/dialects/gce/index.js';
import { okConfig as ok, problemsOf as problems, rawInstance as inst } from '../helpers/fixtures.js';

type Obj = Record<string, unknown>;

t.test('per-dialect sections are optional and kept as given', async (t) => {
  const plain = ok({ instances: [inst()] }).instances[0]!;
  t.notOk('gce' in plain || 'openstack' in plain || 'azure' in plain, 'absent stays absent');
  const full = ok({
    instances: [
      inst({
        gce: {
          instance_id: '18446744073709551615',
          project_number: '123456789012',
          service_account: 'sa@p.iam.gserviceaccount.com',
          scopes: ['https://www.googleapis.com/auth/cloud-platform'],
          token: { access_token: 'ya29.x', expiration: '2030-01-01T00:00:00Z' },
          attributes: { 'startup-script': 'echo', enable_oslogin: 'TRUE' },
          project_attributes: { 'ssh-keys': 'a:b' },
          ssh_user: 'alice',
        },
        openstack: {
          uuid: '0F9E8D7C-6B5A-4938-8271-605F4E3D2C1B',
          meta: { role: 'db' },
          vendor_data: { cloud_init: { x: [1, 2] } },
          vendor_data2: {},
        },
        azure: {
          vm_id: '11111111-2222-4333-8444-555555555555',
          subscription_id: '66666666-7777-4888-9999-000000000000',
          resource_group: 'rg-1',
          admin_username: 'ops',
          client_id: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee',
          token: { access_token: 'ey', expiration: '2030-01-01T00:00:00Z' },
        },
      }),
    ],
  }).instances[0]!;
  t.equal(full.gce?.instance_id, '18446744073709551615');
  t.equal(full.gce?.token?.expiration, '2030-01-01T00:00:00Z');
  t.equal(full.openstack?.uuid, '0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b', 'UUIDs lower-cased');
  t.same(full.openstack?.vendor_data, { cloud_init: { x: [1, 2] } });
  t.equal(full.azure?.resource_group, 'rg-1');
  t.same(ok({ instances: [], limits: { held_per_instance: 2, rate_per_s: { azure: 0, gce: 50 } } }).limits.rate_per_s, {
    ec2: 0,
    gce: 50,
    openstack: 0,
    azure: 0,
  });
});

t.test('bad values are reported with their paths', async (t) => {
  const cases: Array<[Obj, string, RegExp]> = [
    [{ gce: { instance_id: '18446744073709551616' } }, 'instances[0].gce.instance_id', /does not fit 64 bits/],
    [{ gce: { instance_id: '0123' } }, 'instances[0].gce.instance_id', /decimal number/],
    [{ gce: { instance_id: 42 } }, 'instances[0].gce.instance_id', /quote it/],
    [{ gce: { service_account: 'nope' } }, 'instances[0].gce.service_account', /email/],
    [{ gce: { token: { access_token: 'x' } } }, 'instances[0].gce.token.expiration', /required/],
    [{ gce: { attributes: { 'a/b': 'x' } } }, 'instances[0].gce.attributes["a/b"]', /key must be/],
    [{ gce: { ssh_user: 'Root' } }, 'instances[0].gce.ssh_user', /user name/],
    [{ gce: { bogus: 1 } }, 'instances[0].gce.bogus', /unknown field/],
    [{ openstack: { uuid: 'not-a-uuid' } }, 'instances[0].openstack.uuid', /UUID/],
    [{ openstack: { vendor_data: [] } }, 'instances[0].openstack.vendor_data', /an object/],
    [{ openstack: { vendor_data: { big: 'x'.repeat(70_000) } } }, 'instances[0].openstack.vendor_data', /64 KiB/],
    [{ azure: { vm_id: '1234' } }, 'instances[0].azure.vm_id', /UUID/],
    [{ azure: { resource_group: 'a/b' } }, 'instances[0].azure.resource_group', /resource group/],
    [{ azure: { token: { access_token: '', expiration: '2030-01-01T00:00:00Z' } } }, 'instances[0].azure.token.access_token', /empty/],
  ];
  for (const [over, path, re] of cases) {
    const ps = problems({ instances: [inst(over)] });
    t.equal(ps.length, 1, `${path}: one problem (${formatProblems(ps)})`);
    t.equal(ps[0]?.path, path);
    t.match(ps[0]?.message, re);
  }
  t.equal(problems({ instances: [], limits: { held_per_instance: 0 } })[0]?.path, 'limits.held_per_instance');
  t.equal(problems({ instances: [], limits: { rate_per_s: { azure: -1 } } })[0]?.path, 'limits.rate_per_s.azure');
  t.equal(problems({ instances: [], limits: { rate_per_s: { aws: 1 } } })[0]?.path, 'limits.rate_per_s.aws');
});

t.test('signing key: generated once in the state dir (0600), loaded after; JWTs verify with its JWK', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'linkgate-key-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = join(dir, 'state');
  const a = await loadOrCreateKey(state);
  t.equal(statSync(join(state, KEY_FILE)).mode & 0o777, 0o600);
  t.equal(statSync(state).mode & 0o777, 0o700);
  const b = await loadOrCreateKey(state);
  t.equal(b.kid, a.kid, 'the same key after a restart');
  t.equal(a.kid, thumbprint(a.jwk));
  t.match(a.jwk, { kty: 'RSA', alg: 'RS256', use: 'sig', kid: a.kid, e: 'AQAB' });
  t.match(readFileSync(join(state, KEY_FILE), 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
  const jwt = signJwt(a, { aud: 'x' });
  const [h, p, s] = jwt.split('.');
  const pub = createPublicKey({ key: a.jwk, format: 'jwk' });
  t.ok(verify('sha256', Buffer.from(`${h}.${p}`), pub, Buffer.from(s!, 'base64url')));
  writeFileSync(join(dir, 'file'), '');
  await t.rejects(loadOrCreateKey(join(dir, 'file', 'state')), 'an unusable state dir is an error (the daemon logs it)');
  writeFileSync(join(dir, KEY_FILE), 'not a key');
  await t.rejects(loadOrCreateKey(dir), 'a broken key file is an error, never silently replaced');
});
