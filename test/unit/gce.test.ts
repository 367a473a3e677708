// GCE dialect: headers, paths, renderings (text, alt=json, recursive), ETags, wait_for_change,
// token and identity JWTs, derived ids, bad input.
import t from 'tap';
import { generateKeyPairSync, verify } from 'node:crypto';
import {
  camel,
  gce,
  identityClaims,
  instanceName,
  instanceNumericId,
  isGcePath,
  projectNumber,
  resolve,
  serviceAccountEmail,
  serviceAccountUniqueId,
  toJson,
  treeFor,
  ISSUER,
} from '../../src/dialects/gce/index.js';
import { gceRefusal, MAX_TIMEOUT_S } from '../../src/dialects/gce/index.js';
import { flatText } from '../../src/dialects/gce/tree.js';
import type { DialectContext, DialectResponse, SigningKey } from '../../src/dialects/types.js';
import type { Instance } from '../../src/model/instance.js';
import { bareInstance, dialectContext, dialectRequest, NOW, PORTS, sampleInstance, SINCE } from '../helpers/fixtures.js';

const inst = sampleInstance({
  hostname: 'web-1.example.internal',
  ports: [PORTS[0], { ...PORTS[1], network: 'tenant-b' }],
  tags: { team: 'web', env: 'prod' },
  gce: {
    token: { access_token: 'ya29.example', expiration: '2024-05-06T08:08:09Z' },
    attributes: { 'startup-script': 'echo hi', 'user-data': '#cloud-config\nfrom: attributes\n' },
    project_attributes: { 'enable-oslogin': 'FALSE' },
  },
});

const bare = bareInstance();

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const KEY: SigningKey = { kid: 'kid-1', privateKey };
const FLAVOR = { 'metadata-flavor': 'Google' };

function ctxFor(instance: Instance, signing = true): DialectContext {
  return dialectContext(instance, { since: SINCE, ...(signing ? { signingKey: KEY } : {}) });
}

function get(path: string, query = '', headers: Record<string, string> = FLAVOR, ctx = ctxFor(inst), method = 'GET'): DialectResponse {
  return gce(dialectRequest(`/computeMetadata/v1/${path}`, { method, query, headers }), ctx);
}

t.test('paths it owns', async (t) => {
  t.ok(isGcePath('/computeMetadata'));
  t.ok(isGcePath('/computeMetadata/v1/instance/id'));
  t.notOk(isGcePath('/computeMetadataX'));
  t.notOk(isGcePath('/latest/meta-data'));
});

t.test('Metadata-Flavor is required; X-Forwarded-For is refused; every answer says Metadata-Flavor: Google', async (t) => {
  const none = get('instance/id', '', {});
  t.equal(none.status, 403);
  t.match(none.body, /Missing Metadata-Flavor:Google header/);
  t.equal(none.headers['Metadata-Flavor'], 'Google');
  t.equal(get('instance/id', '', { 'metadata-flavor': 'google' }).status, 403, 'the value is case-sensitive');
  t.equal(get('instance/id', '', { 'x-google-metadata-request': 'True' }).status, 200, 'legacy header accepted');
  const xff = get('instance/id', '', { ...FLAVOR, 'x-forwarded-for': '10.0.0.1' });
  t.equal(xff.status, 403);
  t.match(xff.body, /X-Forwarded-For/);
  const ok = get('instance/id');
  t.equal(ok.status, 200);
  t.equal(ok.headers['Metadata-Flavor'], 'Google');
  t.match(ok.headers['ETag'], /^[0-9a-f]{16}$/);
  const post = get('instance/id', '', FLAVOR, ctxFor(inst), 'POST');
  t.equal(post.status, 405);
  t.equal(post.headers['Allow'], 'GET, HEAD');
});

