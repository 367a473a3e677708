// OpenStack dialect: versions, listings, meta_data.json, user_data, vendor data, network_data.json,
// password (GET, POST once), bad input.
import t from 'tap';
import {
  instanceUuid,
  isOpenStackPath,
  MAX_PASSWORD_BYTES,
  metaData,
  networkData,
  openstack,
  openstackError,
  PASSWORD_KEY,
  VERSIONS,
} from '../../src/dialects/openstack/index.js';
import type { DialectContext, DialectRequest, DialectResponse } from '../../src/dialects/types.js';
import type { Instance } from '../../src/model/instance.js';
import { bareInstance, dialectContext, dialectRequest, PORTS, sampleInstance } from '../helpers/fixtures.js';

const inst = sampleInstance({
  ports: [PORTS[0], { ...PORTS[1], bridge: 'br0', network: 'tenant-b' }],
  ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop', 'ssh-rsa AAAAB3NzaC1yc2E', 'ssh-rsa BBBB alice@laptop'],
  tags: { env: 'prod' },
});
const bare = bareInstance({
  hostname: 'bare.example',
  openstack: {
    uuid: '0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b',
    meta: { role: 'db' },
    vendor_data: { a: 1 },
    vendor_data2: { static: { b: 2 } },
  },
});

function ctxFor(instance: Instance, guestData?: Record<string, string>): DialectContext {
  return dialectContext(instance, guestData ? { guestData } : {});
}
function req(
  path: string,
  { ctx, ...o }: Partial<Pick<DialectRequest, 'method' | 'query' | 'body'>> & { ctx?: DialectContext } = {},
): DialectResponse {
  return openstack(dialectRequest(path, { now: 0, ...o }), ctx ?? ctxFor(inst));
}
const json = (r: DialectResponse): Record<string, unknown> => JSON.parse(r.body) as Record<string, unknown>;

t.test('paths it owns', async (t) => {
  t.ok(isOpenStackPath('/openstack'));
  t.ok(isOpenStackPath('/openstack/latest/meta_data.json'));
  t.notOk(isOpenStackPath('/openstackx'));
});

t.test('version listing, latest last; version listings', async (t) => {
  const v = req('/openstack');
  t.equal(v.status, 200);
  t.equal(v.body, [...VERSIONS, 'latest'].join('\n'));
  t.equal(req('/openstack/').body, v.body);
  t.equal(req('/openstack/latest').body, 'meta_data.json\nuser_data\npassword\nvendor_data.json\nnetwork_data.json\nvendor_data2.json');
  t.equal(req('/openstack/latest/').body, req('/openstack/latest').body);
  t.equal(req('/openstack/2012-08-10/').body, 'meta_data.json\nuser_data', 'folsom had only these');
  t.equal(
    req('/openstack/2015-10-15/', { ctx: ctxFor(bare) }).body,
    'meta_data.json\npassword\nvendor_data.json\nnetwork_data.json',
    'no user_data listed when none',
  );
  t.equal(req('/openstack/2011-01-01/').status, 404);
});

