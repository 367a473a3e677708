// The native serving loop (native-bindings/src/fastpath.cc) seen from guests' kernels: it answers
// repeated plain GETs from its cache, byte for byte what JavaScript answered, per guest; it gives
// keep-alive connections back and forth; a change empties the cache; a removed instance's
// connection gets nothing more; its header timeout; and `listen.fast_path: false` turns it off.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { adminGet, adminRequest, withServedLab } from '../helpers/net.js';
import type { Lab, LabInstance } from '../../src/lab/lab.js';
import type { NativeLoopStats } from '../../src/pipeline/fastpath.js';

const ID = '/latest/meta-data/instance-id';
const HOST = '/latest/meta-data/hostname';

async function fastStats(sock: string): Promise<NativeLoopStats | undefined> {
  const r = await adminGet(sock, '/v1/stats');
  return (r.body as { pipeline?: { fastPath?: NativeLoopStats } }).pipeline?.fastPath;
}

/** A lab whose guest 1 is registered through the admin API (so the API may change and remove it). */
async function apiServedLab(t: Test, guests: number) {
  let first: LabInstance | undefined;
  const served = await withServedLab(t, {
    guests,
    edit: (c) => {
      first = c.instances.shift();
    },
  });
  if (!first) throw new Error('no instance');
  const put = await adminRequest(served.config.admin.socket, 'PUT', `/v1/instances/${first.id}`, first);
  if (put.status !== 201) throw new Error(`PUT: ${put.status}`);
  return { ...served, first };
}

/**
 * Runs, in guest i, one TCP connection that sends each of `requests` in turn (waiting for each
 * answer, and `pauseMs` between them), printing every raw response; `idle` sends nothing and
 * prints what arrives before the server closes.
 */
async function raw(lab: Lab, i: number, requests: readonly string[], pauseMs = 0, timeoutMs = 8000): Promise<string[]> {
  const script = `
    const reqs = ${JSON.stringify(requests)};
    const out = []; let cur = ''; let n = 0; let pending;
    const s = require('node:net').connect(80, '169.254.169.254', () => next());
    function next() { if (n < reqs.length) s.write(reqs[n++]); }
    s.on('data', (d) => {
      cur += d.toString('latin1');
      const h = cur.indexOf('\\r\\n\\r\\n'); if (h < 0) return;
      const m = /content-length: (\\d+)/i.exec(cur.slice(0, h)); const len = m && !(reqs[n - 1] || '').startsWith('HEAD') ? Number(m[1]) : 0;
      if (cur.length < h + 4 + len) return;
      out.push(cur.slice(0, h + 4 + len)); cur = cur.slice(h + 4 + len);
      if (n < reqs.length) pending = setTimeout(next, ${pauseMs}); else s.end();
    });
    s.on('close', () => { clearTimeout(timer); clearTimeout(pending); if (cur) out.push(cur); console.log(JSON.stringify(out)); });
    s.on('error', (e) => { out.push('error ' + e.code); });
    const timer = setTimeout(() => s.destroy(), ${timeoutMs});`;
  return JSON.parse(await lab.exec(i, [process.execPath, '-e', script], { timeoutMs: timeoutMs + 5000 })) as string[];
}

const get = (path: string, extra = ''): string => `GET ${path} HTTP/1.1\r\nHost: 169.254.169.254\r\nUser-Agent: t\r\n${extra}\r\n`;
const withoutDate = (r: string | undefined): string => (r ?? '').replace(/\r\nDate: [^\r]*/, '');

