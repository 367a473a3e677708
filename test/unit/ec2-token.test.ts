import t from 'tap';
import { ec2 } from '../../src/dialects/ec2/index.js';
import { MAX_TTL_S, mintToken, parseTtl, verifyToken } from '../../src/dialects/ec2/token.js';
import type { DialectContext, DialectResponse } from '../../src/dialects/types.js';
import type { Instance, TokenMode } from '../../src/model/instance.js';
import { bareInstance, dialectContext, dialectRequest, TOKEN_KEY as KEY } from '../helpers/fixtures.js';

const NOW = Date.UTC(2024, 4, 6, 7, 8, 9, 0);

function instance(id: string, ip: string): Instance {
  return bareInstance({ id, hostname: id, ports: [{ interface: `tap-${id}`, mac: '52:54:00:00:00:01', ipv4: ip }] });
}

const A = instance('i-aaaaaaaaaaaaaaaaa', '10.0.0.1');
const B = instance('i-bbbbbbbbbbbbbbbbb', '10.0.0.2');

function ctx(inst: Instance, tokens: TokenMode = 'optional', hop = 2): DialectContext {
  return dialectContext(inst, { ec2: { tokens, hop_limit: hop }, tokenKey: KEY, since: NOW });
}

function call(c: DialectContext, method: string, path: string, headers: Record<string, string> = {}, now = NOW): DialectResponse {
  return ec2(dialectRequest(path, { method, headers, now }), c);
}

function put(c: DialectContext, ttl: string | undefined, extra: Record<string, string> = {}, now = NOW): DialectResponse {
  const headers: Record<string, string> = { ...extra };
  if (ttl !== undefined) headers['x-aws-ec2-metadata-token-ttl-seconds'] = ttl;
  return call(c, 'PUT', '/latest/api/token', headers, now);
}

function read(c: DialectContext, token?: string, now = NOW, path = '/latest/meta-data/instance-id'): DialectResponse {
  return call(c, 'GET', path, token === undefined ? {} : { 'x-aws-ec2-metadata-token': token }, now);
}

t.test('PUT /latest/api/token mints a token', async (t) => {
  const r = put(ctx(A), '21600');
  t.equal(r.status, 200);
  t.equal(r.headers['Content-Type'], 'text/plain');
  t.equal(r.headers['X-aws-ec2-metadata-token-ttl-seconds'], '21600');
  t.equal(r.headers['Server'], 'EC2ws');
  t.equal(r.ipTtl, 2, 'ipTtl is the hop limit');
  t.match(r.body, /^[A-Za-z0-9_-]{55}$/);
  t.ok(verifyToken(KEY, A.id, r.body, NOW));
  t.equal(put(ctx(A, 'optional', 1), '60').ipTtl, 1);
  t.equal(read(ctx(A), r.body).status, 200);
  t.equal(read(ctx(A), r.body).body, A.id);
  t.equal(put(ctx(A), ' 0060 ').headers['X-aws-ec2-metadata-token-ttl-seconds'], '60', 'echoes the TTL granted');
});

t.test('TTL bounds', async (t) => {
  const cases: Array<[string | undefined, number]> = [
    ['0', 400],
    ['1', 200],
    ['21600', 200],
    ['21601', 400],
    ['abc', 400],
    [undefined, 400],
    ['', 400],
    ['-1', 400],
    ['1.5', 400],
    ['1e3', 400],
    ['60, 60', 400],
    ['99999999999999999999', 400],
  ];
  for (const [ttl, status] of cases) {
    const r = put(ctx(A), ttl);
    t.equal(r.status, status, String(ttl));
    t.equal(r.headers['Server'], 'EC2ws');
    if (status !== 200) t.equal(r.ipTtl, undefined);
  }
  t.equal(parseTtl('21600'), MAX_TTL_S);
  t.equal(parseTtl('0'), undefined);
});

