import t from 'tap';
import { ec2, isEc2Path, VERSIONS } from '../../src/dialects/ec2/index.js';
import { interfaceId, isoSeconds, reservationId } from '../../src/dialects/ec2/ids.js';
import { buildTree, keyName, resolve, treeFor } from '../../src/dialects/ec2/tree.js';
import type { DialectContext, DialectResponse } from '../../src/dialects/types.js';
import type { Instance } from '../../src/model/instance.js';
import { bareInstance, dialectContext, dialectRequest, NOW, sampleInstance, SINCE, TOKEN_KEY } from '../helpers/fixtures.js';

const inst = sampleInstance({
  role: {
    name: 'web-role',
    access_key_id: 'AKIAEXAMPLE',
    secret_access_key: 'example-secret',
    token: 'example-session-token',
    expiration: '2030-01-01T00:00:00Z',
  },
});

const bare = bareInstance();

function ctxFor(instance: Instance, portIndex = 0, tokens: 'optional' | 'required' = 'optional'): DialectContext {
  return dialectContext(instance, { portIndex, ec2: { tokens, hop_limit: 1 }, tokenKey: TOKEN_KEY, since: SINCE });
}

function get(path: string, ctx: DialectContext = ctxFor(inst), method = 'GET'): DialectResponse {
  return ec2(dialectRequest(path, { method }), ctx);
}

const ENI0 = interfaceId(inst.id, '52:54:00:0a:00:0b');
const ENI1 = interfaceId(inst.id, '52:54:00:0a:00:0c');

const credentials = `{
  "Code": "Success",
  "LastUpdated": "2024-05-06T07:08:09Z",
  "Type": "AWS-HMAC",
  "AccessKeyId": "AKIAEXAMPLE",
  "SecretAccessKey": "example-secret",
  "Token": "example-session-token",
  "Expiration": "2030-01-01T00:00:00Z"
}`;

const document = `{
  "accountId": "proj-alpha",
  "architecture": "x86_64",
  "availabilityZone": "region-1a",
  "billingProducts": null,
  "devpayProductCodes": null,
  "marketplaceProductCodes": null,
  "imageId": "img-debian-12",
  "instanceId": "i-0a1b2c3d4e5f60718",
  "instanceType": "m1.small",
  "kernelId": null,
  "pendingTime": "2024-01-02T03:04:05Z",
  "privateIp": "10.10.0.11",
  "ramdiskId": null,
  "region": "region-1",
  "version": "2017-09-30"
}`;

/** Every leaf of the sample instance under /latest/, as served on port 0 at NOW. */
const LEAVES: Record<string, string> = {
  'dynamic/instance-identity/document': document,
  'meta-data/ami-id': 'img-debian-12',
  'meta-data/ami-launch-index': '0',
  'meta-data/ami-manifest-path': '(unknown)',
  'meta-data/block-device-mapping/ami': '/dev/vda',
  'meta-data/block-device-mapping/root': '/dev/vda',
  'meta-data/hostname': 'web-1',
  'meta-data/iam/info': `{
  "Code": "Success",
  "LastUpdated": "2024-05-06T07:08:09Z",
  "InstanceProfileArn": "arn:aws:iam::proj-alpha:instance-profile/web-role",
  "InstanceProfileId": "${(JSON.parse(get('/latest/meta-data/iam/info').body) as { InstanceProfileId: string }).InstanceProfileId}"
}`,
  'meta-data/iam/security-credentials/web-role': credentials,
  'meta-data/instance-action': 'none',
  'meta-data/instance-id': 'i-0a1b2c3d4e5f60718',
  'meta-data/instance-life-cycle': 'on-demand',
  'meta-data/instance-type': 'm1.small',
  'meta-data/local-hostname': 'web-1',
  'meta-data/local-ipv4': '10.10.0.11',
  'meta-data/mac': '52:54:00:0a:00:0b',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0b/device-number': '0',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0b/interface-id': ENI0,
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0b/local-hostname': 'web-1',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0b/local-ipv4s': '10.10.0.11',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0b/mac': '52:54:00:0a:00:0b',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0b/owner-id': 'proj-alpha',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0c/device-number': '1',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0c/interface-id': ENI1,
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0c/ipv6s': 'fd00:20::11',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0c/local-hostname': 'web-1',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0c/local-ipv4s': '10.20.0.11',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0c/mac': '52:54:00:0a:00:0c',
  'meta-data/network/interfaces/macs/52:54:00:0a:00:0c/owner-id': 'proj-alpha',
  'meta-data/placement/availability-zone': 'region-1a',
  'meta-data/placement/region': 'region-1',
  'meta-data/profile': 'default-hvm',
  'meta-data/public-keys/0/openssh-key': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop',
  'meta-data/public-keys/1/openssh-key': 'ssh-rsa AAAAB3NzaC1yc2E',
  'meta-data/reservation-id': reservationId(inst.id),
  'meta-data/security-groups': 'default',
  'meta-data/services/domain': 'amazonaws.com',
  'meta-data/services/partition': 'aws',
  'meta-data/tags/instance/env': 'prod',
  'meta-data/tags/instance/team': 'web',
  'user-data': '#cloud-config\nhostname: web-1\n',
};

