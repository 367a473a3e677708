// The lab itself (root only): namespaces, veths, MACs, addresses, routes, teardown.
// No daemon here. Everything lives in namespaces named after a fresh random prefix.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createLab, labDown, LAB_STATE_DIR, listLabs, parseCurlOutput } from '../../src/lab/lab.js';
import { listNetns, run } from '../../src/lab/netns.js';
import { hvState, isRoot, withLab } from '../helpers/net.js';

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