t.test('X-Forwarded-For on the PUT → 403', async (t) => {
  t.equal(put(ctx(A), '60', { 'x-forwarded-for': '10.0.0.1' }).status, 403);
  t.equal(put(ctx(A), '60', { 'x-forwarded-for': '' }).status, 403, 'present, even empty');
  t.equal(put(ctx(A), undefined, { 'x-forwarded-for': '1.2.3.4' }).status, 403, 'before the TTL check');
});

t.test('a token is bound to its instance', async (t) => {
  const tokA = put(ctx(A), '21600').body;
  t.equal(read(ctx(A), tokA).status, 200);
  const r = read(ctx(B), tokA);
  t.equal(r.status, 401, 'A’s token refused for B');
  t.equal(r.headers['Server'], 'EC2ws');
  t.equal(read(ctx(B, 'required'), tokA).status, 401);
  t.notOk(verifyToken(KEY, B.id, tokA, NOW));
  t.notOk(verifyToken(Buffer.from('another key'), A.id, tokA, NOW), 'other key');
});

t.test('expiry', async (t) => {
  const tok = put(ctx(A), '60').body;
  t.equal(read(ctx(A), tok, NOW + 59_999).status, 200);
  t.equal(read(ctx(A), tok, NOW + 60_000).status, 401, 'expired at now + ttl');
  t.equal(read(ctx(A), tok, NOW + 3_600_000).status, 401);
  const one = put(ctx(A), '1').body;
  t.equal(read(ctx(A), one, NOW + 999).status, 200);
  t.equal(read(ctx(A), one, NOW + 1000).status, 401);
});

t.test('tokens required', async (t) => {
  const c = ctx(A, 'required');
  const r = read(c);
  t.equal(r.status, 401, 'no token → 401');
  t.equal(read(c, undefined, NOW, '/').status, 401, 'even at /');
  t.equal(read(c, undefined, NOW, '/latest/nope').status, 401, 'before the 404');
  t.equal(call(c, 'HEAD', '/latest/meta-data/').status, 401);
  const tok = put(c, '21600').body;
  t.equal(read(c, tok).status, 200, 'with token → 200');
  t.equal(read(c, tok).body, A.id);
  t.equal(read(c, tok, NOW, '/latest/nope').status, 404);
});

t.test('tokens optional', async (t) => {
  t.equal(read(ctx(A)).status, 200, 'IMDSv1 served');
  t.equal(read(ctx(A), 'garbage').status, 401, 'a bad token is refused even when optional');
  t.equal(read(ctx(A), '').status, 401, 'empty token');
  const tok = put(ctx(A), '60').body;
  t.equal(read(ctx(A), `${tok}, ${tok}`).status, 401, 'repeated header');
  t.equal(read(ctx(A), ` ${tok} `).status, 200, 'surrounding blanks are ignored');
});

t.test('verifyToken rejects tampering', async (t) => {
  const tok = mintToken(KEY, A.id, NOW, 60);
  t.ok(verifyToken(KEY, A.id, tok, NOW));
  const raw = Buffer.from(tok, 'base64url');
  const flip = (i: number): string => {
    const b = Buffer.from(raw);
    b[i] = (b[i] ?? 0) ^ 1;
    return b.toString('base64url');
  };
  t.notOk(verifyToken(KEY, A.id, flip(0), NOW), 'version byte');
  t.notOk(verifyToken(KEY, A.id, flip(8), NOW), 'expiry (extend by 1 ms)');
  t.notOk(verifyToken(KEY, A.id, flip(20), NOW), 'mac');
  t.notOk(verifyToken(KEY, A.id, tok.slice(1), NOW), 'short');
  t.notOk(verifyToken(KEY, A.id, `${tok}A`, NOW), 'long');
  t.notOk(verifyToken(KEY, A.id, tok.replace(/.$/, '+'), NOW), 'not base64url');
  t.not(mintToken(KEY, A.id, NOW, 60), mintToken(KEY, A.id, NOW + 1, 60), 'expiry is in the token');
  t.equal(mintToken(KEY, A.id, NOW, 60), tok, 'deterministic: pure function of its inputs');
});