/** Crawl like cloud-init's MetadataMaterializer: lines ending in '/' are directories. */
function crawl(base: string, into: Record<string, string>, ctx: DialectContext): void {
  const r = get(base, ctx);
  if (r.status !== 200) throw new Error(`${base}: ${r.status}`);
  for (const line of r.body.split('\n')) {
    if (line.endsWith('/')) crawl(base + line, into, ctx);
    else {
      // public-keys lists `0=name`: the entry is the directory `0/`.
      const eq = line.indexOf('=');
      if (eq > 0) crawl(`${base}${line.slice(0, eq)}/`, into, ctx);
      else into[(base + line).slice('/latest/'.length)] = get(base + line, ctx).body;
    }
  }
}

t.test('the whole tree, crawled as cloud-init does', async (t) => {
  const found: Record<string, string> = {};
  const top = get('/latest/').body.split('\n');
  t.same(top, ['dynamic', 'meta-data', 'user-data'], 'the version level lists bare names');
  crawl('/latest/dynamic/', found, ctxFor(inst));
  crawl('/latest/meta-data/', found, ctxFor(inst));
  found['user-data'] = get('/latest/user-data').body;
  t.same(found, LEAVES);
  t.equal(Object.keys(found).length, Object.keys(LEAVES).length);
});

t.test('listings: exact text', async (t) => {
  const cases: Record<string, string> = {
    '/': VERSIONS.join('\n'),
    '/latest': 'dynamic\nmeta-data\nuser-data',
    '/latest/': 'dynamic\nmeta-data\nuser-data',
    '/latest/meta-data/': [
      'ami-id',
      'ami-launch-index',
      'ami-manifest-path',
      'block-device-mapping/',
      'hostname',
      'iam/',
      'instance-action',
      'instance-id',
      'instance-life-cycle',
      'instance-type',
      'local-hostname',
      'local-ipv4',
      'mac',
      'network/',
      'placement/',
      'profile',
      'public-keys/',
      'reservation-id',
      'security-groups',
      'services/',
      'tags/',
    ].join('\n'),
    '/latest/meta-data/block-device-mapping/': 'ami\nroot',
    '/latest/meta-data/iam': 'info\nsecurity-credentials/',
    '/latest/meta-data/iam/security-credentials/': 'web-role',
    '/latest/meta-data/iam/security-credentials': 'web-role',
    '/latest/meta-data/network/': 'interfaces/',
    '/latest/meta-data/network/interfaces/': 'macs/',
    '/latest/meta-data/network/interfaces/macs/': '52:54:00:0a:00:0b/\n52:54:00:0a:00:0c/',
    '/latest/meta-data/network/interfaces/macs/52:54:00:0a:00:0b/':
      'device-number\ninterface-id\nlocal-hostname\nlocal-ipv4s\nmac\nowner-id',
    '/latest/meta-data/network/interfaces/macs/52:54:00:0a:00:0c':
      'device-number\ninterface-id\nipv6s\nlocal-hostname\nlocal-ipv4s\nmac\nowner-id',
    '/latest/meta-data/placement/': 'availability-zone\nregion',
    '/latest/meta-data/public-keys/': '0=alice@laptop\n1=key-1',
    '/latest/meta-data/public-keys/0/': 'openssh-key',
    '/latest/meta-data/public-keys/1': 'openssh-key',
    '/latest/meta-data/services/': 'domain\npartition',
    '/latest/meta-data/tags/': 'instance/',
    '/latest/meta-data/tags/instance': 'env\nteam',
    '/latest/dynamic/': 'instance-identity/',
    '/latest/dynamic/instance-identity/': 'document',
  };
  for (const [path, body] of Object.entries(cases)) {
    const r = get(path);
    t.equal(r.status, 200, path);
    t.equal(r.body, body, path);
    t.equal(r.headers['Content-Type'], 'text/plain', path);
    t.equal(r.headers['Server'], 'EC2ws', path);
  }
});

