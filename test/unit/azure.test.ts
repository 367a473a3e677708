// Azure IMDS dialect: Metadata header, api-version, instance document (Azure's shape, string
// leaves), path filtering and format=text, the managed-identity token, bad input.
import t from 'tap';
import {
  API_VERSIONS,
  azure,
  azureRefusal,
  clientId,
  instanceDocument,
  isAzurePath,
  subscriptionId,
  vmId,
} from '../../src/dialects/azure/index.js';
import type { DialectResponse } from '../../src/dialects/types.js';
import { bareInstance, dialectContext as ctxFor, dialectRequest, NOW, sampleInstance } from '../helpers/fixtures.js';

const EXP = '2024-05-06T08:08:09Z';
const inst = sampleInstance({
  region: 'westeurope',
  zone: '1',
  image: 'debian-12',
  type: 'Standard_B1s',
  ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop'],
  azure: { token: { access_token: 'eyJ0eXAi.example', expiration: EXP } },
});
const bare = bareInstance({
  zone: '',
  azure: {
    vm_id: '11111111-2222-4333-8444-555555555555',
    subscription_id: '66666666-7777-4888-9999-000000000000',
    resource_group: 'rg-1',
    admin_username: 'ops',
    client_id: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee',
  },
});
const MD = { metadata: 'true' };
const V = 'api-version=2021-02-01';

function get(path: string, query = V, headers: Record<string, string> = MD, ctx = ctxFor(inst), method = 'GET'): DialectResponse {
  return azure(dialectRequest(path, { method, query, headers }), ctx);
}
const body = (r: DialectResponse): Record<string, unknown> => JSON.parse(r.body) as Record<string, unknown>;

t.test('paths it owns', async (t) => {
  t.ok(isAzurePath('/metadata/instance'));
  t.ok(isAzurePath('/metadata'));
  t.notOk(isAzurePath('/metadatax'));
});

t.test('Metadata: true required (400, Azure text); X-Forwarded-For refused', async (t) => {
  const r = get('/metadata/instance', V, {});
  t.equal(r.status, 400);
  t.same(body(r), { error: 'Bad request. Required metadata header not specified' });
  t.equal(get('/metadata/instance', V, { metadata: 'false' }).status, 400);
  t.equal(get('/metadata/instance', V, { metadata: 'True' }).status, 200, 'value case-insensitive');
  const tok = get('/metadata/identity/oauth2/token', '', {});
  t.same(
    body(tok),
    { error: 'invalid_request', error_description: 'Required metadata header not specified' },
    'the token endpoint answers in OAuth style',
  );
  const xff = get('/metadata/instance', V, { ...MD, 'x-forwarded-for': '1.2.3.4' });
  t.equal(xff.status, 400);
  t.match(body(xff)['error'], /X-Forwarded-For/);
  t.equal(get('/metadata/instance', V, MD, ctxFor(inst), 'POST').status, 405);
});

t.test('api-version: required except on /metadata/versions; 400 lists the newest', async (t) => {
  const v = get('/metadata/versions', '');
  t.equal(v.status, 200);
  t.same(body(v), { apiVersions: API_VERSIONS });
  const missing = get('/metadata/instance', '');
  t.equal(missing.status, 400);
  t.match(body(missing)['error'], /api-version was not specified/);
  t.same(body(missing)['newest-versions'], API_VERSIONS.slice(-3).reverse());
  const bad = get('/metadata/instance', 'api-version=1999-01-01');
  t.equal(bad.status, 400);
  t.match(body(bad)['error'], /api-version is invalid/);
  t.equal(get('/metadata/identity/oauth2/token', 'resource=x').status, 400, 'the token endpoint too');
});

t.test('the instance document: Azure shape, every leaf a string', async (t) => {
  const r = get('/metadata/instance');
  t.equal(r.status, 200);
  t.equal(r.headers['Content-Type'], 'application/json; charset=utf-8');
  const doc = body(r) as { compute: Record<string, unknown>; network: { interface: Array<Record<string, unknown>> } };
  const c = doc.compute;
  t.equal(c['name'], 'web-1');
  t.equal(c['vmId'], vmId(inst));
  t.match(c['vmId'], /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(vmId(inst), vmId({ ...inst }), 'stable');
  t.equal(c['location'], 'westeurope');
  t.equal(c['zone'], '1');
  t.equal(c['vmSize'], 'Standard_B1s');
  t.equal(c['subscriptionId'], subscriptionId(inst));
  t.equal(c['resourceGroupName'], 'proj-alpha');
  t.equal(
    c['resourceId'],
    `/subscriptions/${subscriptionId(inst)}/resourceGroups/proj-alpha/providers/Microsoft.Compute/virtualMachines/web-1`,
  );
  t.same(c['osProfile'], { adminUsername: 'azureuser', computerName: 'web-1', disablePasswordAuthentication: 'true' });
  t.same(c['publicKeys'], [{ keyData: inst.ssh_keys[0], path: '/home/azureuser/.ssh/authorized_keys' }]);
  t.equal(c['tags'], 'env:prod;team:web');
  t.same(c['tagsList'], [
    { name: 'env', value: 'prod' },
    { name: 'team', value: 'web' },
  ]);
  t.equal(Buffer.from(c['userData'] as string, 'base64').toString(), inst.user_data);
  t.same(doc.network.interface[0], {
    ipv4: { ipAddress: [{ privateIpAddress: '10.10.0.11', publicIpAddress: '' }], subnet: [] },
    ipv6: { ipAddress: [] },
    macAddress: '5254000A000B',
  });
  t.same((doc.network.interface[1]?.['ipv6'] as Record<string, unknown>)['ipAddress'], [{ privateIpAddress: 'fd00:20::11' }]);
  const leaves: unknown[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) Object.values(v).forEach(walk);
    else leaves.push(v);
  };
  walk(doc);
  t.ok(leaves.length > 40 && leaves.every((l) => typeof l === 'string'), `all ${leaves.length} leaves are strings`);

  const b = body(get('/metadata/instance/compute', V, MD, ctxFor(bare)));
  t.equal(b['vmId'], '11111111-2222-4333-8444-555555555555');
  t.equal(b['subscriptionId'], '66666666-7777-4888-9999-000000000000');
  t.equal(b['resourceGroupName'], 'rg-1');
  t.equal((b['osProfile'] as Record<string, unknown>)['adminUsername'], 'ops');
  t.equal(b['userData'], '');
  t.same(instanceDocument(bare), instanceDocument(bare), 'pure');
});

