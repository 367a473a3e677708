// The lab itself (root only): namespaces, veths, MACs, addresses, routes, teardown.
// No daemon here. Everything lives in namespaces named after a fresh random prefix.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { validateConfig } from '../../src/config/validate.js';
import { demoFull, demoLabOptions } from '../../src/lab/demo.js';
import { createLab, labDown, LAB_STATE_DIR, listLabs, METADATA_IPV6, parseCurlOutput, type Lab, type LabState } from '../../src/lab/lab.js';
import { listNetns, run } from '../../src/lab/netns.js';
import { eventually, hvState, isRoot, withCapture, withLab } from '../helpers/net.js';

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

t.test('parseCurlOutput', async (t) => {
  t.same(parseCurlOutput('hello\n200', false), { status: 200, body: 'hello' });
  t.same(parseCurlOutput('a\nb\n\n404', false), { status: 404, body: 'a\nb\n' });
  t.same(parseCurlOutput('\n000', false), { status: 0, body: '' });
  const p = parseCurlOutput(
    'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nx-a: 2\r\n\r\nbody\n200',
    true,
  );
  t.equal(p.status, 200);
  t.equal(p.body, 'body');
  t.same(p.headers, { 'content-type': 'text/plain', 'x-a': '1, 2' });
  t.match(p.rawHeaders, /^HTTP\/1.1 100 Continue\r\n\r\nHTTP\/1.1 200 OK/);
});

