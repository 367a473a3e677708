// HTTP behaviour seen from guests' kernels: IMDSv2 tokens and their hop limit, hostile input.
import t from 'tap';
import { withServedLab } from '../helpers/net.js';

const ID = '/latest/meta-data/instance-id';
const TTL = { 'X-aws-ec2-metadata-token-ttl-seconds': '300' };

t.test('IMDSv2: tokens are per instance; required mode; XFF refused', async (t) => {
  const { lab, config } = await withServedLab(t, {
    guests: 3,
    edit: (c) => {
      // Guest 3 requires tokens; the others keep the default (optional).
      const third = c.instances[2];
      if (third) third.ec2 = { tokens: 'required' };
    },
  });
  const tokA = await lab.curl(1, '/latest/api/token', { method: 'PUT', headers: TTL, responseHeaders: true });
  t.equal(tokA.status, 200);
  t.equal(tokA.headers?.['x-aws-ec2-metadata-token-ttl-seconds'], '300', 'TTL echoed');
  const withA = await lab.curl(1, ID, { headers: { 'X-aws-ec2-metadata-token': tokA.body } });
  t.equal(withA.body, config.instances[0]?.id, "A's token works for A");
  const stolen = await lab.curl(2, ID, { headers: { 'X-aws-ec2-metadata-token': tokA.body } });
  t.equal(stolen.status, 401, "A's token is rejected for B");
  t.notMatch(stolen.body, /i-/);

  t.equal((await lab.curl(3, ID)).status, 401, 'tokens required: no token, 401');
  const tok3 = await lab.curl(3, '/latest/api/token', { method: 'PUT', headers: TTL });
  t.equal((await lab.curl(3, ID, { headers: { 'X-aws-ec2-metadata-token': tok3.body } })).body, config.instances[2]?.id);

  t.equal(
    (await lab.curl(1, '/latest/api/token', { method: 'PUT', headers: { ...TTL, 'X-Forwarded-For': '1.2.3.4' } })).status,
    403,
    'XFF on token PUT: 403',
  );
  t.equal((await lab.curl(1, '/latest/api/token', { method: 'PUT' })).status, 400, 'missing TTL: 400');
  t.equal(
    (await lab.curl(1, '/latest/api/token', { method: 'PUT', headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '21601' } })).status,
    400,
  );
  t.equal((await lab.curl(1, ID, { method: 'POST', body: 'x' })).status, 405);
  const head = await lab.curl(1, ID, { method: 'HEAD', responseHeaders: true });
  t.equal(head.status, 200);
  t.equal(head.body, '', 'HEAD: no body');
  t.equal(head.headers?.['content-length'], String(config.instances[0]?.id.length), 'HEAD: GET length');
});

t.test('the token response leaves with IP TTL 1 (hop limit), later responses with the default', async (t) => {
  const { lab } = await withServedLab(t, { guests: 1 });
  // Capture in the guest: packets from the metadata address carrying data (PSH).
  const capture = lab.execRaw(
    1,
    ['timeout', '8', 'tcpdump', '-i', 'eth0', '-n', '-v', '-l', '-c', '2', 'src host 169.254.169.254 and tcp[13] & 8 != 0'],
    { timeoutMs: 15_000 },
  );
  await new Promise((r) => setTimeout(r, 1000));
  // One connection: the PUT, then a GET on the same connection (curl reuses it).
  const both = await lab.exec(1, [
    'curl',
    '-s',
    '-X',
    'PUT',
    '-H',
    'X-aws-ec2-metadata-token-ttl-seconds: 60',
    'http://169.254.169.254/latest/api/token',
    '--next',
    '-s',
    'http://169.254.169.254/latest/meta-data/hostname',
  ]);
  t.match(both, /guest-1$/);
  const out = (await capture).stdout;
  const ttls = [...out.matchAll(/ttl (\d+)/g)].map((m) => Number(m[1]));
  t.same(ttls, [1, 64], `token response TTL 1, then 64 again on the same connection (${out.trim().split('\n')[0] ?? ''})`);
});

t.test('malformed HTTP gets 400, oversized headers 431, other guests undisturbed', async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 2 });
  const raw = (payload: string): string => `
    const s = require('node:net').connect(80, '169.254.169.254', () => s.write(${JSON.stringify(payload)}));
    let b = ''; s.on('data', (d) => b += d); s.on('close', () => console.log(JSON.stringify(b)));
    s.on('error', (e) => console.log(JSON.stringify('error ' + e.code))); setTimeout(() => s.destroy(), 4000);`;
  const busy = (async () => {
    const bodies: string[] = [];
    for (let i = 0; i < 30; i++) bodies.push((await lab.curl(2, ID)).body);
    return bodies;
  })();
  const garbage = JSON.parse(await lab.exec(1, [process.execPath, '-e', raw('GARBAGE \x01\x02 nonsense\r\n\r\n')])) as string;
  t.match(garbage, /^HTTP\/1\.1 400 /, 'garbage: 400');
  const badVersion = JSON.parse(await lab.exec(1, [process.execPath, '-e', raw('GET / HTTP/9.9\r\n\r\n')])) as string;
  t.match(badVersion, /^HTTP\/1\.1 (400|505) /, 'bad version: refused');
  const huge = JSON.parse(
    await lab.exec(1, [process.execPath, '-e', raw(`GET ${ID} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`)]),
  ) as string;
  t.match(huge, /^HTTP\/1\.1 431 /, 'oversized headers: 431');
  t.notMatch(huge, /i-/, 'and no data');
  const badPath = await lab.curl(1, '/latest/meta-data/%E0%A4%A', {});
  t.equal(badPath.status, 400, 'undecodable path: 400');
  t.same(await busy, Array(30).fill(config.instances[1]?.id), 'guest 2 was served throughout');
  t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id, 'guest 1 itself is fine afterwards');
});
