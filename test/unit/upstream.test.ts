// The upstream backend's pure parts: signature, headers, cache (TTL, coalescing, stale-if-error,
// per-instance keys, byte bound), circuit breaker; and the backend over undici's MockAgent (no network).
import t from 'tap';
import { createHmac } from 'node:crypto';
import { MockAgent } from 'undici';
import { Breaker } from '../../src/backends/upstream/breaker.js';
import { cacheKey, ResponseCache, type Fetched } from '../../src/backends/upstream/cache.js';
import { signInstanceId, upstreamHeaders, UpstreamBackend } from '../../src/backends/upstream/index.js';
import type { BackendRequest } from '../../src/backends/types.js';
import type { Instance } from '../../src/model/instance.js';
import type { Logger } from '../../src/model/log.js';

const log: Logger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
const instance = (id: string): Instance => ({
  id,
  project: 'p1',
  hostname: 'h',
  ports: [],
  region: 'r',
  zone: 'z',
  image: 'i',
  type: 't',
  ssh_keys: [],
  tags: {},
});
const ok = (body: string): Fetched => ({ res: { status: 200, headers: {}, body: Buffer.from(body) }, cacheable: true, failed: false });

t.test('signature and headers: nova/neutron style; guest identity headers never pass', async (t) => {
  t.equal(signInstanceId('s3cret', 'i-1'), createHmac('sha256', 's3cret').update('i-1').digest('hex'));
  const req: BackendRequest = {
    instance: instance('i-1'),
    guestIp: '10.0.0.5',
    method: 'GET',
    rawPath: '/x',
    query: '',
    headers: {
      'x-instance-id': 'i-2',
      'x-forwarded-for': '1.1.1.1',
      'x-tenant-id': 'evil',
      'x-instance-id-signature': 'f',
      accept: 'text/plain',
      cookie: 'c',
    },
  };
  t.same(upstreamHeaders(req, 's'), {
    accept: 'text/plain',
    'user-agent': 'linkgate',
    'x-instance-id': 'i-1',
    'x-tenant-id': 'p1',
    'x-instance-id-signature': signInstanceId('s', 'i-1'),
    'x-forwarded-for': '10.0.0.5',
  });
});

t.test('cache: hit within TTL, miss after; coalescing; per-instance; stale-if-error; bytes', async (t) => {
  let now = 0;
  const c = new ResponseCache({ maxBytes: 10_000, ttlMs: 1000, staleMs: 5000, clock: () => now });
  let calls = 0;
  const fetch =
    (body: string, delay = 0) =>
    async (): Promise<Fetched> => {
      calls++;
      await new Promise((r) => setTimeout(r, delay));
      return ok(body);
    };
  const k1 = cacheKey('i-1', ['GET', '/a']);
  t.equal((await c.get('i-1', k1, fetch('one'))).outcome, 'miss');
  t.equal((await c.get('i-1', k1, fetch('two'))).res.body.toString(), 'one');
  t.equal(calls, 1);
  await t.rejects(c.get('i-2', k1, fetch('x')), /does not start with the instance id/, 'a key of another instance is refused');
  const k2 = cacheKey('i-2', ['GET', '/a']);
  t.equal((await c.get('i-2', k2, fetch('other'))).res.body.toString(), 'other', 'other instance: its own entry');
  now = 1500;
  t.equal((await c.get('i-1', k1, fetch('three'))).res.body.toString(), 'three', 'expired: fetched again');
  // Coalescing.
  calls = 0;
  now = 3000;
  const all = await Promise.all(Array.from({ length: 100 }, () => c.get('i-1', k1, fetch('four', 20))));
  t.equal(calls, 1, '100 concurrent misses, one fetch');
  t.ok(all.every((r) => r.res.body.toString() === 'four'));
  t.equal(all.filter((r) => r.outcome === 'coalesced').length, 99);
  // Stale-if-error: thrown errors and failed answers.
  now = 4500;
  const failing = async (): Promise<Fetched> => Promise.reject(new Error('down'));
  const stale = await c.get('i-1', k1, failing);
  t.same([stale.outcome, stale.res.body.toString()], ['stale', 'four']);
  const fiveHundred = async (): Promise<Fetched> => ({
    res: { status: 500, headers: {}, body: Buffer.from('e') },
    cacheable: false,
    failed: true,
  });
  t.equal((await c.get('i-1', k1, fiveHundred)).res.body.toString(), 'four', '5xx: stale answer');
  now = 3000 + 1000 + 5000 + 1;
  await t.rejects(c.get('i-1', k1, failing), /down/, 'past the stale window: the error');
  t.equal((await c.get('i-1', k1, fiveHundred)).res.status, 500);
  // forget, sizes.
  await c.get('i-1', cacheKey('i-1', ['b']), fetch('b'));
  c.forget('i-1');
  t.equal(c.entries, 1, "only i-2's entry left");
  await c.get('i-3', cacheKey('i-3', ['big']), fetch('x'.repeat(20_000)));
  t.equal(c.counts.tooBig, 1, 'larger than the cache: not stored');
  t.ok(c.bytes <= 10_000);
  const none = new ResponseCache({ maxBytes: 1000, ttlMs: 0, staleMs: 0 });
  await none.get('i-1', cacheKey('i-1', []), fetch('z'));
  t.equal(none.entries, 0, 'TTL 0: nothing stored');
});