t.test('versions: / lists them all, each serves the tree', async (t) => {
  t.equal(VERSIONS.length, 26);
  t.equal(VERSIONS[0], '1.0');
  t.equal(VERSIONS[VERSIONS.length - 1], 'latest');
  t.equal(get('/').body.split('\n').length, 26);
  t.notOk(get('/').body.endsWith('\n'));
  for (const v of VERSIONS) {
    t.equal(get(`/${v}/meta-data/instance-id`).body, inst.id, v);
    t.equal(get(`/${v}`).body, 'dynamic\nmeta-data\nuser-data', v);
  }
  const dated = get('/2009-04-04/meta-data/instance-id');
  t.equal(dated.status, 200);
  t.equal(dated.body, 'i-0a1b2c3d4e5f60718');
  t.equal(dated.headers['Content-Type'], 'text/plain');
  t.equal(get('/2009-04-05/meta-data/instance-id').status, 404);
  t.equal(get('/2021-03-23/dynamic/instance-identity/document').body, document);
});

t.test('isEc2Path', async (t) => {
  for (const p of [
    '/',
    '/latest',
    '/latest/',
    '/latest/meta-data/x',
    '/latest/api/token',
    '/1.0',
    '/2009-04-04/meta-data/',
    '/2021-03-23',
  ]) {
    t.ok(isEc2Path(p), p);
  }
  for (const p of [
    '',
    'latest',
    '/latestx',
    '/latest-x/',
    '/openstack/latest',
    '/computeMetadata/v1/',
    '/metadata/instance',
    '/2009-04-05/',
    '//latest',
  ]) {
    t.notOk(isEc2Path(p), p);
  }
});

t.test('security credentials', async (t) => {
  const list = get('/latest/meta-data/iam/security-credentials/');
  t.equal(list.body, 'web-role', 'exactly the role name: no newline, no slash');
  const r = get('/latest/meta-data/iam/security-credentials/web-role');
  t.equal(r.status, 200);
  t.equal(r.body, credentials);
  t.equal(r.headers['Content-Type'], 'application/json');
  const later = ec2(dialectRequest('/latest/meta-data/iam/security-credentials/web-role', { now: NOW + 3_600_000 }), ctxFor(inst));
  t.match(later.body, /"LastUpdated": "2024-05-06T08:08:09Z"/, 'LastUpdated follows req.now (tree cached, leaf evaluated per request)');
  t.equal(get('/latest/meta-data/iam/security-credentials/web-role/').body, credentials, 'a leaf answers with a trailing slash too');
  t.equal(get('/latest/meta-data/iam/security-credentials/other').status, 404);
  const info = JSON.parse(get('/latest/meta-data/iam/info').body) as Record<string, string>;
  t.equal(info['Code'], 'Success');
  t.equal(info['InstanceProfileArn'], 'arn:aws:iam::proj-alpha:instance-profile/web-role');
  t.match(info['InstanceProfileId'], /^AIPA[0-9A-F]{17}$/);
  t.equal(get('/latest/meta-data/iam/info').headers['Content-Type'], 'application/json');
});