t.test('path filtering and format=text', async (t) => {
  t.same(body(get('/metadata/instance/network/interface/0/ipv4')), {
    ipAddress: [{ privateIpAddress: '10.10.0.11', publicIpAddress: '' }],
    subnet: [],
  });
  const leaf = get('/metadata/instance/compute/vmId', `${V}&format=text`);
  t.equal(leaf.status, 200);
  t.equal(leaf.body, vmId(inst));
  t.equal(leaf.headers['Content-Type'], 'text/plain; charset=utf-8');
  t.equal(get('/metadata/instance/network/interface/1/ipv4/ipAddress/0/privateIpAddress', `${V}&format=text`).body, '10.20.0.11');
  t.equal(get('/metadata/instance/network/interface/0/macAddress', `format=text&${V}`).body, '5254000A000B');
  t.equal(get('/metadata/instance/compute/vmId').status, 400, 'a leaf needs format=text');
  t.equal(get('/metadata/instance', `${V}&format=text`).body, 'compute/\nnetwork/');
  t.equal(get('/metadata/instance/network/interface', `${V}&format=text`).body, '0/\n1/');
  t.equal(
    get('/metadata/instance/compute/osProfile', `${V}&format=text`).body,
    'adminUsername\ncomputerName\ndisablePasswordAuthentication',
  );
  t.equal(get('/metadata/instance/', V).status, 200);
  t.equal(get('/metadata/instance/compute/nope').status, 404);
  t.equal(get('/metadata/instance/network/interface/7').status, 404);
  t.equal(get('/metadata/instance/network/interface/01').status, 404);
  t.equal(get('/metadata/instance/compute//name').status, 404);
  t.equal(get('/metadata/instance/compute/toString').status, 404, 'no prototype properties');
  t.equal(get('/metadata/instance/compute/__proto__').status, 404);
  t.equal(get('/metadata/instance', `${V}&format=xml`).status, 400);
});

t.test('managed identity token: Azure shape from the configuration', async (t) => {
  const r = get(
    '/metadata/identity/oauth2/token',
    `api-version=2018-02-01&resource=${encodeURIComponent('https://management.azure.com/')}`,
  );
  t.equal(r.status, 200);
  const exp = Date.parse(EXP) / 1000;
  t.same(body(r), {
    access_token: 'eyJ0eXAi.example',
    client_id: clientId(inst),
    expires_in: '3600',
    expires_on: String(exp),
    ext_expires_in: '3600',
    not_before: String(Math.floor(NOW / 1000)),
    resource: 'https://management.azure.com/',
    token_type: 'Bearer',
  });
  t.equal(
    get('/metadata/identity/oauth2/token', `api-version=2018-02-01&resource=x&client_id=${clientId(inst)}`).status,
    200,
    'its own client id',
  );
  const other = get('/metadata/identity/oauth2/token', `api-version=2018-02-01&resource=x&client_id=${clientId(bare)}`);
  t.equal(other.status, 400);
  t.same(body(other), { error: 'invalid_request', error_description: 'Identity not found' }, "another instance's identity is not found");
  t.equal(get('/metadata/identity/oauth2/token', 'api-version=2018-02-01&resource=x&object_id=1').status, 400);
  t.equal(get('/metadata/identity/oauth2/token', 'api-version=2018-02-01&resource=x', MD, ctxFor(bare)).status, 400, 'no token configured');
  const nores = get('/metadata/identity/oauth2/token', 'api-version=2018-02-01');
  t.same(body(nores), { error: 'invalid_request', error_description: 'Required audience parameter not specified' });
  t.equal(get('/metadata/identity/oauth2/token', 'api-version=2018-02-01&resource=%0a').status, 400);
  t.equal(clientId(bare), 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee');
});

t.test('bad input: 404 JSON, duplicate and unknown query parameters 400', async (t) => {
  const nf = get('/metadata/nope');
  t.equal(nf.status, 404);
  t.same(body(nf), { error: 'Not found' });
  t.equal(get('/metadata').status, 404);
  t.equal(get('/metadata/attested/document').status, 404);
  const dup = get('/metadata/instance', `${V}&api-version=2020-09-01`);
  t.equal(dup.status, 400);
  t.match(body(dup)['error'], /duplicated/);
  t.equal(get('/metadata/instance', `${V}&format=json&format=text`).status, 400);
  t.equal(get('/metadata/instance', `${V}&bogus=1`).status, 400);
  t.equal(get('/metadata/instance', `${V}&%zz=1`).status, 400);
  t.equal(get('/metadata/versions', 'api-version=2021-02-01').status, 200, 'versions ignores api-version');
  t.equal(get('/metadata/versions', 'x=1').status, 400);
  t.equal(azureRefusal(429).status, 429);
  t.same(JSON.parse(azureRefusal(429).body), { error: 'Too many requests' });
  t.equal(azureRefusal(503).status, 503);
});