t.test('instance leaves and derived ids', async (t) => {
  const id = instanceNumericId(inst);
  t.match(id, /^[1-9][0-9]{18}$/);
  t.equal(instanceNumericId(inst), id, 'stable');
  t.not(instanceNumericId(bare), id);
  t.ok(BigInt(id) < 2n ** 63n, 'fits a signed 64-bit integer');
  const num = projectNumber(inst);
  t.match(num, /^[1-9][0-9]{11}$/);
  t.equal(projectNumber({ ...bare, project: 'proj-alpha' }), num, 'one number per project');
  t.equal(serviceAccountEmail(inst), `${num}-compute@developer.gserviceaccount.com`);
  t.match(serviceAccountUniqueId('a@b.c'), /^[1-9][0-9]{20}$/);
  t.equal(instanceName(inst), 'web-1');

  t.equal(get('instance/id').body, id);
  t.equal(get('instance/hostname').body, 'web-1.example.internal');
  t.equal(get('instance/name').body, 'web-1');
  t.equal(get('instance/zone').body, `projects/${num}/zones/region-1a`);
  t.equal(get('instance/machine-type').body, `projects/${num}/machineTypes/m1.small`);
  t.equal(get('instance/image').body, 'projects/proj-alpha/global/images/img-debian-12');
  t.equal(get('instance/tags').body, '["env","team"]');
  t.equal(get('instance/tags').headers['Content-Type'], 'application/json');
  t.equal(get('instance/network-interfaces/0/ip').body, '10.10.0.11');
  t.equal(get('instance/network-interfaces/1/mac').body, '52:54:00:0a:00:0c');
  t.equal(get('instance/network-interfaces/1/network').body, `projects/${num}/networks/tenant-b`);
  t.equal(get('instance/network-interfaces/0/network').body, `projects/${num}/networks/default`);
  t.equal(get('instance/network-interfaces/1/ipv6s').body, 'fd00:20::11\n');
  t.equal(get('project/project-id').body, 'proj-alpha');
  t.equal(get('project/numeric-project-id').body, num);
  t.equal(get('project/attributes/enable-oslogin').body, 'FALSE');

  const configured: Instance = {
    ...bare,
    gce: { instance_id: '42', project_number: '7', service_account: 'sa@x.iam.gserviceaccount.com', scopes: ['s1', 's2'], ssh_user: 'bob' },
  };
  const c = ctxFor(configured);
  t.equal(get('instance/id', '', FLAVOR, c).body, '42');
  t.equal(get('project/numeric-project-id', '', FLAVOR, c).body, '7');
  t.equal(get('instance/service-accounts/default/email', '', FLAVOR, c).body, 'sa@x.iam.gserviceaccount.com');
  t.equal(get('instance/service-accounts/sa@x.iam.gserviceaccount.com/scopes', '', FLAVOR, c).body, 's1\ns2\n');
  t.equal(get('instance/service-accounts/default/aliases', '', FLAVOR, c).body, 'default\n');
});

t.test('attributes: ssh-keys, user-data and custom ones (custom win)', async (t) => {
  t.equal(get('instance/attributes/').body, 'ssh-keys\nstartup-script\nuser-data\n');
  t.equal(
    get('instance/attributes/ssh-keys').body,
    'cloudinit:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop\ncloudinit:ssh-rsa AAAAB3NzaC1yc2E',
  );
  t.equal(get('instance/attributes/user-data').body, '#cloud-config\nfrom: attributes\n');
  const b: Instance = { ...inst, gce: {} };
  t.equal(get('instance/attributes/user-data', '', FLAVOR, ctxFor(b)).body, inst.user_data);
  t.equal(get('instance/attributes/', '', FLAVOR, ctxFor(bare)).body, '', 'no attributes: an empty listing');
  t.equal(get('instance/attributes/ssh-keys', '', FLAVOR, ctxFor(bare)).status, 404);
});