t.test('breaker: opens after N failures, one probe after the open time', async (t) => {
  let now = 0;
  const b = new Breaker({ failures: 3, openMs: 1000 }, () => now);
  t.ok(b.allow());
  b.failure();
  b.failure();
  t.equal(b.state, 'closed');
  b.failure();
  t.equal(b.state, 'open');
  t.notOk(b.allow());
  now = 1000;
  t.ok(b.allow(), 'probe');
  t.equal(b.state, 'half-open');
  t.notOk(b.allow(), 'one probe at a time');
  b.failure();
  t.equal(b.state, 'open');
  t.equal(b.opened, 2);
  now = 2500;
  t.ok(b.allow());
  b.success();
  t.equal(b.state, 'closed');
});

t.test('UpstreamBackend over a mock dispatcher', async (t) => {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get('http://nova:8775');
  const spec = {
    url: 'http://nova:8775/base/',
    shared_secret: 's',
    cache_ttl_s: 10,
    timeout_ms: 200,
    max_connections: 2,
    stale_if_error_s: 10,
  };
  const be = new UpstreamBackend(spec, { log, dispatcher: agent });
  const req = (path: string, method = 'GET'): BackendRequest => ({
    instance: instance('i-1'),
    guestIp: '10.0.0.5',
    method,
    rawPath: path,
    query: 'a=1',
    headers: {},
  });
  pool
    .intercept({
      path: '/base/ok?a=1',
      method: 'GET',
      headers: { 'x-instance-id-signature': signInstanceId('s', 'i-1'), 'x-forwarded-for': '10.0.0.5' },
    })
    .reply(200, 'hello', { headers: { 'content-type': 'text/plain', 'set-cookie': 'x' } });
  const r = await be.handle(req('/ok'));
  t.same([r.status, r.body.toString(), r.headers], [200, 'hello', { 'content-type': 'text/plain' }]);
  t.equal((await be.handle(req('/ok'))).body.toString(), 'hello', 'cached');
  pool.intercept({ path: '/base/big?a=1', method: 'GET' }).reply(200, 'x'.repeat(1024 * 1024 + 1));
  t.equal((await be.handle(req('/big'))).status, 502, 'too large: 502');
  pool.intercept({ path: '/base/pw?a=1', method: 'POST' }).reply(200, 'stored');
  t.equal((await be.handle({ ...req('/pw', 'POST'), body: Buffer.from('pw') })).body.toString(), 'stored', 'POST passes, uncached');
  pool.intercept({ path: '/base/slow?a=1', method: 'GET' }).reply(200, 'late').delay(1000);
  const t0 = Date.now();
  t.equal((await be.handle(req('/slow'))).status, 504, 'timeout: 504');
  t.ok(Date.now() - t0 < 800);
  pool.intercept({ path: '/base/err?a=1', method: 'GET' }).replyWithError(new Error('ECONNREFUSED'));
  t.equal((await be.handle(req('/err'))).status, 503, 'unreachable: 503');
  for (let i = 0; i < 5; i++) {
    pool.intercept({ path: `/base/e${i}?a=1`, method: 'GET' }).replyWithError(new Error('ECONNREFUSED'));
    await be.handle(req(`/e${i}`));
  }
  t.equal(be.breaker.state, 'open');
  t.match((await be.handle(req('/e9'))).body.toString(), /circuit open/);
  t.match(be.stats(), { breaker: 'open', cache: { hit: 1 } });
  be.forget('i-1');
  await be.close();
  await agent.close();
});
