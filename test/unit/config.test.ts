// config/: field checkers, validateConfig / validateInstance / checkInstanceSet, and file loading.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname as machineHostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Instance } from '../../src/model/instance.js';
import {
  checkDateTime,
  checkGuestIPv4,
  checkGuestIPv6,
  checkHostname,
  checkIfname,
  checkMac,
  formatIPv6,
  normalizeIPv6,
  parseIPv6,
} from '../../src/config/addr.js';
import { formatProblems, loadConfigFile } from '../../src/config/load.js';
import { checkInstanceSet, validateConfig, validateInstance } from '../../src/config/validate.js';
import { HOST as H, okConfig, problemsOf, rawInstance as inst, rawPort as port } from '../helpers/fixtures.js';

const CONTRACT = fileURLToPath(new URL('../fixtures/config/contract.yaml', import.meta.url));

type Obj = Record<string, unknown>;
const cfg = (over: Obj = {}): Obj => ({ instances: [inst()], ...over });
function okInstance(raw: unknown): Instance {
  const r = validateInstance(raw);
  if (!r.ok) throw new Error(`expected valid, got:\n${formatProblems(r.problems)}`);
  return r.instance;
}
/** Exactly one problem, at `path`, whose message matches `re`. */
function one(t: Test, raw: unknown, path: string, re: RegExp, name = `${path} ${String(re)}`): void {
  const ps = problemsOf(raw);
  t.equal(ps.length, 1, `${name}: one problem (${formatProblems(ps)})`);
  t.equal(ps[0]?.path, path, `${name}: path`);
  t.match(ps[0]?.message ?? '', re, `${name}: message`);
}

let tmp = '';
t.before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'linkgate-config-test-'));
});
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

t.test('the contract example is valid and fully normalized', async (t) => {
  const r = loadConfigFile(CONTRACT, H);
  if (!r.ok) throw new Error(formatProblems(r.problems));
  t.same(r.config, {
    listen: { ipv4: '169.254.169.254', ipv6: 'fd00:ec2::254', port: 80, fast_path: true },
    admin: { socket: '/run/linkgate/admin.sock' },
    host: 'hv-17',
    state_dir: '/var/lib/linkgate',
    ec2: { tokens: 'optional', hop_limit: 1 },
    limits: {
      max_header_bytes: 8192,
      header_timeout_ms: 5000,
      keepalive_timeout_ms: 5000,
      shutdown_grace_ms: 5000,
      held_per_instance: 16,
      rate_per_s: { ec2: 0, gce: 0, openstack: 0, azure: 5 },
    },
    default_backend: 'embedded',
    backends: {
      upstream: {
        url: 'http://127.0.0.1:8775',
        shared_secret: 's3cret',
        cache_ttl_s: 15,
        timeout_ms: 2000,
        max_connections: 16,
        stale_if_error_s: 300,
      },
    },
    registry: { etcd: { endpoints: ['http://127.0.0.1:2379'], prefix: '/linkgate/' } },
    instances: [
      {
        id: 'i-0a1b2c3d4e5f60718',
        hostname: 'web-1',
        ports: [
          { interface: 'lgtap1', mac: '52:54:00:0a:00:0b', ipv4: '10.10.0.11', ipv6: 'fd00:10::11', bridge: 'br0', network: 'tenant-a' },
        ],
        project: 'proj-alpha',
        region: 'region-1',
        zone: 'region-1a',
        image: 'img-debian-12',
        type: 'm1.small',
        ssh_keys: ['ssh-ed25519 AAAAC3Nza... alice@laptop'],
        user_data: '#cloud-config\nhostname: web-1\n',
        tags: { env: 'prod', team: 'web' },
        role: {
          name: 'web-role',
          access_key_id: 'AKIAEXAMPLE',
          secret_access_key: 'example-secret',
          token: 'example-session-token',
          expiration: '2030-01-01T00:00:00Z',
        },
        backend: 'upstream',
      },
    ],
  });
});

t.test('defaults', async (t) => {
  const c = okConfig({ instances: [] });
  t.same(c, {
    listen: { ipv4: '169.254.169.254', ipv6: 'fd00:ec2::254', port: 80, fast_path: true },
    admin: { socket: '/run/linkgate/admin.sock' },
    host: 'hv-test',
    state_dir: '/var/lib/linkgate',
    ec2: { tokens: 'optional', hop_limit: 1 },
    limits: {
      max_header_bytes: 8192,
      header_timeout_ms: 5000,
      keepalive_timeout_ms: 5000,
      shutdown_grace_ms: 5000,
      held_per_instance: 16,
      rate_per_s: { ec2: 0, gce: 0, openstack: 0, azure: 5 },
    },
    default_backend: 'embedded',
    backends: {},
    registry: {},
    instances: [],
  });
  t.same(okConfig({ instances: [], listen: { port: 8080 }, ec2: { tokens: 'required' } }).listen, {
    ipv4: '169.254.169.254',
    ipv6: 'fd00:ec2::254',
    port: 8080,
    fast_path: true,
  });
  t.equal(okConfig({ instances: [], listen: { fast_path: false } }).listen.fast_path, false, 'the native loop can be turned off');
  t.match(problemsOf({ instances: [], listen: { fast_path: 'yes' } }), [{ path: 'listen.fast_path', message: /expected true or false/ }]);
  t.equal(okConfig({ instances: [], listen: { ipv6: false } }).listen.ipv6, false, 'IPv6 can be turned off');
  t.match(problemsOf({ instances: [], listen: { ipv6: 'ff02::1' } }), [{ path: 'listen.ipv6' }]);
  t.same(okConfig({ instances: [], ec2: { tokens: 'required' } }).ec2, { tokens: 'required', hop_limit: 1 });

  const i = okInstance(inst());
  t.same(i, {
    id: 'i-1',
    hostname: 'web-1',
    ports: [port()],
    project: 'default',
    region: 'region-1',
    zone: 'region-1a',
    image: 'image-0',
    type: 'm1.small',
    ssh_keys: [],
    tags: {},
  });
  for (const k of ['user_data', 'role', 'backend', 'ec2']) t.notOk(k in i, `${k} stays absent`);
  for (const k of ['ipv6', 'bridge', 'network']) t.notOk(k in i.ports[0]!, `port ${k} stays absent`);
  t.equal(okInstance(inst({ region: 'eu-west' })).zone, 'eu-westa', 'zone follows region');
  t.equal(okInstance(inst({ region: 'eu-west', zone: 'z9' })).zone, 'z9');
  t.equal(okInstance(inst({ user_data: '' })).user_data, '', 'empty user_data is kept');
  t.same(okInstance(inst({ ec2: {} })).ec2, {});
  t.same(okInstance(inst({ ec2: { hop_limit: 2 } })).ec2, { hop_limit: 2 });
  t.same(okInstance(inst({ ec2: { tokens: 'required', hop_limit: 64 } })).ec2, { tokens: 'required', hop_limit: 64 });
  t.equal(okInstance(inst({ backend: 'embedded' })).backend, 'embedded');

  // host: the machine's name unless given.
  const r = validateConfig({ instances: [] });
  if (checkHostname(machineHostname()) === machineHostname()) t.equal(r.ok && r.config.host, machineHostname());
  one(t, { instances: [], host: 'hv_1' }, 'host', /not an RFC 1123 host name/);
  const d = validateConfig({ instances: [] }, { hostname: 'bad_name' });
  t.match(d, { ok: false, problems: [{ path: 'host', message: /set `host`/ }] }, 'an invalid machine host name says to set host');
  t.equal(okConfig({ instances: [], host: 'hv-2.example.org' }).host, 'hv-2.example.org');
});

