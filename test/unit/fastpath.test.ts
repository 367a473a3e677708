// The native loop's request parser (native-bindings/src/fastpath.cc ParseRequest) against the lean
// path's (src/pipeline/lean.ts + fastPathFlags): the loop may only replay an answer for a request
// JavaScript would have taken the same way, so whatever the loop accepts, JavaScript accepts with
// the same target, header flags and close; and the loop takes every request JavaScript would
// cache. Plus the loop's own object on loopback: listeners, put, answers, handoff, adopt, stop.
import t from 'tap';
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type * as Native from '../../native-bindings/index.js';
import { parseLean } from '../../src/pipeline/lean.js';
import { FLAVOR_GOOGLE, METADATA_TRUE, TOKEN, fastPathFlags } from '../../src/pipeline/fastpath.js';

const addonPath = fileURLToPath(new URL('../../native-bindings/index.cjs', import.meta.url));
const native = createRequire(import.meta.url)(addonPath) as typeof Native;

const MAX = 8192;

interface Seen {
  target: string;
  flags: number;
  close: boolean;
  token: string | undefined;
}

function js(text: string): Seen | undefined {
  const r = parseLean(text, MAX);
  if (r === undefined) return undefined;
  const flags = fastPathFlags(r);
  return flags < 0 ? undefined : { target: r.target, flags, close: r.close, token: r.headers[TOKEN] };
}

function nat(text: string): Seen | undefined {
  const r = native.parseFastPath(Buffer.from(text, 'latin1'), MAX);
  if (r === undefined) return undefined;
  t.equal(r.length, Buffer.byteLength(text, 'latin1'), 'one request: its whole length');
  return { target: r.target, flags: r.flags, close: r.close, token: r.token };
}

/** A target the lean path cannot decode: never cached, so the loop's looser check is harmless. */
function undecodable(target: string): boolean {
  const path = target.split('?')[0] ?? '';
  try {
    return decodeURIComponent(path).includes('\0');
  } catch {
    return true;
  }
}

/** A listener on a free loopback port (listenTcp takes no port 0: a few random tries) given to `loop`; its port. */
function listenOn(loop: { addListener(fd: number): void }, backlog: number): number {
  for (let i = 0; i < 20; i++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    let fd: number;
    try {
      fd = native.listenTcp('127.0.0.1', port, '', backlog);
    } catch {
      continue;
    }
    loop.addListener(fd);
    return port;
  }
  throw new Error('no free loopback port');
}

t.test('examples', async (t) => {
  const base = 'GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n';
  t.same(nat(`${base}\r\n`), { target: '/latest/meta-data/', flags: 0, close: false, token: undefined });
  t.same(js(`${base}\r\n`), nat(`${base}\r\n`));
  t.same(nat(`${base}Connection: CLOSE\r\nUser-Agent: x\r\n\r\n`)?.close, true);
  t.same(nat(`${base}Metadata-Flavor: Google\r\n\r\n`)?.flags, FLAVOR_GOOGLE);
  t.same(nat(`${base}metadata:  True \r\n\r\n`)?.flags, METADATA_TRUE);
  t.equal(nat(`${base}Metadata-Flavor: google\r\n\r\n`), undefined, 'GCE checks the value exactly');
  t.equal(nat(`${base}X-aws-ec2-metadata-token:  abc \r\n\r\n`)?.token, 'abc', 'a token: taken, checked against the token table');
  t.equal(nat(`${base}X-aws-ec2-metadata-token: \r\n\r\n`), undefined, 'an empty token: JavaScript');
  t.equal(nat(`${base}Content-Length: 0\r\n\r\n`), undefined);
  t.equal(nat(`${base}Host: again\r\n\r\n`), undefined, 'a repeated header');
  t.equal(nat('GET / HTTP/1.1\r\nUser-Agent: x\r\n\r\n'), undefined, 'no Host');
  t.equal(nat(`HEAD / HTTP/1.1\r\nHost: x\r\n\r\n`), undefined);
  t.equal(nat(`GET / HTTP/1.0\r\nHost: x\r\n\r\n`), undefined);
  t.equal(nat(`GET / HTTP/1.1\r\nHost: x\r\n`), undefined, 'incomplete');
  t.equal(nat(`GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n`), undefined, 'bare CR');
  t.equal(nat(`GET / HTTP/1.1\r\nHost: \xe9\r\n\r\n`), undefined, 'not ASCII');
  t.equal(nat(`GET / HTTP/1.1\r\n Host: x\r\n\r\n`), undefined, 'folded');
  const two = `${base}\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n`;
  t.equal(native.parseFastPath(Buffer.from(two), MAX)?.length, base.length + 2, 'pipelined: the first request');
  t.equal(nat(`GET /${'a'.repeat(MAX)} HTTP/1.1\r\nHost: x\r\n\r\n`), undefined, 'bigger than max_header_bytes');
});