t.test('repeated GETs are answered by the loop, byte for byte as JavaScript answered, per guest', async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 2 });
  const sock = config.admin.socket;
  const before = await fastStats(sock);
  t.ok(before, 'the loop reports in /v1/stats');
  // New connection per request, as cloud-init does. The guest's tree was pre-rendered at start
  // (a small host): the loop answers; an unknown header sends the same request to JavaScript.
  const first = await raw(lab, 1, [get(ID, 'X-Other: 1\r\nConnection: close\r\n')]);
  const second = await raw(lab, 1, [get(ID, 'Connection: close\r\n')]);
  const third = await raw(lab, 1, [get(ID, 'Connection: close\r\n')]);
  const after = await fastStats(sock);
  t.ok(after && before && after.answered - before.answered >= 2, `the loop answered the repeats (${JSON.stringify(after)})`);
  t.match(first[0], new RegExp(`^HTTP/1\\.1 200 OK\\r\\n[^]*\\r\\n\\r\\n${config.instances[0]?.id}$`));
  t.equal(withoutDate(second[0]), withoutDate(first[0]), 'the same bytes (but Date) from the loop as from JavaScript');
  t.equal(withoutDate(third[0]), withoutDate(first[0]));
  t.match(first[0], /\r\nConnection: close\r\n\r\n/);
  t.match(second[0], /^HTTP\/1\.1 200 OK\r\n[^]*\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n/);

  // A path never asked before is answered by the loop (pre-rendered), the same bytes JavaScript gives.
  const mid = await fastStats(sock);
  const fromLoop = await raw(lab, 1, [get('/latest/meta-data/placement/availability-zone', 'Connection: close\r\n')]);
  const fromJs = await raw(lab, 1, [get('/latest/meta-data/placement/availability-zone', 'X-Other: 1\r\nConnection: close\r\n')]);
  const end = await fastStats(sock);
  t.equal((end?.answered ?? 0) - (mid?.answered ?? 0), 1, 'a path never asked before: the loop answered it');
  t.equal(withoutDate(fromLoop[0]), withoutDate(fromJs[0]), 'as JavaScript would');
  t.match(fromLoop[0], /\r\n\r\n\S+$/);

  // OpenStack is not pre-rendered: its first answer (JavaScript's) renders the rest of /openstack/.
  const os0 = await fastStats(sock);
  t.match((await lab.curl(1, '/openstack/latest/meta_data.json')).body, /"uuid"/);
  const os1 = await fastStats(sock);
  t.match((await lab.curl(1, '/openstack/2018-08-27/network_data.json')).body, /"links"/);
  const os2 = await fastStats(sock);
  t.equal((os1?.handedOff ?? 0) - (os0?.handedOff ?? 0), 1, 'the first OpenStack request: JavaScript');
  t.equal((os2?.answered ?? 0) - (os1?.answered ?? 0), 1, 'another file of another version: the loop');

  // The other guest, same path: its own answer (the key is the connection's mark).
  for (let i = 0; i < 3; i++) t.equal((await lab.curl(2, ID)).body, config.instances[1]?.id, 'guest 2 gets its own id');
  t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id);

  // Headers the loop does not know, a token, HEAD: JavaScript answers (and the same as before).
  t.equal((await lab.curl(1, ID, { headers: { 'X-Forwarded-For': '1.2.3.4' } })).body, config.instances[0]?.id);
  const head = await raw(lab, 1, [`HEAD ${ID} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`]);
  t.match(head[0], /^HTTP\/1\.1 200 OK\r\n/);
  t.notMatch(head[0], /i-/, 'HEAD: no body');
  // GCE needs its header: the flags are part of the key.
  const gce = '/computeMetadata/v1/instance/hostname';
  t.equal((await lab.curl(1, gce)).status, 403, 'GCE without Metadata-Flavor: 403');
  for (let i = 0; i < 2; i++) t.equal((await lab.curl(1, gce, { headers: { 'Metadata-Flavor': 'Google' } })).body, 'guest-1');
  t.equal((await lab.curl(1, gce)).status, 403, 'still 403 once the flavoured answer is cached');
});

t.test('keep-alive: the connection moves to the loop after a cached answer; a change empties the cache', async (t) => {
  const { lab, config, first } = await apiServedLab(t, 1);
  const sock = config.admin.socket;
  const before = await fastStats(sock);
  // GCE is not pre-rendered: its first answer is JavaScript's, then the loop takes the connection.
  const gce = get('/computeMetadata/v1/instance/hostname', 'Metadata-Flavor: Google\r\n');
  const answers = await raw(lab, 1, [gce, gce, get(ID), get(ID), gce]);
  t.equal(answers.length, 5);
  t.same(
    answers.map((a) => a.slice(a.indexOf('\r\n\r\n') + 4)),
    ['guest-1', 'guest-1', first.id, first.id, 'guest-1'],
  );
  for (const a of answers) t.match(a, /\r\nConnection: keep-alive\r\nKeep-Alive: timeout=\d+\r\n\r\n/);
  const after = await fastStats(sock);
  t.ok(after && before && after.adopted > before.adopted, 'JavaScript gave the connection back to the loop');
  t.ok(after && before && after.answered - before.answered >= 2, 'the loop answered on it');

  // A change (new hostname) is seen at once, on a connection the loop holds, and on new ones.
  const id = first.id;
  const changed = raw(lab, 1, [get(HOST), get(HOST), get(HOST)], 1500);
  await new Promise((r) => setTimeout(r, 600));
  const patch = await adminRequest(sock, 'PATCH', `/v1/instances/${id}`, { hostname: 'renamed-1' });
  t.equal(patch.status, 200);
  const seen = (await changed).map((a) => a.slice(a.indexOf('\r\n\r\n') + 4));
  t.same(seen, ['guest-1', 'renamed-1', 'renamed-1'], 'the held connection sees the change');
  t.equal((await lab.curl(1, HOST)).body, 'renamed-1');
  t.equal((await lab.curl(1, HOST)).body, 'renamed-1');
});

