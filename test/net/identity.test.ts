// Identity on the kernel path: every guest gets its own instance, forgeries get nothing.
// Each test builds its own hypervisor namespace with guests wired to it; the daemon runs there.
import t from 'tap';
import { adminGet, eventually, hvState, withServedLab } from '../helpers/net.js';

const ID = '/latest/meta-data/instance-id';

t.test('each guest gets its own instance-id; forgeries are dropped in the kernel', async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 4 });
  for (const g of lab.guests()) {
    const r = await lab.curl(g.index, ID);
    t.equal(r.status, 200, `guest ${g.index} (${g.mode}) answered`);
    t.equal(r.body, config.instances[g.index - 1]?.id, `guest ${g.index} got its own id`);
    const ip = await lab.curl(g.index, '/latest/meta-data/local-ipv4');
    t.equal(ip.body, g.ipv4);
    const mac = await lab.curl(g.index, '/latest/meta-data/mac');
    t.equal(mac.body, g.mac);
  }

  const g1 = lab.guest(1);
  const g2 = lab.guest(2);

  // Guest 2 adds guest 1's IP (its own MAC) and asks from it.
  await lab.exec(2, ['ip', 'addr', 'add', `${g1.ipv4}/32`, 'dev', 'eth0']);
  const spoofIp = await lab.curl(2, ID, { timeoutS: 2, extraArgs: ['--interface', g1.ipv4] });
  t.equal(spoofIp.status, 0, "guest with another guest's IP gets no answer at all");
  t.notMatch(spoofIp.body, /i-/, 'and no id');
  await lab.exec(2, ['ip', 'addr', 'del', `${g1.ipv4}/32`, 'dev', 'eth0']);
  t.equal((await lab.curl(2, ID)).body, config.instances[1]?.id, 'guest 2 itself is still served');

  // Guest 3 takes guest 1's MAC and IP outright.
  await lab.exec(3, ['ip', 'link', 'set', 'eth0', 'address', g1.mac]);
  await lab.exec(3, ['ip', 'addr', 'flush', 'dev', 'eth0']);
  await lab.exec(3, ['ip', 'addr', 'add', `${g1.ipv4}/24`, 'dev', 'eth0']);
  await lab.exec(3, ['ip', 'route', 'replace', '169.254.169.254/32', 'dev', 'eth0']);
  const spoofBoth = await lab.curl(3, ID, { timeoutS: 2 });
  t.equal(spoofBoth.status, 0, "guest with another guest's MAC and IP gets no answer");

  // Guest 1 keeps being served correctly throughout.
  t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id);
  t.equal(g2.mode, 'gateway');

  const stats = (await adminGet(config.admin.socket, '/v1/stats')).body as { kernel: Record<string, number> };
  t.ok((stats.kernel.refused4 ?? 0) >= 2, `kernel counted the refused SYNs (${stats.kernel.refused4})`);
});

t.test('an unconfigured port is refused; a port created later is served within 2 s; a removed one is cleaned up', async (t) => {
  const { lab, config } = await withServedLab(t, {
    guests: 3,
    edit: (c, lab) => {
      // Guest 3 exists but is not configured. Guest 4 is configured but does not exist yet.
      c.instances.splice(2, 1);
      const g1 = lab.guest(1);
      const next = 4;
      c.instances.push({
        id: `i-${lab.prefix}-late`,
        hostname: 'late-guest',
        ports: [
          {
            interface: `${lab.prefix}t${next}`,
            mac: g1.mac.replace(/..$/, next.toString(16).padStart(2, '0')),
            ipv4: g1.ipv4.replace(/\d+$/, String(10 + next)),
          },
        ],
      });
    },
  });
  const unconfigured = await lab.curl(3, ID, { timeoutS: 2 });
  t.equal(unconfigured.status, 0, 'unconfigured port: no answer');

  const before = await hvState(lab);
  t.notOk(
    before.routes.some((r) => r.includes(`${lab.prefix}t4`)),
    'no route for an interface that does not exist',
  );

  const g4 = await lab.addGuest();
  t.equal(g4.hostIf, `${lab.prefix}t4`);
  t.equal(g4.mac, config.instances.find((i) => i.hostname === 'late-guest')?.ports[0]?.mac, 'the late port is the configured one');
  const took = await eventually(async () => (await lab.curl(4, ID, { timeoutS: 1 })).body === `i-${lab.prefix}-late`, 2000);
  t.ok(took <= 2000, `late port served after ${took} ms`);

  await lab.removeGuest(4);
  await eventually(async () => {
    const s = (await adminGet(config.admin.socket, '/v1/stats')).body as { served: number };
    return s.served === 2;
  }, 2000);
  const map = await lab.hvExec(['nft', 'list', 'map', 'inet', 'linkgate', 'ports4']);
  t.notMatch(map, new RegExp(`${lab.prefix}t4`), 'its map element is gone');
  t.match(map, new RegExp(`${lab.prefix}t1`), 'the others stay');
  const after = await hvState(lab);
  t.notOk(
    after.routes.some((r) => r.startsWith(g4.ipv4)),
    'its route is gone',
  );
  t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id, 'guest 1 unaffected');
});

t.test("16 concurrent guests x 200 requests: every answer is the sender's own id", async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 16 });
  // One Node process per guest, new TCP connection per request (as cloud-init and the SDKs do),
  // 4 in flight at a time; it prints how often it saw each body.
  const script = `
    const http = require('node:http');
    const counts = {};
    let left = 200, inflight = 0;
    function one() {
      if (left === 0) { if (inflight === 0) console.log(JSON.stringify(counts)); return; }
      left--; inflight++;
      const req = http.get({ host: '169.254.169.254', path: '${ID}', agent: false, timeout: 5000 }, (res) => {
        let b = ''; res.on('data', (d) => b += d); res.on('end', () => { const k = res.statusCode + ' ' + b; counts[k] = (counts[k] || 0) + 1; inflight--; one(); });
      });
      req.on('error', (e) => { counts['error ' + e.code] = (counts['error ' + e.code] || 0) + 1; inflight--; one(); });
      req.on('timeout', () => req.destroy(new Error('timeout')));
    }
    for (let i = 0; i < 4; i++) one();`;
  const results = await Promise.all(lab.guests().map((g) => lab.exec(g.index, [process.execPath, '-e', script], { timeoutMs: 60_000 })));
  results.forEach((out, i) => {
    const counts = JSON.parse(out) as Record<string, number>;
    t.same(counts, { [`200 ${config.instances[i]?.id}`]: 200 }, `guest ${i + 1}: 200 answers, all its own`);
  });
});