t.test('random requests: whatever the loop accepts, JavaScript accepts the same way, and back', async (t) => {
  let seed = 42;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)] as T;
  const methods = ['GET', 'GET', 'GET', 'HEAD', 'PUT', 'POST', 'get'];
  const targets = ['/', '/latest/meta-data/instance-id', '/a?b=c', '/%41b', '/%E0%A4%A', '/%00', '/x y', '/\x7f', '/é', '/a/../b', '*'];
  const versions = ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'http/1.1'];
  const names = [
    'Host',
    'host',
    'HOST',
    'User-Agent',
    'Accept',
    'Accept-Encoding',
    'Connection',
    'Metadata-Flavor',
    'Metadata',
    'X-Forwarded-For',
    'Content-Length',
    'Transfer-Encoding',
    'X-aws-ec2-metadata-token',
    'X-Other',
    'Bad Name',
    '',
  ];
  const values = [
    'x',
    '',
    ' padded ',
    '\tt',
    'Google',
    'google',
    'true',
    'TRUE',
    'yes',
    'close',
    'Close',
    'keep-alive',
    'upgrade',
    '0',
    '5',
    'a\rb',
    'a\nb',
    '\x01',
    'ünï',
  ];
  const seps = [':', ': ', ':  ', ' :'];
  let agreed = 0;
  let accepted = 0;
  for (let i = 0; i < 20000; i++) {
    let text = `${pick(methods)} ${pick(targets)} ${pick(versions)}\r\n`;
    const n = rnd(6);
    for (let h = 0; h < n; h++) text += `${pick(names)}${pick(seps)}${pick(values)}\r\n`;
    if (rnd(3) > 0) text += 'Host: 169.254.169.254\r\n';
    text += rnd(20) === 0 ? '\n' : '\r\n';
    const a = nat(text);
    const b = js(text);
    if (b !== undefined) {
      accepted++;
      if (a === undefined || a.target !== b.target || a.flags !== b.flags || a.close !== b.close || a.token !== b.token) {
        t.fail(`JavaScript would cache it, the loop disagrees: ${JSON.stringify(text)} ${JSON.stringify(a)} ${JSON.stringify(b)}`);
        continue;
      }
    } else if (a !== undefined && !undecodable(a.target)) {
      t.fail(`the loop accepts what JavaScript would not cache: ${JSON.stringify(text)} ${JSON.stringify(a)}`);
      continue;
    }
    agreed++;
  }
  t.equal(agreed, 20000, 'every request: the same decision');
  t.ok(accepted > 200, `enough accepted ones to mean something (${accepted})`);
});