t.test('meta_data.json', async (t) => {
  const md = json(req('/openstack/latest/meta_data.json'));
  t.match(md['uuid'], /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(md['uuid'], instanceUuid(inst));
  t.equal(instanceUuid(inst), instanceUuid({ ...inst }), 'stable');
  t.equal(md['hostname'], 'web-1');
  t.equal(md['name'], 'web-1');
  t.equal(md['launch_index'], 0);
  t.equal(md['availability_zone'], 'region-1a');
  t.equal(md['project_id'], 'proj-alpha');
  t.same(md['meta'], { env: 'prod' }, 'meta defaults to the tags');
  t.same(
    md['public_keys'],
    { 'alice@laptop': inst.ssh_keys[0], 'key-1': inst.ssh_keys[1], 'alice@laptop-2': inst.ssh_keys[2] },
    'names unique',
  );
  t.same((md['keys'] as unknown[])[0], { name: 'alice@laptop', type: 'ssh', data: inst.ssh_keys[0] });
  t.same(md['devices'], []);
  t.notOk('devices' in metaData(inst, '2015-10-15'), 'devices appear in 2016-06-30');
  const b = json(req('/openstack/latest/meta_data.json', { ctx: ctxFor(bare) }));
  t.equal(b['uuid'], '0f9e8d7c-6b5a-4938-8271-605f4e3d2c1b');
  t.equal(b['name'], 'bare');
  t.same(b['meta'], { role: 'db' });
  t.same(b['public_keys'], {});
  t.equal(req('/openstack/latest/meta_data.json').headers['Content-Type'], 'application/json');
});

t.test('user_data, vendor data', async (t) => {
  t.equal(req('/openstack/latest/user_data').body, inst.user_data);
  t.equal(req('/openstack/latest/user_data', { ctx: ctxFor(bare) }).status, 404, '404 when none');
  t.same(json(req('/openstack/latest/vendor_data.json')), {});
  t.same(json(req('/openstack/latest/vendor_data2.json')), {});
  t.same(json(req('/openstack/latest/vendor_data.json', { ctx: ctxFor(bare) })), { a: 1 });
  t.same(json(req('/openstack/latest/vendor_data2.json', { ctx: ctxFor(bare) })), { static: { b: 2 } });
  t.equal(req('/openstack/2013-04-04/vendor_data.json').status, 404, 'not before havana');
});

t.test('network_data.json from the ports', async (t) => {
  const nd = json(req('/openstack/latest/network_data.json')) as {
    links: Array<Record<string, unknown>>;
    networks: Array<Record<string, unknown>>;
    services: unknown[];
  };
  t.equal(nd.links.length, 2);
  t.match(nd.links[0], { ethernet_mac_address: '52:54:00:0a:00:0b', type: 'tap', mtu: 1500 });
  t.match(nd.links[1], { ethernet_mac_address: '52:54:00:0a:00:0c', type: 'bridge' });
  t.match(nd.links[0]?.['id'], /^tap[0-9a-f-]{11}$/);
  t.same(
    nd.networks.map((n) => [n['id'], n['type'], n['ip_address'], n['link']]),
    [
      ['network0', 'ipv4_dhcp', '10.10.0.11', nd.links[0]?.['id']],
      ['network1', 'ipv4_dhcp', '10.20.0.11', nd.links[1]?.['id']],
      ['network2', 'ipv6_dhcp', 'fd00:20::11', nd.links[1]?.['id']],
    ],
  );
  t.not(nd.networks[0]?.['network_id'], nd.networks[1]?.['network_id'], 'tenant networks differ');
  t.same(nd.services, []);
  t.same(networkData(inst), nd, 'pure');
});

t.test('password: empty until posted, then set once (409 after), at most 1020 bytes', async (t) => {
  const get = req('/openstack/latest/password');
  t.equal(get.status, 200);
  t.equal(get.body, '');
  const post = req('/openstack/latest/password', { method: 'POST', body: 'c2VjcmV0' });
  t.equal(post.status, 200);
  t.same(post.store, { key: PASSWORD_KEY, value: 'c2VjcmV0' });
  const after = ctxFor(inst, { [PASSWORD_KEY]: 'c2VjcmV0' });
  t.equal(req('/openstack/latest/password', { ctx: after }).body, 'c2VjcmV0');
  const again = req('/openstack/latest/password', { method: 'POST', body: 'other', ctx: after });
  t.equal(again.status, 409);
  t.equal(again.store, undefined);
  t.equal(req('/openstack/latest/password', { method: 'POST', body: 'x'.repeat(MAX_PASSWORD_BYTES) }).status, 200);
  t.equal(req('/openstack/latest/password', { method: 'POST', body: 'x'.repeat(MAX_PASSWORD_BYTES + 1) }).status, 400);
  t.equal(req('/openstack/latest/password', { method: 'PUT', body: 'x' }).status, 405);
  t.equal(req('/openstack/2012-08-10/password').status, 404, 'not before grizzly');
});

t.test('bad input: nova-style 404, 405, 400 for a query', async (t) => {
  const nf = req('/openstack/latest/nope');
  t.equal(nf.status, 404);
  t.match(nf.body, /<h1>404 Not Found<\/h1>/);
  t.equal(nf.headers['Content-Type'], 'text/html; charset=UTF-8');
  t.equal(req('/openstack/latest/meta_data.json/').status, 404);
  t.equal(req('/openstack/latest/meta_data.json/x').status, 404);
  t.equal(req('/openstack/latest/../latest/meta_data.json').status, 404);
  t.equal(req('/openstack/latest/meta_data.json', { method: 'POST' }).status, 405);
  t.equal(req('/openstack', { method: 'DELETE' }).status, 405);
  t.equal(req('/openstack/latest', { method: 'PUT' }).status, 405);
  t.equal(req('/openstack/latest/meta_data.json', { query: 'x=1' }).status, 400);
  t.equal(req('/openstack/latest/meta_data.json', { query: 'a=1&a=2' }).status, 400);
  t.equal(openstackError(429).status, 429);
  t.match(openstackError(599).body, /599 Error/);
});