t.test('identity document', async (t) => {
  const r = get('/latest/dynamic/instance-identity/document');
  t.equal(r.headers['Content-Type'], 'application/json');
  t.equal(r.body, document);
  const doc = JSON.parse(get('/latest/dynamic/instance-identity/document', ctxFor(inst, 1)).body) as Record<string, unknown>;
  t.equal(doc['privateIp'], '10.20.0.11', 'privateIp is the NIC the request came in on');
  t.equal(doc['accountId'], 'proj-alpha');
  t.equal(doc['pendingTime'], '2024-01-02T03:04:05Z');
  t.equal(doc['version'], '2017-09-30');
});

t.test('leaves answer with one trailing slash (botocore asks for placement/availability-zone/)', async (t) => {
  const r = get('/latest/meta-data/placement/availability-zone/');
  t.equal(r.status, 200);
  t.equal(r.body, 'region-1a');
  t.equal(get('/latest/dynamic/instance-identity/document/').headers['Content-Type'], 'application/json');
});

t.test('per-port leaves follow ctx.port', async (t) => {
  const c1 = ctxFor(inst, 1);
  t.equal(get('/latest/meta-data/mac', c1).body, '52:54:00:0a:00:0c');
  t.equal(get('/latest/meta-data/local-ipv4', c1).body, '10.20.0.11');
  t.equal(get('/latest/meta-data/mac').body, '52:54:00:0a:00:0b');
  t.equal(get('/latest/meta-data/local-ipv4').body, '10.10.0.11');
});

t.test('derived ids are stable and well-formed', async (t) => {
  t.match(ENI0, /^eni-[0-9a-f]{17}$/);
  t.not(ENI0, ENI1);
  t.equal(interfaceId(inst.id, '52:54:00:0a:00:0b'), ENI0);
  t.not(interfaceId('i-other', '52:54:00:0a:00:0b'), ENI0);
  t.match(reservationId(inst.id), /^r-[0-9a-f]{17}$/);
  t.not(reservationId('i-other'), reservationId(inst.id));
  t.equal(isoSeconds(Date.UTC(2030, 0, 1)), '2030-01-01T00:00:00Z');
  t.equal(isoSeconds(Number.NaN), '1970-01-01T00:00:00Z', 'never throws');
});

t.test('user-data', async (t) => {
  const r = get('/latest/user-data');
  t.equal(r.status, 200);
  t.equal(r.body, '#cloud-config\nhostname: web-1\n');
  t.equal(r.headers['Content-Type'], 'application/octet-stream');
  t.equal(get('/latest/user-data/').body, r.body);
  t.equal(get('/latest/user-data', ctxFor(bare)).status, 404, 'none → 404');
  const empty: Instance = { ...bare, user_data: '' };
  t.equal(get('/latest/user-data', ctxFor(empty)).status, 200, 'empty user-data is still user-data');
  t.equal(get('/latest/', ctxFor(empty)).body, 'dynamic\nmeta-data\nuser-data');
});

t.test('optional parts absent on a bare instance', async (t) => {
  const c = ctxFor(bare);
  t.equal(get('/latest/', c).body, 'dynamic\nmeta-data');
  const md = get('/latest/meta-data/', c).body.split('\n');
  t.notOk(md.includes('iam/'));
  t.notOk(md.includes('public-keys/'));
  t.notOk(md.includes('tags/'));
  t.ok(md.includes('network/'));
  for (const p of ['iam/', 'iam/security-credentials/', 'public-keys/', 'public-keys/0/openssh-key', 'tags/', 'tags/instance/']) {
    t.equal(get(`/latest/meta-data/${p}`, c).status, 404, p);
  }
  t.equal(get('/latest/meta-data/network/interfaces/macs/', c).body, '52:54:00:00:00:09/');
});