t.test('the loop on loopback: answers what was put, hands over the rest, adopts, stops', async (t) => {
  const handed: Array<{ fd: number; mark: number; state: number; rest: string }> = [];
  const loop = new native.FastPath({
    handoff: (fd, mark, state, _out, rest) => {
      handed.push({ fd, mark, state, rest: rest?.toString('latin1') ?? '' });
      // Answer it ourselves, as the pipeline would, then close.
      const s = new net.Socket({ fd, readable: true, writable: true });
      s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    },
    maxHeaderBytes: MAX,
    headerTimeoutMs: 2000,
    keepAliveTimeoutMs: 2000,
    keepAliveSuffix: 'Connection: keep-alive\r\n\r\n',
    closeSuffix: 'Connection: close\r\n\r\n',
    timeoutResponse: 'HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    cacheBytes: 1 << 20,
  });
  t.teardown(() => loop.close());
  const port = listenOn(loop, 64);
  t.ok(loop.put(0, 0, '/hit', 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n', Buffer.from('hello')));
  await new Promise((r) => setTimeout(r, 50));

  const exchange = (payload: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.write(payload));
      let b = '';
      s.on('data', (d) => (b += d.toString('latin1')));
      s.on('close', () => resolve(b));
      s.on('error', reject);
      setTimeout(() => s.destroy(), 3000);
    });
  const hit = await exchange('GET /hit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.match(
    hit,
    /^HTTP\/1\.1 200 OK\r\nContent-Type: text\/plain\r\nContent-Length: 5\r\nDate: [^\r]+ GMT\r\nConnection: close\r\n\r\nhello$/,
  );
  const miss = await exchange('GET /miss HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.match(miss, /^HTTP\/1\.1 404 /, 'a miss: handed over');
  t.equal(handed.at(-1)?.rest, 'GET /miss HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'with the bytes read');
  t.equal(handed.at(-1)?.state, 0);
  // Pipelined: hit, hit, miss in one write: two answers from the loop, the third handed over.
  const piped = await exchange(`${'GET /hit HTTP/1.1\r\nHost: x\r\n\r\n'.repeat(2)}GET /other HTTP/1.1\r\nHost: x\r\n\r\n`);
  t.equal(piped.split('hello').length - 1, 2, 'two answers');
  t.match(piped, /404 Not Found/);
  t.equal(handed.at(-1)?.rest, 'GET /other HTTP/1.1\r\nHost: x\r\n\r\n');

  // change(): the cache is empty afterwards.
  loop.change([]);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(loop.stats().entries, 0);
  t.match(await exchange('GET /hit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 404 /, 'after change: a miss');
  const st = loop.stats();
  t.ok(st.accepted >= 4 && st.answered >= 3 && st.handedOff >= 3, JSON.stringify(st));
  t.equal(loop.put(0, 0, '/big', 'x', Buffer.alloc(200 << 10)), false, 'one answer over an eighth of the budget: refused');
  // Filling past the budget forgets the marks cached longest ago, whole.
  for (let m = 1; m <= 12; m++) for (let k = 0; k < 4; k++) t.ok(loop.put(m, 0, `/m${m}/${k}`, 'h', Buffer.alloc(30 << 10)));
  await new Promise((r) => setTimeout(r, 100));
  const full = loop.stats();
  t.ok(full.cacheBytes <= 1 << 20, `within the budget (${full.cacheBytes})`);
  t.ok(full.evicted >= 4, `oldest marks forgotten (${full.evicted})`);
  t.equal(full.entries % 4, 0, 'whole marks at a time');

  loop.stop();
  await new Promise((r) => setTimeout(r, 50));
  const refused = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
  });
  t.equal(refused, 'ECONNREFUSED', 'stopped: the listener is closed');
});

t.test('after close(): calls do nothing and throw nothing', async (t) => {
  const loop = new native.FastPath({
    handoff: () => undefined,
    maxHeaderBytes: MAX,
    headerTimeoutMs: 1000,
    keepAliveTimeoutMs: 1000,
    keepAliveSuffix: '\r\n',
    closeSuffix: '\r\n',
    timeoutResponse: '',
    cacheBytes: 1024,
  });
  loop.close();
  loop.close();
  t.equal(loop.put(1, 0, '/', 'x', Buffer.from('y')), false);
  t.equal(loop.adopt(0, 1), false);
  t.doesNotThrow(() => loop.change([1], [2]));
  t.doesNotThrow(() => loop.stop());
});

t.test('a flood of misses: accepting pauses while 1,024 handoffs wait; all are served in the end', async (t) => {
  let answered = 0;
  const loop = new native.FastPath({
    handoff: (fd) => {
      const s = new net.Socket({ fd, readable: true, writable: true });
      s.on('error', () => undefined);
      s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n', () => answered++);
    },
    maxHeaderBytes: MAX,
    headerTimeoutMs: 30000,
    keepAliveTimeoutMs: 30000,
    keepAliveSuffix: '\r\n',
    closeSuffix: '\r\n',
    timeoutResponse: '',
    cacheBytes: 1 << 20,
  });
  t.teardown(() => loop.close());
  const port = listenOn(loop, 4096);
  const N = 1500;
  // The clients live in another process: this one blocks its event loop, so nothing is taken.
  const child = spawn(
    process.execPath,
    [
      '-e',
      `let done = 0, ok = 0; const net = require('node:net');
       for (let i = 0; i < ${N}; i++) {
         const s = net.connect(${port}, '127.0.0.1', () => s.write('GET /miss HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'));
         let b = ''; s.on('data', (d) => (b += d)); s.on('error', () => {});
         s.on('close', () => { if (b.startsWith('HTTP/1.1 404')) ok++; if (++done === ${N}) { console.log(ok); process.exit(0); } });
       }
       setTimeout(() => { console.log('timeout ' + ok); process.exit(1); }, 20000);`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  // JavaScript busy (up to 10 s) until the loop has handed over more than it may have waiting.
  const until = Date.now() + 10_000;
  while (Date.now() < until && loop.stats().handedOff < 1024) {
    /* handoffs pile up in the loop's queue */
  }
  const piled = loop.stats();
  t.ok(piled.handedOff >= 1024 && piled.handedOff < N, `${piled.handedOff} handoffs waiting while JavaScript was busy`);
  await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => child.once('exit', r));
  t.equal(out.trim(), String(N), 'every connection answered in the end');
  const st = loop.stats();
  t.ok(st.acceptPauses >= 1, `accepting paused (${st.acceptPauses} times)`);
  t.ok(answered >= N, 'each by JavaScript');
});