t.test('lab', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const lab = await withLab(t, { guests: 3 });
  const { prefix, hv } = lab;
  t.match(prefix, /^lg[0-9a-f]{4}$/);
  const mine = async (): Promise<string[]> => (await listNetns()).filter((n) => n === `${prefix}-hv` || n.startsWith(`${prefix}-g`)).sort();

  t.same(await mine(), [`${prefix}-g1`, `${prefix}-g2`, `${prefix}-g3`, hv]);
  t.ok(existsSync(`${LAB_STATE_DIR}/${prefix}.json`), 'state file written');
  t.ok(listLabs().some((s) => s.prefix === prefix));

  const macs = new Set<string>();
  for (const g of lab.guests()) {
    t.equal(g.ns, `${prefix}-g${g.index}`);
    t.equal(g.hostIf, `${prefix}t${g.index}`);
    t.equal(g.ipv4, `10.77.0.${10 + g.index}`);
    t.equal(g.mode, g.index % 2 === 1 ? 'onlink' : 'gateway');
    t.match(g.mac, new RegExp(`^52:54:00:${prefix.slice(2, 4)}:${prefix.slice(4, 6)}:0${g.index}$`));
    macs.add(g.mac);
    const link = JSON.parse(await run(['ip', '-n', g.ns, '-j', 'addr', 'show', 'dev', 'eth0'])) as Array<{
      address: string;
      operstate: string;
      addr_info: Array<{ family: string; local: string; prefixlen: number }>;
    }>;
    t.equal(link[0]?.address, g.mac, `guest ${g.index} MAC`);
    t.ok(link[0]?.addr_info.some((a) => a.family === 'inet' && a.local === g.ipv4 && a.prefixlen === 24));
    const host = JSON.parse(await run(['ip', '-n', hv, '-j', 'link', 'show', 'dev', g.hostIf])) as Array<{
      flags: string[];
    }>;
    t.ok(host[0]?.flags.includes('UP'), `${g.hostIf} up in hv`);
    const routes = await run(['ip', '-n', g.ns, 'route', 'show']);
    if (g.mode === 'onlink') {
      t.match(routes, /^169\.254\.169\.254 dev eth0 scope link/m);
      t.notMatch(routes, /default/);
    } else {
      t.match(routes, /^default via 10\.77\.0\.1 dev eth0 onlink/m);
      t.notMatch(routes, /169\.254\.169\.254/);
    }
    t.equal((await lab.exec(g.index, ['cat', '/proc/sys/net/ipv4/tcp_tw_reuse'])).trim(), '1');
  }
  t.equal(macs.size, 3, 'MACs unique');

  const st = await hvState(lab);
  t.same(st.tables, [], 'no nftables tables in hv');
  t.ok(st.loAddrs.includes('10.77.0.1/32'), 'gateway on hv lo');
  t.notOk(
    st.loAddrs.some((a) => a.startsWith('169.254.169.254')),
    'the lab does not add the metadata address',
  );
  t.notOk(
    st.routes.some((r) => /10\.77\.0\.1[1-9]/.test(r)),
    'no routes to guests in hv',
  );

  // The gateway is answered by the hv kernel over ARP on the guest's port (hv has no route back,
  // so the ping itself gets no reply). With rp_filter on in hv, ARP needs that route: skip then.
  const rpf = async (name: string): Promise<number> =>
    Number((await lab.hvExec(['cat', `/proc/sys/net/ipv4/conf/${name}/rp_filter`])).trim());
  const g2 = lab.guest(2);
  const rp = Math.max(await rpf('all'), await rpf(g2.hostIf));
  const [, noDaemon] = await Promise.all([
    t.test('ARP for the gateway', { skip: rp !== 0 ? `rp_filter=${rp} in hv` : false }, async (t) => {
      await lab.execRaw(2, ['ping', '-c1', '-W0.3', lab.gateway]);
      const neigh = JSON.parse(await lab.exec(2, ['ip', '-j', 'neigh', 'show', lab.gateway, 'dev', 'eth0'])) as Array<{
        lladdr?: string;
      }>;
      const hostMac = (
        JSON.parse(await run(['ip', '-n', hv, '-j', 'link', 'show', 'dev', g2.hostIf])) as Array<{
          address: string;
        }>
      )[0]?.address;
      t.equal(neigh[0]?.lladdr, hostMac, 'gateway resolves to the hv port MAC');
    }),
    lab.curl(1, '/latest/meta-data/', { timeoutS: 0.5 }),
  ]);
  t.equal(noDaemon.status, 0, 'no daemon: status 0');
  t.not(noDaemon.exitCode, 0);

  // curl plumbing against a throwaway server inside guest 3 (on its own loopback).
  const srv = spawn(
    'ip',
    [
      'netns',
      'exec',
      lab.guest(3).ns,
      process.execPath,
      '-e',
      `
    require('http').createServer((q, s) => {
      let b = ''; q.on('data', (d) => b += d);
      q.on('end', () => { s.setHeader('X-Method', q.method); s.setHeader('X-H', q.headers['x-h'] || '');
        s.statusCode = 201; s.end(q.url + '|' + b); });
    }).listen(8099, '127.0.0.1', () => console.log('up'));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => {
    if (srv.exitCode === null && srv.pid !== undefined) process.kill(srv.pid, 'SIGKILL');
  });
  await new Promise<void>((resolve) => srv.stdout.once('data', () => resolve()));
  const r = await lab.curl(3, '/a/../b?x=[1]', {
    baseUrl: 'http://127.0.0.1:8099',
    method: 'PUT',
    headers: { 'X-H': 'v' },
    body: 'payload',
    responseHeaders: true,
  });
  t.equal(r.status, 201);
  t.equal(r.body, '/a/../b?x=[1]|payload');
  t.equal(r.headers?.['x-method'], 'PUT');
  t.equal(r.headers?.['x-h'], 'v');
  t.equal(r.exitCode, 0);

  // A later-created port.
  const g4 = await lab.addGuest();
  t.equal(g4.index, 4);
  t.equal(g4.mode, 'gateway');
  t.ok((await mine()).includes(`${prefix}-g4`));
  const cfg = lab.config({ default_backend: 'embedded' });
  t.equal(cfg.instances.length, 4);
  t.equal(cfg['default_backend'], 'embedded');
  for (const inst of cfg.instances) t.match(inst.id, ID_RE);
  t.same(cfg.instances[3]?.ports, [{ interface: g4.hostIf, mac: g4.mac, ipv4: '10.77.0.14' }]);
  t.equal(cfg.admin.socket, `/tmp/${prefix}/admin.sock`);
  t.equal(cfg.state_dir, `/tmp/${prefix}/state`);
  const path = await lab.writeConfig(cfg);
  t.same(JSON.parse(readFileSync(path, 'utf8')), cfg);

  await lab.removeGuest(4);
  t.notOk((await mine()).includes(`${prefix}-g4`));
  t.equal(lab.config().instances.length, 3);

  await lab.down();
  t.same(await mine(), [], 'namespaces gone');
  t.notOk(existsSync(`/tmp/${prefix}`), 'lab dir gone');
  t.notOk(existsSync(`${LAB_STATE_DIR}/${prefix}.json`), 'state file gone');
  await lab.down(); // idempotent
});

t.test('labDown from the state file', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const lab = await createLab({ guests: 2 });
  t.teardown(() => lab.down());
  const res = await labDown(lab.prefix);
  t.same(
    res.map((r) => r.prefix),
    [lab.prefix],
  );
  t.same(
    (await listNetns()).filter((n) => n.startsWith(`${lab.prefix}-`)),
    [],
    'namespaces gone',
  );
  t.notOk(existsSync(`/tmp/${lab.prefix}`));
  t.same(await labDown(lab.prefix), [], 'second labDown finds nothing');
});

// ---- more kinds of guests: bridged, IPv6, tenant networks; captures -----------------------------

interface IpLink {
  ifname: string;
  address: string;
  master?: string;
  flags: string[];
  linkinfo?: { info_kind?: string };
  addr_info: Array<{ family: string; local: string; prefixlen: number; tentative?: boolean; nodad?: boolean }>;
}
const ipJson = async (ns: string, ...args: string[]): Promise<IpLink[]> =>
  JSON.parse(await run(['ip', '-n', ns, '-j', '-d', ...args])) as IpLink[];
const ownNs = async (lab: Lab): Promise<string[]> => (await listNetns()).filter((n) => n.startsWith(`${lab.prefix}-`)).sort();

t.test('demo: the bridged, IPv6 and tenant guests unless LINKGATE_DEMO_FULL=0', async (t) => {
  t.equal(demoFull({}), true);
  t.equal(demoFull({ LINKGATE_DEMO_FULL: '0' }), false);
  t.equal(demoFull({ LINKGATE_DEMO_FULL: '1' }), true);
  t.same(demoLabOptions(4, false), { guests: 4 });
  t.same(demoLabOptions(4, true), {
    guests: 8,
    bridged: [5],
    ipv6: [6],
    networks: ['tenant-a', 'tenant-b'],
    tenants: [7, 8],
    overlap: true,
  });
});

t.test('options are checked before anything is created', async (t) => {
  await t.rejects(createLab({ guests: 1, uplink: true }), /uplink needs the bridge/);
  await t.rejects(createLab({ guests: 2, networks: ['a'], overlap: true }), /overlap needs at least two networks/);
  await t.rejects(createLab({ guests: 2, networks: ['Bad_Name'] }), /network name/);
  await t.rejects(createLab({ guests: 2, tenants: [1, 2] }), /tenants needs networks/);
  await t.rejects(createLab({ guests: 2, bridged: [0] }), /bridged: guest indices/);
});

t.test('bridged guests and an uplink', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const lab = await withLab(t, { guests: 3, bridged: [2, 3], uplink: true });
  const { prefix, hv } = lab;
  const br = `${prefix}br`;
  t.equal(lab.bridge, br);
  t.same(lab.uplink, { ns: `${prefix}-up`, hostIf: `${prefix}up` });
  t.same(await ownNs(lab), [`${prefix}-g1`, `${prefix}-g2`, `${prefix}-g3`, hv, `${prefix}-up`].sort());
  const st = JSON.parse(readFileSync(`${LAB_STATE_DIR}/${prefix}.json`, 'utf8')) as LabState;
  t.ok(st.namespaces.includes(`${prefix}-up`), 'state file records the uplink namespace');
  t.equal(st.bridge, br);

  const [bridge] = await ipJson(hv, 'addr', 'show', 'dev', br);
  t.equal(bridge?.linkinfo?.info_kind, 'bridge');
  t.ok(bridge?.flags.includes('UP'), 'bridge up');
  t.same(bridge?.addr_info, [], 'no address at all on the bridge');
  for (const port of [lab.guest(2).hostIf, lab.guest(3).hostIf, `${prefix}up`]) {
    const [l] = await ipJson(hv, 'addr', 'show', 'dev', port);
    t.equal(l?.master, br, `${port} is a port of ${br}`);
    t.ok(l?.flags.includes('UP'), `${port} up`);
    t.same(l?.addr_info, [], `${port} has no address`);
  }
  t.equal((await ipJson(hv, 'link', 'show', 'dev', lab.guest(1).hostIf))[0]?.master, undefined, 'guest 1 is routed');
  const hs = await hvState(lab);
  t.ok(hs.loAddrs.includes('10.77.0.1/32'), 'gateway on hv lo (guest 1 is routed)');
  t.same(hs.bridgePorts, [`${prefix}t2`, `${prefix}t3`, `${prefix}up`].sort(), 'bridge ports');

  t.equal(lab.guest(1).kind, 'routed');
  for (const i of [2, 3]) {
    const g = lab.guest(i);
    t.equal(g.kind, 'bridged');
    t.equal(g.mode, 'onlink');
    t.equal(g.bridge, br);
    t.equal(g.ipv4, `10.77.0.${10 + i}`);
    const routes = await run(['ip', '-n', g.ns, 'route', 'show']);
    t.match(routes, /^169\.254\.169\.254 dev eth0 scope link/m, `guest ${i}: on-link metadata route`);
    t.notMatch(routes, /default/);
  }
  const ports = lab.config().instances.map((i) => i.ports[0]);
  t.same(ports[0], { interface: `${prefix}t1`, mac: lab.guest(1).mac, ipv4: '10.77.0.11' });
  t.equal(ports[1]?.bridge, br);
  t.equal(ports[2]?.bridge, br);

  // The capture is live: guest 2's ARP for an unused address is flooded to the uplink and seen there.
  const up = { ns: `${prefix}-up`, ifname: 'eth0' };
  const cap = await withCapture(t, lab, up, 'arp');
  await lab.execRaw(2, ['ping', '-c1', '-W0.2', '10.77.0.99']);
  await eventually(async () => Promise.resolve(cap.lines().some((l) => l.includes('10.77.0.99'))), 3000);
  const seen = await cap.stop();
  t.ok(
    seen.some((l) => l.includes(lab.guest(2).mac) && /Request who-has 10\.77\.0\.99 tell 10\.77\.0\.12/.test(l)),
    'ARP request seen on the uplink, with its source MAC',
  );
  t.same(await cap.stop(), seen, 'stop is idempotent');
  // A bounded capture of something that does not happen: nothing.
  t.same(await lab.capture(up, 'arp host 10.77.0.98', 0.2), []);
  await t.rejects(lab.startCapture({ ns: 'not-this-lab', ifname: 'eth0' }, 'arp'), /does not own/);
  await t.rejects(lab.startCapture({ ns: up.ns, ifname: 'nosuchif' }, 'arp'), /tcpdump/);

  await lab.hvSysctl('net.ipv4.conf.all.arp_ignore', 1);
  t.equal((await lab.hvExec(['cat', '/proc/sys/net/ipv4/conf/all/arp_ignore'])).trim(), '1');

  // The state file alone is enough to remove it all, uplink included.
  await labDown(prefix);
  t.same(await ownNs(lab), [], 'every namespace gone, uplink included');
});

t.test('every guest bridged: no gateway on hv lo', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const lab = await withLab(t, { guests: 1, bridge: true });
  t.equal(lab.guest(1).kind, 'bridged');
  t.equal(lab.uplink, undefined);
  const g2 = await lab.addGuest();
  t.equal(g2.kind, 'bridged', 'later guests are bridged too');
  t.equal(g2.mode, 'onlink');
  t.equal((await ipJson(lab.hv, 'link', 'show', 'dev', g2.hostIf))[0]?.master, lab.bridge);
  t.notOk((await hvState(lab)).loAddrs.includes('10.77.0.1/32'), 'no gateway on hv lo');
  await lab.down();
  t.same(await ownNs(lab), []);
});

t.test('IPv6 guests', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const lab = await withLab(t, { guests: 3, ipv6: [1, 2] });
  for (const i of [1, 2]) {
    const g = lab.guest(i);
    t.equal(g.ipv6, `fd00:77::${10 + i}`);
    const [eth0] = await ipJson(g.ns, 'addr', 'show', 'dev', 'eth0');
    const a6 = eth0?.addr_info.filter((a) => a.family === 'inet6') ?? [];
    const mine = a6.find((a) => a.local === g.ipv6);
    t.equal(mine?.prefixlen, 64, `guest ${i}: ${g.ipv6}/64`);
    t.ok(
      a6.every((a) => a.tentative !== true),
      `guest ${i}: no tentative address`,
    );
    t.match(await run(['ip', '-n', g.ns, '-6', 'route', 'show']), /^fd00:ec2::254 dev eth0/m, 'on-link IPv6 metadata route');
    t.equal((await lab.exec(i, ['cat', '/proc/sys/net/ipv6/conf/eth0/accept_dad'])).trim(), '0');
    t.equal(lab.config().instances[i - 1]?.ports[0]?.ipv6, g.ipv6);
  }
  t.equal(lab.guest(3).ipv6, undefined, 'guest 3 has no IPv6');
  t.notOk('ipv6' in (lab.config().instances[2]?.ports[0] ?? {}));
  t.notMatch(await run(['ip', '-n', lab.guest(3).ns, '-6', 'route', 'show']), /fd00/);

  const r = await lab.curl(1, '/latest/meta-data/', { ipv6: true, timeoutS: 0.3, extraArgs: ['-v'] });
  t.equal(r.status, 0, 'no daemon: no answer');
  t.match(r.error, `[${METADATA_IPV6}]`, 'asked the IPv6 metadata address');
});

t.test('tenant networks with overlapping addresses', { skip: isRoot ? false : 'needs root' }, async (t) => {
  const lab = await withLab(t, { guests: 4, networks: ['tenant-a', 'tenant-b'], overlap: true, ipv6: true });
  const [g1, g2, g3, g4] = [1, 2, 3, 4].map((i) => lab.guest(i));
  t.equal(g1?.ipv4, '10.77.0.11');
  t.equal(g2?.ipv4, '10.77.0.11', 'guest 2 has guest 1 IPv4');
  t.equal(g2?.mac, g1?.mac, 'and its MAC');
  t.equal(g2?.ipv6, 'fd00:77::11', 'and its IPv6');
  t.equal(g2?.hostIf, `${lab.prefix}t2`, 'on its own port');
  t.same(
    [g1, g2, g3, g4].map((g) => g?.network),
    ['tenant-a', 'tenant-b', 'tenant-a', 'tenant-b'],
  );
  t.equal(g3?.ipv4, '10.77.0.13');
  t.equal(g4?.ipv4, '10.77.0.14');
  t.not(g3?.mac, g1?.mac);
  for (const g of [g1, g2]) {
    const [eth0] = await ipJson(g?.ns ?? '', 'addr', 'show', 'dev', 'eth0');
    t.equal(eth0?.address, g1?.mac, `${g?.ns}: the shared MAC in the kernel`);
    t.ok(eth0?.addr_info.some((a) => a.local === '10.77.0.11'));
  }
  const cfg = lab.config();
  t.same(
    cfg.instances.map((i) => i.ports[0]?.network),
    ['tenant-a', 'tenant-b', 'tenant-a', 'tenant-b'],
  );
  const v = validateConfig(cfg);
  t.ok(v.ok, `the config validates: ${v.ok ? '' : JSON.stringify(v.problems)}`);

  // Another shape: only guests 2 and 3 on tenant networks, overlapping.
  const lab2 = await withLab(t, { guests: 3, networks: ['x', 'y'], tenants: [2, 3], overlap: true });
  t.same(
    lab2.guests().map((g) => [g.network, g.ipv4, g.mac.slice(-2)]),
    [
      [undefined, '10.77.0.11', '01'],
      ['x', '10.77.0.12', '02'],
      ['y', '10.77.0.12', '02'],
    ],
  );
});