t.test('normalization', async (t) => {
  const i = okInstance(inst({ ports: [port({ mac: '52:54:00:AB:cD:0F', ipv6: 'FD00:0010:0000:0000:0000:0000:0000:0011' })] }));
  t.equal(i.ports[0]!.mac, '52:54:00:ab:cd:0f');
  t.equal(i.ports[0]!.ipv6, 'fd00:10::11');
  const exp = (e: unknown): string | undefined =>
    okInstance(inst({ role: { name: 'r', access_key_id: 'a', secret_access_key: 's', token: 't', expiration: e } })).role?.expiration;
  t.equal(exp('2030-01-01T00:00:00Z'), '2030-01-01T00:00:00Z');
  t.equal(exp('2030-01-01T02:30:00+02:30'), '2030-01-01T00:00:00Z');
  t.equal(exp('2029-12-31T19:00:00-0500'), '2030-01-01T00:00:00Z');
  t.equal(exp('2030-01-01 00:00:00.999z'), '2030-01-01T00:00:00Z', 'space separator, fraction dropped, lower-case z');
  t.equal(exp(new Date(Date.UTC(2030, 0, 1, 12, 0, 0, 500))), '2030-01-01T12:00:00Z', 'a Date (YAML 1.1 timestamp)');
});

t.test('field rules: each failure names its field', async (t) => {
  const at = (over: Obj, path: string, re: RegExp): void => one(t, cfg({ instances: [inst(over)] }), `instances[0].${path}`, re);
  const atPort = (over: Obj, path: string, re: RegExp): void => at({ ports: [port(over)] }, `ports[0].${path}`, re);

  // id
  at({ id: undefined }, 'id', /^is required$/);
  at({ id: '' }, 'id', /is not a valid id/);
  at({ id: '-x' }, 'id', /is not a valid id/);
  at({ id: 'a b' }, 'id', /is not a valid id/);
  at({ id: `i${'x'.repeat(128)}` }, 'id', /is not a valid id/);
  at({ id: 42 }, 'id', /expected a string, found the number 42 \(quote it/);
  t.equal(okInstance(inst({ id: `i${'x'.repeat(127)}` })).id.length, 128);
  t.equal(okInstance(inst({ id: 'ns:i_1.a-b' })).id, 'ns:i_1.a-b');
  // hostname
  at({ hostname: undefined }, 'hostname', /is required/);
  at({ hostname: 'web_1' }, 'hostname', /label "web_1"/);
  at({ hostname: '-web' }, 'hostname', /not an RFC 1123/);
  at({ hostname: 'web-' }, 'hostname', /not an RFC 1123/);
  at({ hostname: 'a..b' }, 'hostname', /an empty label/);
  at({ hostname: 'web.' }, 'hostname', /an empty label/);
  at({ hostname: `${'a'.repeat(64)}.b` }, 'hostname', /longer than 63/);
  at({ hostname: Array(64).fill('abc').join('.') }, 'hostname', /at most 253/);
  t.ok(okInstance(inst({ hostname: `${'a'.repeat(63)}.example.org` })));
  t.ok(okInstance(inst({ hostname: '1web.EXAMPLE.org' })));
  // ports
  at({ ports: undefined }, 'ports', /is required/);
  at({ ports: [] }, 'ports', /must not be empty/);
  at({ ports: port() }, 'ports', /expected an array, found an object/);
  at({ ports: [null] }, 'ports[0]', /expected an object, found null/);
  // interface / bridge
  atPort({ interface: undefined }, 'interface', /is required/);
  atPort({ interface: '' }, 'interface', /1 to 15/);
  atPort({ interface: 'a'.repeat(16) }, 'interface', /1 to 15/);
  atPort({ interface: '.' }, 'interface', /not a valid interface name/);
  atPort({ interface: '..' }, 'interface', /not a valid interface name/);
  for (const bad of ['a/b', 'eth0:1', 'tap 1', 'tap\t1']) atPort({ interface: bad }, 'interface', /must not contain/);
  atPort({ bridge: 'br/0' }, 'bridge', /must not contain/);
  t.ok(okInstance(inst({ ports: [port({ interface: 'a'.repeat(15), bridge: 'br-lan.10' })] })));
  // mac
  atPort({ mac: undefined }, 'mac', /is required/);
  for (const bad of ['52:54:00:0a:00', '52-54-00-0a-00-0b', '5254.000a.000b', '52:54:00:0a:00:0g', '525400:0a:00:0b', ' 52:54:00:0a:00:0b'])
    atPort({ mac: bad }, 'mac', /not a MAC address of the form xx:xx:xx:xx:xx:xx/);
  atPort({ mac: '00:00:00:00:00:00' }, 'mac', /all zeros/);
  atPort({ mac: '01:00:5e:00:00:01' }, 'mac', /multicast.*unicast/);
  atPort({ mac: 'FF:FF:FF:FF:FF:FF' }, 'mac', /ff:ff:ff:ff:ff:ff is a multicast/);
  t.ok(okInstance(inst({ ports: [port({ mac: '02:00:00:00:00:01' })] })), 'locally administered unicast is fine');
  // ipv4
  atPort({ ipv4: undefined }, 'ipv4', /is required/);
  for (const bad of [
    '10.0.0',
    '10.0.0.1.2',
    '10.0.0.256',
    '010.0.0.1',
    '10.0.0.01',
    '10.0.0.-1',
    '10.0.0.1/24',
    '',
    ' 10.0.0.1',
    '0x0a.0.0.1',
  ])
    atPort({ ipv4: bad }, 'ipv4', /not a dotted-quad IPv4 address/);
  atPort({ ipv4: '0.1.2.3' }, 'ipv4', /0\.0\.0\.0\/8/);
  atPort({ ipv4: '127.0.0.1' }, 'ipv4', /loopback/);
  atPort({ ipv4: '224.0.0.1' }, 'ipv4', /multicast/);
  atPort({ ipv4: '239.255.255.255' }, 'ipv4', /multicast/);
  atPort({ ipv4: '240.0.0.1' }, 'ipv4', /reserved or broadcast/);
  atPort({ ipv4: '255.255.255.255' }, 'ipv4', /broadcast/);
  atPort({ ipv4: '169.254.169.254' }, 'ipv4', /metadata listen address/);
  one(
    t,
    cfg({ listen: { ipv4: '169.254.1.1' }, instances: [inst({ ports: [port({ ipv4: '169.254.1.1' })] })] }),
    'instances[0].ports[0].ipv4',
    /listen address/,
    'the configured listen address',
  );
  t.ok(okConfig(cfg({ instances: [inst({ ports: [port({ ipv4: '169.254.169.254' })] })], listen: { ipv4: '169.254.1.1' } })));
  for (const good of ['1.0.0.0', '223.255.255.254', '169.254.0.5', '192.168.0.0', '10.0.0.255'])
    t.ok(okInstance(inst({ ports: [port({ ipv4: good })] })), good);
  // ipv6
  for (const bad of [
    'fd00::1::2',
    'fd00:1',
    'fe80::1%eth0',
    'g::1',
    '12345::',
    '1:2:3:4:5:6:7:8:9',
    ':1::',
    '::1:',
    'fd00::1.2.3',
    '1.2.3.4::',
  ])
    atPort({ ipv6: bad }, 'ipv6', /not an IPv6 address/);
  atPort({ ipv6: '::' }, 'ipv6', /unspecified/);
  atPort({ ipv6: '0:0:0:0:0:0:0:1' }, 'ipv6', /loopback/);
  atPort({ ipv6: 'FF02::1' }, 'ipv6', /ff02::1 is a multicast/);
  atPort({ ipv6: '::ffff:10.0.0.1' }, 'ipv6', /IPv4-mapped/);
  // network
  for (const bad of ['Tenant', '-a', '', 'a_b', 'a'.repeat(33)]) atPort({ network: bad }, 'network', /not a network name/);
  atPort({ network: 7 }, 'network', /expected a string, found the number 7/);
  t.ok(okInstance(inst({ ports: [port({ network: `0${'a-'.repeat(15)}b` })] })));
  atPort({ vlan: 3 }, 'vlan', /^unknown field$/);

  // optional names
  for (const f of ['project', 'region', 'zone', 'image', 'type']) {
    at({ [f]: '' }, f, /must not be empty/);
    at({ [f]: 'a\nb' }, f, /control characters or line breaks/);
    at({ [f]: 'x'.repeat(256) }, f, /at most 255/);
    at({ [f]: true }, f, /found the boolean true \(quote it/);
  }
  // ssh_keys
  at({ ssh_keys: 'ssh-ed25519 AAA' }, 'ssh_keys', /expected an array, found a string/);
  at({ ssh_keys: ['ok', ''] }, 'ssh_keys[1]', /must not be empty/);
  at({ ssh_keys: ['a\nb'] }, 'ssh_keys[0]', /single line/);
  at({ ssh_keys: ['x'.repeat(16 * 1024 + 1)] }, 'ssh_keys[0]', /at most 16384 bytes/);
  t.equal(okInstance(inst({ ssh_keys: ['é'.repeat(8 * 1024)] })).ssh_keys[0]!.length, 8192);
  at({ ssh_keys: ['é'.repeat(8 * 1024 + 1)] }, 'ssh_keys[0]', /bytes \(UTF-8\), found 16386/);
  // user_data
  t.equal(okInstance(inst({ user_data: 'x'.repeat(64 * 1024) })).user_data?.length, 65536);
  at({ user_data: 'x'.repeat(64 * 1024 + 1) }, 'user_data', /at most 65536 bytes/);
  at({ user_data: null }, 'user_data', /expected a string, found null/);
  at({ user_data: new Date(0) }, 'user_data', /expected a string, found a date/);
  at({ user_data: { a: 1 } }, 'user_data', /expected a string, found an object/);
  at({ user_data: 10n }, 'user_data', /expected a string, found bigint/);
  // tags
  at({ tags: ['a'] }, 'tags', /expected an object, found an array/);
  at({ tags: { n: 1 } }, 'tags.n', /expected a string, found the number 1/);
  at({ tags: { on: false } }, 'tags.on', /found the boolean false/);
  at({ tags: { v: 'x'.repeat(256) } }, 'tags.v', /at most 255/);
  at({ tags: { '': 'x' } }, 'tags[""]', /1 to 127/);
  at({ tags: { ['k'.repeat(128)]: 'x' } }, `tags.${'k'.repeat(128)}`, /1 to 127/);
  at({ tags: { 'a/b': 'x' } }, 'tags["a/b"]', /must not contain "\/"/);
  at({ tags: { '..': 'x' } }, 'tags[".."]', /must not contain/);
  t.same(okInstance(inst({ tags: { Name: 'web 1', 'a.b c': '', ['k'.repeat(127)]: 'v' } })).tags, {
    Name: 'web 1',
    'a.b c': '',
    ['k'.repeat(127)]: 'v',
  });
  const proto = okInstance(inst({ tags: JSON.parse('{"__proto__": "x"}') })).tags;
  t.equal(Object.getPrototypeOf(proto), Object.prototype, 'a "__proto__" tag does not change the prototype');
  t.equal(proto['__proto__'], 'x');
  // role
  const role = { name: 'web-role', access_key_id: 'AKIA', secret_access_key: 's', token: 't', expiration: '2030-01-01T00:00:00Z' };
  for (const f of Object.keys(role)) at({ role: { ...role, [f]: undefined } }, `role.${f}`, /is required/);
  at({ role: 'web-role' }, 'role', /expected an object, found a string/);
  at({ role: { ...role, name: 'web role' } }, 'role.name', /not a role name/);
  at({ role: { ...role, name: 'r'.repeat(65) } }, 'role.name', /not a role name/);
  t.ok(okInstance(inst({ role: { ...role, name: 'a_B1+=,.@-' } })));
  at({ role: { ...role, token: '' } }, 'role.token', /must not be empty/);
  at({ role: { ...role, expiration: 1893456000 } }, 'role.expiration', /expected a string \(ISO-8601 date-time\), found the number/);
  at({ role: { ...role, expiration: '2030-01-01' } }, 'role.expiration', /with a time zone/);
  at({ role: { ...role, expiration: '2030-01-01T00:00:00' } }, 'role.expiration', /with a time zone/);
  at({ role: { ...role, expiration: 'tomorrow' } }, 'role.expiration', /not an ISO-8601 date-time, e\.g\./);
  for (const bad of [
    '2030-02-30T00:00:00Z',
    '2030-13-01T00:00:00Z',
    '2030-00-01T00:00:00Z',
    '2030-01-01T24:00:00Z',
    '2030-01-01T00:60:00Z',
    '2030-01-01T00:00:60Z',
    '2030-01-01T00:00:00+24:00',
  ])
    at({ role: { ...role, expiration: bad } }, 'role.expiration', /out of range/);
  at({ role: { ...role, expiration: new Date(NaN) } }, 'role.expiration', /not a valid date-time/);
  at({ role: { ...role, extra: 1 } }, 'role.extra', /unknown field/);
  // backend, ec2
  at({ backend: 'nova' }, 'backend', /must be 'embedded' or 'upstream', found "nova"/);
  at({ ec2: { tokens: 'yes' } }, 'ec2.tokens', /must be 'optional' or 'required'/);
  at({ ec2: { hop_limit: 0 } }, 'ec2.hop_limit', /between 1 and 64, found 0/);
  at({ ec2: { hop_limit: 65 } }, 'ec2.hop_limit', /between 1 and 64/);
  at({ ec2: { hop_limit: 1.5 } }, 'ec2.hop_limit', /must be an integer, found 1.5/);
  at({ ec2: { hop_limit: '2' } }, 'ec2.hop_limit', /expected an integer, found a string \("2"\)/);
  at({ ec2: { hoplimit: 2 } }, 'ec2.hoplimit', /unknown field \(did you mean 'hop_limit'\?\)/);
});

t.test('top-level rules', async (t) => {
  one(t, cfg({ listen: { port: 0 } }), 'listen.port', /between 1 and 65535, found 0/);
  one(t, cfg({ listen: { port: 65536 } }), 'listen.port', /between 1 and 65535/);
  one(t, cfg({ listen: { port: '80' } }), 'listen.port', /expected an integer, found a string \("80"\)/);
  one(t, cfg({ listen: { ipv4: '169.254.169.0254' } }), 'listen.ipv4', /not a dotted-quad/);
  one(t, cfg({ listen: { ipv4: '0.0.0.0' } }), 'listen.ipv4', /cannot be a listen address/);
  one(t, cfg({ listen: { ipv4: '255.255.255.255' } }), 'listen.ipv4', /cannot be a listen address/);
  one(t, cfg({ listen: '169.254.169.254:80' }), 'listen', /expected an object, found a string/);
  one(t, cfg({ admin: { socket: 'run/admin.sock' } }), 'admin.socket', /not an absolute path/);
  one(t, cfg({ admin: { socket: `/${'s'.repeat(107)}` } }), 'admin.socket', /at most 107 bytes/);
  one(t, cfg({ state_dir: 'var/lib' }), 'state_dir', /not an absolute path/);
  one(t, cfg({ state_dir: '' }), 'state_dir', /must not be empty/);
  t.equal(okConfig(cfg({ state_dir: '/srv/lg', admin: { socket: '/tmp/a.sock' } })).state_dir, '/srv/lg');
  one(t, cfg({ ec2: { tokens: 'Required' } }), 'ec2.tokens', /must be 'optional' or 'required', found "Required"/);
  one(t, cfg({ ec2: { hop_limit: 100 } }), 'ec2.hop_limit', /between 1 and 64/);
  one(t, cfg({ limits: { max_header_bytes: 1023 } }), 'limits.max_header_bytes', /between 1024 and 65536/);
  one(t, cfg({ limits: { max_header_bytes: 65537 } }), 'limits.max_header_bytes', /between 1024 and 65536/);
  for (const f of ['header_timeout_ms', 'keepalive_timeout_ms', 'shutdown_grace_ms']) {
    one(t, cfg({ limits: { [f]: 0 } }), `limits.${f}`, /between 1 and/);
    one(t, cfg({ limits: { [f]: 1e9 } }), `limits.${f}`, /between 1 and/);
  }
  t.same(okConfig(cfg({ limits: { max_header_bytes: 1024, shutdown_grace_ms: 100 } })).limits, {
    max_header_bytes: 1024,
    header_timeout_ms: 5000,
    keepalive_timeout_ms: 5000,
    shutdown_grace_ms: 100,
    held_per_instance: 16,
    rate_per_s: { ec2: 0, gce: 0, openstack: 0, azure: 5 },
  });
  one(t, cfg({ default_backend: 'nova' }), 'default_backend', /must be 'embedded' or 'upstream'/);
  one(t, { listen: {} }, 'instances', /^is required$/);
  one(t, { instances: {} }, 'instances', /expected an array, found an object/);
  one(t, { instances: [null] }, 'instances[0]', /expected an object, found null/);

  // backends.upstream
  const up = { url: 'http://127.0.0.1:8775', shared_secret: 's3cret' };
  t.same(okConfig(cfg({ backends: { upstream: up } })).backends, {
    upstream: { ...up, cache_ttl_s: 15, timeout_ms: 2000, max_connections: 16, stale_if_error_s: 300 },
  });
  t.same(
    okConfig(cfg({ backends: { upstream: { ...up, url: 'https://nova.example:8775/base', cache_ttl_s: 0 } } })).backends.upstream
      ?.cache_ttl_s,
    0,
  );
  t.same(okConfig(cfg({ backends: {} })).backends, {});
  one(t, cfg({ backends: { upstream: { ...up, url: 'ftp://x' } } }), 'backends.upstream.url', /not an http:\/\/ or https:\/\/ URL/);
  one(t, cfg({ backends: { upstream: { ...up, url: 'localhost:8775' } } }), 'backends.upstream.url', /not an http/);
  one(t, cfg({ backends: { upstream: { ...up, url: 'http://' } } }), 'backends.upstream.url', /is not a URL/);
  one(t, cfg({ backends: { upstream: { ...up, url: undefined } } }), 'backends.upstream.url', /is required/);
  one(t, cfg({ backends: { upstream: { ...up, shared_secret: '' } } }), 'backends.upstream.shared_secret', /must not be empty/);
  one(t, cfg({ backends: { upstream: { ...up, shared_secret: undefined } } }), 'backends.upstream.shared_secret', /is required/);
  one(t, cfg({ backends: { upstream: { ...up, cache_ttl_s: 86401 } } }), 'backends.upstream.cache_ttl_s', /between 0 and 86400/);
  one(t, cfg({ backends: { nova: up } }), 'backends.nova', /unknown field/);

  // upstream needs backends.upstream
  one(t, cfg({ default_backend: 'upstream' }), 'default_backend', /is 'upstream' but backends.upstream is not configured/);
  one(t, cfg({ instances: [inst({ backend: 'upstream' })] }), 'instances[0].backend', /backends.upstream is not configured/);
  one(t, cfg({ instances: [inst({ backend: 'upstream' })], backends: {} }), 'instances[0].backend', /not configured/);
  t.equal(okConfig(cfg({ default_backend: 'upstream', backends: { upstream: up } })).default_backend, 'upstream');
  t.ok(okConfig(cfg({ instances: [inst({ backend: 'upstream' })], backends: { upstream: up } })));
  // a broken backends.upstream is reported once, where it is broken
  one(
    t,
    cfg({ default_backend: 'upstream', backends: { upstream: { url: 'http://x' } } }),
    'backends.upstream.shared_secret',
    /is required/,
  );
  one(t, cfg({ default_backend: 'upstream', backends: 'nova' }), 'backends', /expected an object/);
  // an instance with other problems still gets this one
  const ps = problemsOf(cfg({ instances: [inst({ backend: 'upstream', hostname: '' })] }));
  t.same(
    ps.map((p) => p.path),
    ['instances[0].hostname', 'instances[0].backend'],
  );

  // registry.etcd
  t.same(okConfig(cfg({ registry: { etcd: { endpoints: ['http://10.0.0.1:2379', 'https://10.0.0.2:2379'] } } })).registry, {
    etcd: { endpoints: ['http://10.0.0.1:2379', 'https://10.0.0.2:2379'], prefix: '/linkgate/' },
  });
  t.equal(okConfig(cfg({ registry: { etcd: { endpoints: ['http://e:2379'], prefix: '/' } } })).registry.etcd?.prefix, '/');
  t.equal(okConfig(cfg({ registry: { etcd: { endpoints: ['http://e:2379'], prefix: '/a/b/' } } })).registry.etcd?.prefix, '/a/b/');
  one(t, cfg({ registry: { etcd: { endpoints: [] } } }), 'registry.etcd.endpoints', /must not be empty/);
  one(t, cfg({ registry: { etcd: {} } }), 'registry.etcd.endpoints', /is required/);
  one(t, cfg({ registry: { etcd: { endpoints: 'http://e:2379' } } }), 'registry.etcd.endpoints', /expected an array/);
  one(t, cfg({ registry: { etcd: { endpoints: ['http://e:2379', 'e:2379'] } } }), 'registry.etcd.endpoints[1]', /not an http/);
  for (const bad of ['linkgate/', '/linkgate', '', 'x'])
    one(
      t,
      cfg({ registry: { etcd: { endpoints: ['http://e:2379'], prefix: bad } } }),
      'registry.etcd.prefix',
      /starting and ending with "\/"/,
    );
  one(t, cfg({ registry: { consul: {} } }), 'registry.consul', /unknown field/);
});

t.test('the root', async (t) => {
  one(t, null, '', /the configuration is empty/);
  one(t, undefined, '', /the configuration is empty/);
  one(t, [], '', /expected an object, found an array/);
  one(t, 'instances: []', '', /expected an object, found a string/);
  one(t, 3, '', /expected an object, found the number 3/);
  one(t, cfg({ instance: [] }), 'instance', /unknown field \(did you mean 'instances'\?\)/);
  one(t, cfg({ 'x.y': 1 }), '["x.y"]', /^unknown field$/);
  const r = validateInstance(inst({ hostname: undefined, foo: 1 }));
  t.same(
    r,
    {
      ok: false,
      problems: [
        { path: 'foo', message: 'unknown field' },
        { path: 'hostname', message: 'is required' },
      ],
    },
    'validateInstance paths have no prefix by default',
  );
  t.match(validateInstance(inst({ id: '' }), 'body'), { ok: false, problems: [{ path: 'body.id' }] });
  t.match(validateInstance(inst({ ports: [port({ ipv4: '10.9.9.9' })] }), '', { listenIpv4: '10.9.9.9' }), {
    ok: false,
    problems: [{ path: 'ports[0].ipv4', message: /listen address/ }],
  });
  t.match(validateInstance(7), { ok: false, problems: [{ path: '', message: 'expected an object, found the number 7' }] });
});

t.test('every problem is reported at once', async (t) => {
  const ps = problemsOf({
    listen: { port: 0, ipv4: 'x' },
    admin: { socket: 'rel' },
    limits: { max_header_bytes: 1, bogus: true },
    default_backend: 'upstream',
    surprise: 1,
    instances: [
      inst({ id: 'dup', hostname: 'bad_host', ports: [port({ mac: 'zz', ipv4: '300.1.1.1', ipv6: '::' })], tags: { a: 1, b: 2 } }),
      inst({ id: 'dup', ports: [port({ ipv4: '10.0.0.7' })] }),
      inst({ id: 'dup', ports: [port({ ipv4: '10.0.0.7', mac: '52:54:00:00:00:99', interface: 'lgtap9' })] }),
      inst({ id: 'ok-2', region: 5, ports: [{}] }),
    ],
  });
  t.same(
    ps.map((p) => p.path),
    [
      'surprise',
      'listen.ipv4',
      'listen.port',
      'admin.socket',
      'limits.bogus',
      'limits.max_header_bytes',
      'instances[0].hostname',
      'instances[0].ports[0].mac',
      'instances[0].ports[0].ipv4',
      'instances[0].ports[0].ipv6',
      'instances[0].tags.a',
      'instances[0].tags.b',
      'instances[3].ports[0].interface',
      'instances[3].ports[0].mac',
      'instances[3].ports[0].ipv4',
      'instances[3].region',
      'instances[2].id',
      'instances[2].ports[0].ipv4',
      'instances[1].id',
      'default_backend',
    ],
  );
  t.match(
    ps.find((p) => p.path === 'instances[1].id')?.message,
    /duplicate id "dup": instances\[0\] has it too/,
    'an invalid instance still collides by id',
  );
  t.match(ps.find((p) => p.path === 'instances[2].id')?.message, /duplicate id "dup": instances\[1\] has it too/);
});

t.test('checks across instances', async (t) => {
  // duplicate ids
  one(
    t,
    cfg({ instances: [inst(), inst({ ports: [port({ interface: 'lgtap2', mac: '52:54:00:00:00:02', ipv4: '10.0.0.2' })] })] }),
    'instances[1].id',
    /duplicate id "i-1": instances\[0\] has it too/,
  );
  // the same triple, in one instance or two, even across networks
  const ps = problemsOf(
    cfg({ instances: [inst({ ports: [port({ network: 'a' }), port({ network: 'b' })] }), inst({ id: 'i-2', ports: [port()] })] }),
  );
  t.same(
    ps.map((p) => p.path),
    ['instances[0].ports[1]', 'instances[1].ports[0]'],
  );
  t.match(ps[0]?.message, /the same \(interface, mac, ipv4\) as instances\[0\]\.ports\[0\]: lgtap1, 52:54:00:0a:00:0b, 10\.10\.0\.11/);
  // the same ipv4 in the default network
  const a = inst({ id: 'a', ports: [port({ interface: 'tapa', mac: '52:54:00:00:00:0a', ipv4: '10.0.0.5' })] });
  const b = inst({ id: 'b', ports: [port({ interface: 'tapb', mac: '52:54:00:00:00:0b', ipv4: '10.0.0.5' })] });
  one(
    t,
    cfg({ instances: [a, b] }),
    'instances[1].ports[0].ipv4',
    /10\.0\.0\.5 is already used by instances\[0\]\.ports\[0\] in the default network .*set `network`/,
  );
  // ... and in one named network
  const net = (i: Obj, network: string): Obj => ({ ...i, ports: [{ ...(i['ports'] as Obj[])[0], network }] });
  one(
    t,
    cfg({ instances: [net(a, 'tenant-a'), net(b, 'tenant-a')] }),
    'instances[1].ports[0].ipv4',
    /in network "tenant-a"; .*set `network`/,
  );
  // in different networks it is fine, and a named network is not the default one
  t.equal(okConfig(cfg({ instances: [net(a, 'tenant-a'), net(b, 'tenant-b')] })).instances.length, 2);
  t.ok(okConfig(cfg({ instances: [a, net(b, 'tenant-b')] })));
  // ipv6 too
  const v6 = (i: Obj, ipv6: string, network?: string): Obj => ({
    ...i,
    ports: [{ ...(i['ports'] as Obj[])[0], ipv4: `10.0.6.${String(i['id']).charCodeAt(0)}`, ipv6, ...(network && { network }) }],
  });
  one(
    t,
    cfg({ instances: [v6(a, 'fd00::5'), v6(b, 'FD00:0::05')] }),
    'instances[1].ports[0].ipv6',
    /fd00::5 is already used by instances\[0\]\.ports\[0\]/,
  );
  t.ok(okConfig(cfg({ instances: [v6(a, 'fd00::5', 'x'), v6(b, 'fd00::5', 'y')] })));
  // one interface + MAC in two instances
  const c = inst({ id: 'c', ports: [port({ interface: 'tapa', mac: '52:54:00:00:00:0a', ipv4: '10.0.0.6' })] });
  one(
    t,
    cfg({ instances: [a, c] }),
    'instances[1].ports[0].mac',
    /interface tapa with MAC 52:54:00:00:00:0a is already claimed by instances\[0\]\.ports\[0\]/,
  );
  // ... but a NIC may carry a second address within one instance
  t.ok(okConfig(cfg({ instances: [inst({ ports: [port(), port({ ipv4: '10.10.0.12' })] })] })));
  // same MAC on another interface is fine
  t.ok(
    okConfig(cfg({ instances: [a, inst({ id: 'd', ports: [port({ interface: 'tapd', mac: '52:54:00:00:00:0a', ipv4: '10.0.0.9' })] })] })),
  );
  // invalid instances are left out of the cross checks, with the indexes kept
  const ps2 = problemsOf(cfg({ instances: [inst({ hostname: '' }), a, b] }));
  t.same(
    ps2.map((p) => p.path),
    ['instances[0].hostname', 'instances[2].ports[0].ipv4'],
  );

  // checkInstanceSet directly, with its own path naming
  const x = okInstance(a);
  t.same(
    checkInstanceSet([x, x], (i) => (i === 0 ? 'stored' : 'body')).map((p) => p.path),
    ['body.id', 'body.ports[0]'],
  );
  t.same(
    checkInstanceSet([x, x]).map((p) => p.path),
    ['instances[1].id', 'instances[1].ports[0]'],
  );
  t.same(checkInstanceSet([]), []);
});

t.test('addresses and names (unit)', async (t) => {
  // IPv6: our RFC 5952 text against the WHATWG URL serializer (which compresses the same way).
  const cases = [
    '::',
    '::1',
    '1::',
    '1::2',
    'fd00:10::11',
    '2001:DB8:0:0:1:0:0:1',
    '2001:db8::1:0:0:1',
    '2001:0:0:1::1',
    '1:0:0:2:0:0:0:3',
    '1:2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7::',
    '::2:3:4:5:6:7:8',
    '1:0:2:0:3:0:4:0',
    '0:0:1:0:0:0:0:0',
    '::ffff:192.0.2.1',
    '64:ff9b::10.0.0.1',
    'fe80::0001',
    '0001:0002:0003:0004:0005:0006:0007:0008',
    '1:2:3:4:5:6:1.2.3.4',
    '::1.2.3.4',
    'abcd:EF01::',
  ];
  for (const s of cases) t.equal(normalizeIPv6(s), new URL(`http://[${s}]/`).hostname.slice(1, -1), s);
  t.equal(normalizeIPv6('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1', 'the first of two equal runs');
  t.equal(normalizeIPv6('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed');
  t.equal(formatIPv6([0, 0, 0, 0, 0, 0, 0, 0]), '::');
  t.same(parseIPv6('::ffff:1.2.3.4'), [0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
  for (const bad of [
    '',
    ':',
    ':::',
    '1:::2',
    '1::2::3',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7',
    '12345::1',
    '::1.2.3',
    '::01.2.3.4',
    '1.2.3.4',
    'fe80::1%1',
    ' ::1',
  ])
    t.equal(parseIPv6(bad), undefined, JSON.stringify(bad));
  t.equal(checkGuestIPv6('2001:DB8::1'), '2001:db8::1');
  t.equal(checkGuestIPv6('fe80::1'), 'fe80::1', 'link-local is allowed');
  t.same(checkGuestIPv6('ff00::'), { error: 'ff00:: is a multicast address' });

  t.equal(checkGuestIPv4('10.0.0.1'), '10.0.0.1');
  t.same(checkMac('52:54:00:0A:00:0B'), '52:54:00:0a:00:0b');
  t.equal(checkIfname('tap0'), 'tap0');
  t.match(checkIfname('é'.repeat(8)), { error: /1 to 15/ }, 'the limit is in bytes');
  t.equal(checkHostname('localhost'), 'localhost');
  t.match(checkHostname('x'.repeat(70) + '_'), { error: /"x{61}\.\.\." is not/ }, 'long values are shortened in messages');
  t.equal(checkDateTime('0001-01-01T00:00:00Z'), '0001-01-01T00:00:00Z', 'years below 100 are not shifted');
  t.match(checkDateTime('9999-12-31T23:00:00-02:00'), { error: /between years 0000 and 9999/ });
  t.equal(checkDateTime('2024-02-29T00:00:00Z'), '2024-02-29T00:00:00Z');
  t.match(checkDateTime('2023-02-29T00:00:00Z'), { error: /out of range/ });
});

t.test('loading files', async (t) => {
  const yaml =
    'instances:\n  - id: i-1\n    hostname: web-1\n    ports:\n      - { interface: tap1, mac: "52:54:00:00:00:01", ipv4: 10.0.0.1 }\n';
  const y = loadConfigFile(file('ok.yaml', yaml), H);
  t.match(y, { ok: true, config: { host: 'hv-test', instances: [{ id: 'i-1', ports: [{ ipv4: '10.0.0.1' }] }] } });
  t.match(loadConfigFile(file('ok.yml', yaml), H), { ok: true }, '.yml');
  t.match(loadConfigFile(file('ok.conf', yaml), H), { ok: true }, 'anything but .json is YAML');
  const json = JSON.stringify({ instances: [inst()] }, null, 2);
  t.match(loadConfigFile(file('ok.json', json), H), { ok: true, config: { instances: [{ id: 'i-1' }] } });
  t.match(loadConfigFile(file('ok2.JSON', `\uFEFF${json}`), H), { ok: true }, 'upper-case extension, byte-order mark');
  t.match(loadConfigFile(file('bom.yaml', `\uFEFF${yaml}`), H), { ok: true });

  // YAML 1.2: yes/no/on/off and bare dates stay strings; a number where a string belongs is a problem.
  const y12 = loadConfigFile(
    file(
      'y12.yaml',
      `${yaml}    tags: { enabled: on, when: 2030-01-01 }\n    role: { name: r, access_key_id: a, secret_access_key: s, token: t, expiration: 2030-01-01T00:00:00+01:00 }\n`,
    ),
    H,
  );
  t.match(y12, {
    ok: true,
    config: { instances: [{ tags: { enabled: 'on', when: '2030-01-01' }, role: { expiration: '2029-12-31T23:00:00Z' } }] },
  });
  const num = loadConfigFile(file('num.yaml', `${yaml}    tags: { count: 3 }\n`), H);
  t.match(num, { ok: false, problems: [{ path: 'instances[0].tags.count', message: /quote it/ }] });

  // validation problems come through
  const bad = loadConfigFile(file('bad.yaml', 'listen: { port: 0 }\ninstances: []\n'), H);
  t.same(bad, { ok: false, problems: [{ path: 'listen.port', message: 'must be between 1 and 65535, found 0' }] });

  // unreadable
  const missing = loadConfigFile(join(tmp, 'nope.yaml'));
  t.match(missing, {
    ok: false,
    problems: [{ path: '', message: /^cannot read the configuration file: ENOENT: no such file or directory/ }],
  });
  t.equal(missing.ok || missing.problems.length, 1);
  t.match(loadConfigFile(tmp), { ok: false, problems: [{ path: '', message: /EISDIR/ }] });

  // syntax errors carry line and column
  const syn = loadConfigFile(file('syn.yaml', 'instances:\n  - id: a\n    hostname: [web\n  ports: 1\n'));
  t.match(syn, { ok: false, problems: [{ path: '', message: /^YAML syntax error at line \d+, column \d+: / }] });
  const dup = loadConfigFile(file('dup.yaml', 'instances: []\nlisten: {}\ninstances: []\n'));
  t.same(dup, { ok: false, problems: [{ path: '', message: 'duplicate key at line 3, column 1: Map keys must be unique' }] });
  const multi = loadConfigFile(file('multi.yaml', 'instances: []\n---\ninstances: []\n'));
  t.match(multi, { ok: false, problems: [{ message: /line 2, column 1: .*multiple documents/ }] });
  t.match(loadConfigFile(file('empty.yaml', '# nothing\n')), { ok: false, problems: [{ path: '', message: /empty/ }] });
  const bomb = [
    'a: &a [x, x, x, x, x, x, x, x, x, x]',
    ...Array.from({ length: 9 }, (_, i) => `${'bcdefghij'[i]}: &${'bcdefghij'[i]} [${Array(10).fill(`*${'abcdefghij'[i]}`).join(', ')}]`),
  ].join('\n');
  t.match(loadConfigFile(file('bomb.yaml', `${bomb}\n`)), { ok: false, problems: [{ path: '', message: /^YAML error: .*alias/i }] });

  const jdup = loadConfigFile(file('dup.json', '{\n  "instances": [],\n  "instances": []\n}\n'));
  t.same(jdup, { ok: false, problems: [{ path: '', message: 'duplicate key at line 3, column 3: "instances"' }] });
  const nested = loadConfigFile(
    file('dup2.json', '{"instances": [{"id": "a", "tags": {"k": "1", "k": "2"}}, {"id": "b"}], "x": {"id": 1}}'),
  );
  t.match(
    nested,
    { ok: false, problems: [{ path: '', message: /^duplicate key at line 1, column 47: "k"$/ }] },
    'keys count per object, at any depth',
  );
  t.match(
    loadConfigFile(file('nodup.json', '{"a": {"id": 1}, "b": {"id": 2}, "c": [{"id": 3}, {"id": 4}]}')),
    { ok: false, problems: [{ path: 'a' }] },
    'the same key in sibling objects is no duplicate',
  );
  const jpos = loadConfigFile(file('pos.json', '{\n  "instances": []\n  "listen": {}\n}\n'));
  t.match(jpos, { ok: false, problems: [{ path: '', message: /^invalid JSON at line 3, column 3: / }] });
  const jnopos = loadConfigFile(file('nopos.json', '{\n  "instances": [],\n  "listen": }\n'));
  t.match(jnopos, { ok: false, problems: [{ path: '', message: /^invalid JSON at line 3, column 13: Unexpected token/ }] });
  t.notMatch(jnopos.ok ? '' : jnopos.problems[0]!.message, /\n/, 'one line');
  const jplain = loadConfigFile(file('plain.json', "{'instances': []}"));
  t.match(jplain, { ok: false, problems: [{ path: '', message: /^invalid JSON/ }] });
  t.match(loadConfigFile(file('empty.json', '')), { ok: false, problems: [{ path: '', message: /^invalid JSON at line 1, column 1: / }] });
  // the locator against a few more kinds of breakage: [text, line, column]
  const broken: [string, number, number][] = [
    ['{"a": [1, 2,]}', 1, 13],
    ['{"a": tru}', 1, 7],
    ['{"a": 01}', 1, 8],
    ['{"a" 1}', 1, 6],
    ['{"a": "x\ty"}', 1, 7],
    ['{"a": "\\q"}', 1, 7],
    ['[1 2]', 1, 4],
    ['{} {}', 1, 4],
    ['{"a": -}', 1, 7],
    ['{,}', 1, 2],
    ['[\n  "\\u12"\n]', 2, 3],
    ['{"a": {"b": [true, false, null, -1.5e3, "\\u00e9"]}, }', 1, 53],
    ['x', 1, 1],
  ];
  for (const [text, line, col] of broken)
    t.match(
      loadConfigFile(file('b.json', text)),
      { ok: false, problems: [{ message: new RegExp(`^invalid JSON at line ${line}, column ${col}: `) }] },
      text,
    );
  const deep = `${'['.repeat(200_000)}x`;
  t.match(loadConfigFile(file('deep.json', deep)), { ok: false, problems: [{ message: /^invalid JSON: / }] }, 'too deep to locate');
  t.match(loadConfigFile(file('null.json', 'null')), { ok: false, problems: [{ path: '', message: /empty/ }] });
});

t.test('formatProblems', async (t) => {
  t.equal(formatProblems([]), '');
  t.equal(
    formatProblems([
      { path: '', message: 'the configuration is empty' },
      { path: 'instances[0].ports[1].mac', message: 'is required' },
    ]),
    '(root): the configuration is empty\ninstances[0].ports[1].mac: is required',
  );
  const ps = problemsOf(cfg({ instances: [inst({ tags: { 'new\nline': 'x' }, hostname: 'a\nb' })] }));
  t.equal(formatProblems(ps).split('\n').length, ps.length, 'user text never breaks a line');
});

t.test('a JSON file is read instance by instance, with the same result as parsed whole', async (t) => {
  const full = {
    id: 'i-full',
    hostname: 'full-1',
    ports: [
      { interface: 'tapf', mac: '52:54:00:00:0F:01', ipv4: '10.0.9.1', ipv6: 'FD00::9:1', bridge: 'br0', network: 'n-1' },
      { interface: 'tapg', mac: '52:54:00:00:0f:02', ipv4: '10.0.9.2' },
    ],
    project: 'p',
    region: 'r-1',
    image: 'img [x] {y}',
    type: 't',
    ssh_keys: ['ssh-ed25519 AAAA "quoted" \\ back\u00e9slash'],
    user_data: '#cloud-config\n{"json": [1, 2, {"a": "]"}]}\n\u2603',
    tags: { 'k,1': 'v:1', 'k"2': '' },
    role: { name: 'r', access_key_id: 'a', secret_access_key: 's', token: 't', expiration: '2030-01-01T00:00:00+01:00' },
    backend: 'embedded',
    ec2: { tokens: 'required' },
    gce: { attributes: { a: 'b' }, scopes: ['s1'] },
    openstack: { vendor_data: { nested: { list: [1, 'two', { three: null }], e: 1.5e3 } } },
    azure: { vm_id: '0A1B2C3D-0000-4000-8000-000000000000' },
  };
  const raw = {
    listen: { port: 8080 },
    instances: [inst(), full, inst({ id: 'i-3', ports: [port({ interface: 'tap3', mac: '52:54:00:00:00:33', ipv4: '10.0.0.33' })] })],
    ec2: { hop_limit: 2 },
  };
  // Escapes in a key (the root's `instances` too), odd spacing, `instances` not first nor last.
  const text = JSON.stringify(raw, null, 1).replace('"instances"', '"\\u0069nstances"').replace(/\n/g, '\r\n  \t');
  const whole = validateConfig(JSON.parse(text), H);
  t.ok(whole.ok);
  t.same(loadConfigFile(file('split.json', text), H), whole);
  // The instance's fields in the model's order, absent ones absent.
  const got = loadConfigFile(file('split.json', text), H);
  if (!got.ok) throw new Error(formatProblems(got.problems));
  const keys = ['id', 'hostname', 'ports', 'project', 'region', 'zone', 'image', 'type', 'ssh_keys', 'user_data', 'tags'];
  t.same(Object.keys(got.config.instances[1]!), [...keys, 'role', 'backend', 'ec2', 'gce', 'openstack', 'azure']);
  t.same(
    Object.keys(got.config.instances[0]!),
    keys.filter((k) => k !== 'user_data'),
  );
  t.same(Object.keys(got.config.instances[1]!.ports[0]!), ['interface', 'mac', 'ipv4', 'ipv6', 'bridge', 'network']);
  t.same(got.config.instances[0]!.ssh_keys, []);
  t.same(got.config.instances[0]!.tags, {});
  t.equal(got.config.instances[0]!.zone, 'region-1a');

  // Problems: the same ones, in the same order, whichever way the file is read.
  const bad = JSON.stringify({
    instances: [
      inst({ hostname: '' }),
      inst({ ports: [port({ ipv4: '10.0.0.77', interface: 'tapz', mac: '52:54:00:00:00:77' })], backend: 'upstream' }),
      inst({ id: 'i-2', ports: [port({ mac: 'nope' })] }),
      inst({ id: 'i-2', ports: [port({ ipv4: '10.0.0.78', interface: 'tapy', mac: '52:54:00:00:00:78' })] }),
    ],
    default_backend: 'upstream',
  });
  const wholeBad = validateConfig(JSON.parse(bad), H);
  t.notOk(wholeBad.ok);
  t.same(loadConfigFile(file('split-bad.json', bad), H), wholeBad);
  t.ok(!wholeBad.ok && wholeBad.problems.some((p) => p.path === 'instances[3].id'), 'the invalid instance still names its id twice');

  // Files of another shape are parsed whole, as before.
  t.same(loadConfigFile(file('arr.json', '{"instances": {"a": 1}}'), H), validateConfig({ instances: { a: 1 } }, H));
  t.same(loadConfigFile(file('none.json', '{"listen": {}}'), H), validateConfig({ listen: {} }, H));
  t.same(loadConfigFile(file('empty-list.json', '{"instances": [ ]}'), H), validateConfig({ instances: [] }, H));
  t.match(loadConfigFile(file('top.json', '[]'), H), { ok: false });
  // validateConfig with the instances handed over one by one.
  const list = [inst(), full];
  t.same(
    validateConfig({ instances: [] }, { ...H, instances: { length: list.length, get: (i) => list[i] } }),
    validateConfig({ instances: list }, H),
  );
});

t.test('checks across instances: keys are compared field by field', async (t) => {
  // Fields that would run together if the claims were joined into one string.
  const a = okInstance(inst({ id: 'a', ports: [port({ interface: 'ta', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1' })] }));
  const b = okInstance(inst({ id: 'b', ports: [port({ interface: 'tb', mac: '52:54:00:00:00:01', ipv4: '10.0.0.2' })] }));
  const c = okInstance(inst({ id: 'c', ports: [port({ interface: 'ta', mac: '52:54:00:00:00:02', ipv4: '10.0.0.1', network: 'x' })] }));
  t.same(checkInstanceSet([a, b, c]), [], 'same MAC on another interface, same address in another network');
  const d = okInstance(inst({ id: 'd', ports: [port({ interface: 'ta', mac: '52:54:00:00:00:02', ipv4: '10.0.0.3', network: 'x' })] }));
  t.same(
    checkInstanceSet([a, b, c, d]).map((p) => p.path),
    ['instances[3].ports[0].mac'],
  );
  const e = okInstance(inst({ id: 'e', ports: [port({ interface: 'tb', mac: '52:54:00:00:00:01', ipv4: '10.0.0.2', network: 'y' })] }));
  t.match(checkInstanceSet([a, b, c, e]), [
    { path: 'instances[3].ports[0]', message: /the same \(interface, mac, ipv4\) as instances\[1\]\.ports\[0\]/ },
  ]);
});