t.test('404s and traversal', async (t) => {
  const paths = [
    '/latest/meta-data/nope',
    '/latest/meta-data/instance-id//',
    '/latest/meta-data/instance-id/x',
    '/latest//meta-data/instance-id',
    '/latest/meta-data//instance-id',
    '//latest/meta-data/instance-id',
    '/latest/meta-data/../meta-data/instance-id',
    '/latest/meta-data/./instance-id',
    '/latest/..',
    '/latest/../latest/',
    '/latest/meta-data/tags/instance/__proto__',
    '/latest/meta-data/tags/instance/constructor',
    '/latest/meta-data/public-keys/0=alice@laptop',
    '/latest/api',
    '/latest/api/token/',
    '/nope',
    'latest/meta-data/',
    '',
  ];
  for (const p of paths) {
    const r = get(p);
    t.equal(r.status, 404, JSON.stringify(p));
    t.equal(r.body, 'Not Found');
    t.equal(r.headers['Content-Type'], 'text/plain');
    t.equal(r.headers['Server'], 'EC2ws');
  }
});

t.test('methods', async (t) => {
  const head = get('/latest/meta-data/instance-id', ctxFor(inst), 'HEAD');
  t.same(head, get('/latest/meta-data/instance-id'), 'HEAD answers as GET');
  for (const m of ['POST', 'DELETE', 'PATCH', 'OPTIONS', 'PUT']) {
    const r = get('/latest/meta-data/instance-id', ctxFor(inst), m);
    t.equal(r.status, 405, m);
    t.equal(r.headers['Allow'], 'GET, HEAD', m);
    t.equal(r.headers['Server'], 'EC2ws', m);
  }
  for (const m of ['GET', 'HEAD', 'POST', 'DELETE']) {
    const r = get('/latest/api/token', ctxFor(inst), m);
    t.equal(r.status, 405, `${m} token path`);
    t.equal(r.headers['Allow'], 'PUT');
  }
  t.equal(get('/2021-03-23/api/token', ctxFor(inst), 'PUT').status, 405, 'tokens are minted on /latest only');
});

t.test('tree: cached per instance object, odd names kept out', async (t) => {
  t.equal(treeFor(inst), treeFor(inst), 'same object → same tree');
  t.not(treeFor({ ...inst }), treeFor(inst), 'new object → new tree');
  const odd: Instance = {
    ...bare,
    tags: { 'a/b': '1', '..': '2', '': '3', 'x\ny': '4', ok: '5' },
    ssh_keys: ['ssh-ed25519 AAAA', '  ssh-ed25519 AAAB two words  '],
    ports: [bare.ports[0]!, { interface: 'dup', mac: '52:54:00:00:00:09', ipv4: '10.9.0.10' }],
  };
  const c = ctxFor(odd);
  t.equal(get('/latest/meta-data/tags/instance/', c).body, 'ok');
  t.equal(get('/latest/meta-data/public-keys/', c).body, '0=key-0\n1=two words');
  t.equal(get('/latest/meta-data/network/interfaces/macs/', c).body, '52:54:00:00:00:09/', 'a repeated MAC is listed once');
  t.equal(get('/latest/meta-data/network/interfaces/macs/52:54:00:00:00:09/local-ipv4s', c).body, '10.9.0.9', 'first wins');
  t.equal(keyName('ssh-rsa AAAA', 3), 'key-3');
  t.equal(resolve(buildTree(bare), 'no-slash'), undefined);
});

t.test('fixed: what may be replayed, and what reads the clock or a token', async (t) => {
  t.equal(get('/latest/meta-data/instance-id').fixed, true);
  t.equal(get('/latest/meta-data/').fixed, true, 'a listing');
  t.equal(get('/latest/meta-data/local-ipv4').fixed, true, "the port's: the cache is per binding");
  t.equal(get('/latest/dynamic/instance-identity/document').fixed, true, 'the port and the registration time: per binding');
  t.equal(get('/latest/meta-data/nope').fixed, true, '404');
  t.notOk(get('/latest/meta-data/iam/info').fixed, 'LastUpdated is the clock');
  t.notOk(get('/latest/meta-data/iam/security-credentials/web-role').fixed, 'credentials: the clock');
  t.equal(get('/latest/meta-data/iam/security-credentials/').fixed, true, 'the role listing');
  t.notOk(get('/latest/meta-data/instance-id', ctxFor(inst, 0, 'required')).fixed, 'required, no token: 401');
  t.equal(get('/latest/meta-data/instance-id').grant, undefined, 'no token: no grant');
});