t.test('directories: listings, alt=json, recursive JSON in camelCase with data keys verbatim', async (t) => {
  t.equal(get('').body, 'instance/\nproject/\n');
  const root = gce(dialectRequest('/computeMetadata/', { headers: FLAVOR }), ctxFor(inst));
  t.equal(root.body, 'v1/\n');
  t.equal(gce(dialectRequest('/computeMetadata', { headers: FLAVOR }), ctxFor(inst)).body, 'v1/\n');
  t.equal(get('instance').body, get('instance/').body, 'with or without the trailing slash');
  t.match(get('instance/').body, /^attributes\/\ndescription\nhostname\nid\n/);
  t.same(JSON.parse(get('instance/network-interfaces/0/', 'alt=json').body), ['ip', 'mac', 'network']);
  t.equal(get('instance/id', 'alt=json').body, instanceNumericId(inst), 'a number in JSON');
  t.equal(get('instance/hostname', 'alt=json').body, '"web-1.example.internal"');
  t.equal(get('instance/service-accounts/default/scopes', 'alt=json').body, '["https://www.googleapis.com/auth/cloud-platform"]');

  const r = get('instance/', 'recursive=True');
  t.equal(r.headers['Content-Type'], 'application/json');
  t.match(r.body, new RegExp(`"id":${instanceNumericId(inst)}[,}]`), 'the id is an exact JSON number');
  const doc = JSON.parse(r.body) as Record<string, unknown>;
  t.same(Object.keys(doc), [
    'attributes',
    'description',
    'hostname',
    'id',
    'image',
    'machineType',
    'name',
    'networkInterfaces',
    'preempted',
    'serviceAccounts',
    'tags',
    'zone',
  ]);
  t.same(doc['attributes'], {
    'ssh-keys': get('instance/attributes/ssh-keys').body,
    'startup-script': 'echo hi',
    'user-data': '#cloud-config\nfrom: attributes\n',
  });
  const sas = doc['serviceAccounts'] as Record<string, unknown>;
  t.same(Object.keys(sas), ['default', serviceAccountEmail(inst)], 'service-account names verbatim');
  t.same(
    sas['default'],
    { aliases: ['default'], email: serviceAccountEmail(inst), scopes: ['https://www.googleapis.com/auth/cloud-platform'] },
    'token and identity left out',
  );
  t.same((doc['networkInterfaces'] as unknown[])[1], {
    ip: '10.20.0.11',
    ipv6s: ['fd00:20::11'],
    mac: '52:54:00:0a:00:0c',
    network: `projects/${projectNumber(inst)}/networks/tenant-b`,
  });
  t.same((JSON.parse(get('instance/attributes', 'recursive=true').body) as Record<string, unknown>)['startup-script'], 'echo hi');
  t.equal(get('instance/hostname', 'recursive=true').body, 'web-1.example.internal', 'recursive on a leaf is the leaf');

  const flat = get('instance/network-interfaces/', 'recursive=true&alt=text');
  t.equal(flat.headers['Content-Type'], 'application/text');
  t.match(flat.body, /^0\/ip 10\.10\.0\.11\n/);
  t.match(flatText(resolve(treeFor(inst), 'v1/instance/attributes')!), /user-data #cloud-config\\nfrom: attributes\\n\n/);
  t.equal(camel('numeric-project-id'), 'numericProjectId');
  t.equal(toJson({ kind: 'special', name: 'token' }), undefined);
});

t.test('ETag: stable for the same body, different for a different one', async (t) => {
  t.equal(get('instance/id').headers['ETag'], get('instance/id').headers['ETag']);
  t.not(get('instance/id').headers['ETag'], get('instance/hostname').headers['ETag']);
  t.not(get('instance/hostname').headers['ETag'], get('instance/hostname', 'alt=json').headers['ETag'], 'the rendering counts');
  t.not(
    get('instance/hostname').headers['ETag'],
    get('instance/hostname', '', FLAVOR, ctxFor({ ...inst, hostname: 'web-2' })).headers['ETag'],
    'a changed value changes it',
  );
});

t.test('wait_for_change: waits on the current ETag, answers at once on a stale one', async (t) => {
  const now = get('instance/hostname');
  const etag = now.headers['ETag']!;
  const w = get('instance/hostname', 'wait_for_change=true');
  t.equal(w.status, 200);
  t.equal(w.body, 'web-1.example.internal', 'carries the current answer');
  t.same(w.wait, { etag, timeoutMs: 300_000 }, 'default timeout 300 s');
  t.same(get('instance/hostname', `wait_for_change=true&last_etag=${etag}&timeout_sec=5`).wait, { etag, timeoutMs: 5000 });
  const stale = get('instance/hostname', 'wait_for_change=true&last_etag=0000000000000000');
  t.equal(stale.wait, undefined, 'stale etag: no wait');
  t.equal(stale.body, 'web-1.example.internal');
  t.equal(get('instance/hostname', 'wait_for_change=false').wait, undefined);
  t.equal(get('instance/hostname', `timeout_sec=${MAX_TIMEOUT_S + 1}`).status, 400);
  t.equal(get('instance/hostname', 'wait_for_change=true&timeout_sec=0').status, 400);
  t.equal(get('instance/hostname', 'wait_for_change=true&timeout_sec=1.5').status, 400);
  t.equal(get('instance/hostname', 'wait_for_change=true&last_etag=../x').status, 400);
  t.equal(get('instance/service-accounts/default/token', 'wait_for_change=true').status, 400);
  t.same(get('instance/', 'recursive=true&wait_for_change=true').wait?.timeoutMs, 300_000, 'works on directories too');
});

t.test('token: from the configuration, expires_in counts down; 404 without one', async (t) => {
  const r = get('instance/service-accounts/default/token');
  t.equal(r.status, 200);
  t.equal(r.headers['Content-Type'], 'application/json');
  t.same(JSON.parse(r.body), { access_token: 'ya29.example', expires_in: 3600, token_type: 'Bearer' });
  t.equal(get(`instance/service-accounts/${serviceAccountEmail(inst)}/token`, 'scopes=a,b').status, 200, 'by email, with scopes');
  const expired: Instance = { ...inst, gce: { token: { access_token: 'x', expiration: '2000-01-01T00:00:00Z' } } };
  t.equal(
    (JSON.parse(get('instance/service-accounts/default/token', '', FLAVOR, ctxFor(expired)).body) as { expires_in: number }).expires_in,
    0,
  );
  t.equal(get('instance/service-accounts/default/token', '', FLAVOR, ctxFor(bare)).status, 404);
  t.equal(get('instance/service-accounts/nobody@x/token').status, 404);
});

t.test('identity: an RS256 JWT signed with the daemon key; audience required', async (t) => {
  t.equal(get('instance/service-accounts/default/identity').status, 400);
  t.match(get('instance/service-accounts/default/identity', 'audience=').body, /non-empty audience/);
  t.equal(get('instance/service-accounts/default/identity', 'audience=x&format=weird').status, 400);
  t.equal(get('instance/service-accounts/default/identity', 'audience=x&licenses=maybe').status, 400);
  t.equal(get('instance/service-accounts/default/identity', 'audience=%01').status, 400);
  t.equal(get('instance/service-accounts/default/identity', 'audience=x', FLAVOR, ctxFor(inst, false)).status, 503, 'no key: unavailable');

  const r = get('instance/service-accounts/default/identity', 'audience=https%3A%2F%2Fexample.com&format=full&licenses=TRUE');
  t.equal(r.status, 200);
  const [h, p, s] = r.body.split('.');
  const header = JSON.parse(Buffer.from(h!, 'base64url').toString()) as Record<string, unknown>;
  t.same(header, { alg: 'RS256', kid: 'kid-1', typ: 'JWT' });
  t.ok(verify('sha256', Buffer.from(`${h}.${p}`), publicKey, Buffer.from(s!, 'base64url')), 'signature verifies with the public key');
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
  t.equal(claims['aud'], 'https://example.com');
  t.equal(claims['iss'], ISSUER);
  t.equal(claims['iat'], Math.floor(NOW / 1000));
  t.equal(claims['exp'], Math.floor(NOW / 1000) + 3600);
  t.equal(claims['email'], serviceAccountEmail(inst));
  t.same((claims['google'] as { compute_engine: Record<string, unknown> }).compute_engine, {
    instance_creation_timestamp: Math.floor(SINCE / 1000),
    instance_id: instanceNumericId(inst),
    instance_name: 'web-1',
    project_id: 'proj-alpha',
    project_number: Number(projectNumber(inst)),
    zone: 'region-1a',
    license_id: [],
  });
  const std = identityClaims(inst, { audience: 'a', full: false, licenses: false, now: NOW, since: SINCE });
  t.equal(std['google'], undefined, 'standard format has no google claim');
});

t.test('bad input: unknown paths 404 in GCE style, bad query parameters 400', async (t) => {
  const nf = get('instance/nope');
  t.equal(nf.status, 404);
  t.match(nf.body, /Error 404 \(Not Found\)/);
  t.equal(nf.headers['Metadata-Flavor'], 'Google');
  t.equal(get('instance/../project/project-id').status, 404);
  t.equal(get('instance//id').status, 404);
  t.equal(get('instance/id/more').status, 404);
  t.equal(gce(dialectRequest('/computeMetadata/v1beta1/', { headers: FLAVOR }), ctxFor(inst)).status, 404);
  t.match(get('instance/<script>').body, /&#60;script&#62;/, 'the path is escaped in the page');
  t.equal(get('instance/id', 'recursive=maybe').status, 400);
  t.equal(get('instance/id', 'alt=xml').status, 400);
  t.equal(get('instance/id', 'bogus=1').status, 400);
  t.equal(get('instance/id', 'alt=json&alt=text').status, 400, 'duplicate');
  t.equal(get('instance/id', 'alt=%zz').status, 400, 'malformed');
  t.equal(gceRefusal(503).status, 503);
  t.equal(gceRefusal(429).status, 429);
});

t.test("a guest's request renders only its own instance", async (t) => {
  const a = get('instance/id');
  const b = get('instance/id', '', FLAVOR, ctxFor(bare));
  t.not(a.body, b.body);
  t.equal(get(`instance/service-accounts/${serviceAccountEmail(bare)}/email`).status, 404, "another instance's account is not found");
});