t.test('IMDSv2: the loop answers reads with a token JavaScript minted, and nothing else', async (t) => {
  const { lab, config } = await withServedLab(t, {
    guests: 3,
    edit: (c) => {
      const third = c.instances[2];
      if (third) third.ec2 = { tokens: 'required' };
    },
  });
  const sock = config.admin.socket;
  const [id1, id2, id3] = config.instances.map((i) => i.id);
  const put = async (i: number, ttl = '60'): Promise<string> =>
    (await lab.curl(i, '/latest/api/token', { method: 'PUT', headers: { 'X-aws-ec2-metadata-token-ttl-seconds': ttl } })).body;
  const read = (i: number, path: string, token?: string) =>
    lab.curl(i, path, token === undefined ? {} : { headers: { 'X-aws-ec2-metadata-token': token } });

  const tok1 = await put(1);
  const before = await fastStats(sock);
  t.equal((await read(1, ID, tok1)).body, id1);
  t.equal((await read(1, HOST, tok1)).body, 'guest-1');
  const after = await fastStats(sock);
  t.equal((after?.answered ?? 0) - (before?.answered ?? 0), 2, 'reads with the minted token: the loop');
  t.equal(after?.handedOff, before?.handedOff, 'nothing handed over');

  const forged = Buffer.from(randomBytes(41)).toString('base64url');
  t.equal((await read(1, ID, forged)).status, 401, 'a forged token: 401');
  t.equal((await read(1, ID, `${tok1.slice(0, -2)}AA`)).status, 401, 'a tampered token: 401');
  t.equal((await read(2, ID, tok1)).status, 401, "guest 1's token on guest 2: 401");
  t.equal((await read(2, ID)).body, id2, 'guest 2 without a token: its own id');
  const short = await put(1, '1');
  t.equal((await read(1, ID, short)).body, id1);
  await new Promise((r) => setTimeout(r, 1300));
  t.equal((await read(1, ID, short)).status, 401, 'an expired token: 401, from the loop too');

  // Tokens required: nothing of this instance is ever answered without one.
  t.equal((await read(3, ID)).status, 401);
  const tok3 = await put(3);
  for (let i = 0; i < 3; i++) t.equal((await read(3, ID, tok3)).body, id3, 'with its token: its id');
  for (let i = 0; i < 3; i++) t.equal((await read(3, ID)).status, 401, 'still 401 without a token');
  t.equal((await read(3, HOST)).status, 401);
});

t.test('an instance registered at run time is answered by the loop from its first request', async (t) => {
  const { lab, config, first } = await apiServedLab(t, 1);
  const sock = config.admin.socket;
  await new Promise((r) => setTimeout(r, 300)); // the pre-rendering runs in the background
  const before = await fastStats(sock);
  t.equal((await lab.curl(1, ID)).body, first.id);
  t.equal((await lab.curl(1, '/2021-03-23/meta-data/local-hostname')).body, 'guest-1');
  const after = await fastStats(sock);
  t.equal((after?.answered ?? 0) - (before?.answered ?? 0), 2, 'both answered by the loop');
  t.equal(after?.handedOff, before?.handedOff, 'nothing handed to JavaScript');
  t.ok((after?.entries ?? 0) >= 90, `two trees pre-rendered (${after?.entries} answers)`);
});

t.test('a removed instance: its connection held by the loop gets nothing more', async (t) => {
  const { lab, config, first } = await apiServedLab(t, 2);
  const sock = config.admin.socket;
  const id = first.id;
  const held = raw(lab, 1, [get(ID), get(ID), get(ID)], 1500);
  await new Promise((r) => setTimeout(r, 700));
  t.equal((await adminRequest(sock, 'DELETE', `/v1/instances/${id}`)).status, 200);
  const answers = await held;
  t.match(answers[0], new RegExp(`${id}$`), 'served while registered');
  t.equal(answers.length, 1, 'then nothing more on that connection (its packets no longer pass the kernel check)');
  t.equal((await lab.curl(2, ID)).body, config.instances[0]?.id, 'the other guest is fine');
});

t.test('the loop closes a connection that sends nothing with 408, and one idle after an answer', async (t) => {
  const { lab, config } = await withServedLab(t, {
    guests: 1,
    edit: (c) => {
      c.limits = { header_timeout_ms: 400, keepalive_timeout_ms: 600 };
    },
  });
  const before = await fastStats(config.admin.socket);
  const silent = await raw(lab, 1, [], 0, 4000);
  t.match(silent[0], /^HTTP\/1\.1 408 Request Timeout\r\n/, 'nothing sent: 408');
  const after = await fastStats(config.admin.socket);
  t.ok(after && before && after.timedOut > before.timedOut, 'counted by the loop');
  // Prime the cache, then a kept-alive connection that goes quiet is closed after the timeout.
  await lab.curl(1, ID);
  const idle = await raw(lab, 1, [get(ID), get(ID)], 3000, 6000);
  t.equal(idle.length, 1, 'closed by the server while idle: the second request (after 3 s) found no connection');
});

t.test('listen.fast_path false: JavaScript answers everything', async (t) => {
  const { lab, config } = await withServedLab(t, {
    guests: 1,
    edit: (c) => {
      c.listen = { ...c.listen, fast_path: false } as typeof c.listen;
    },
  });
  for (let i = 0; i < 3; i++) t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id);
  t.equal(await fastStats(config.admin.socket), undefined, 'no loop');
});
