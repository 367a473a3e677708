// native-bindings: getMark / setIpTtl / getIpTtl on real sockets.
// The last subtest (root only) proves a nonzero SO_MARK is read back from an accepted socket:
// it runs in a throwaway network namespace and never touches the machine's own namespace.
import t, { type Test } from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type * as Native from '../../native-bindings/index.js';

const addonPath = fileURLToPath(new URL('../../native-bindings/index.cjs', import.meta.url));
const native = createRequire(import.meta.url)(addonPath) as typeof Native;

// net.Socket keeps its libuv handle in the private `_handle` field; on Unix its `fd` is the
// kernel file descriptor. Node has no public API for it (the daemon uses the same field).
function fdOf(sock: net.Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd');
  return fd;
}

// A connected pair on 127.0.0.1: [accepted (server side), client].
async function tcpPair(t: Test): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  const sock = await accepted;
  t.teardown(() => {
    client.destroy();
    sock.destroy();
    server.close();
  });
  return [sock, client];
}

// Any fd above RLIMIT_NOFILE is guaranteed not to be open.
const BAD_FD = 0x3fffffff;

t.test('getMark on an unmarked TCP socket is 0', async (t) => {
  const [sock, client] = await tcpPair(t);
  t.equal(native.getMark(fdOf(sock)), 0, 'accepted socket');
  t.equal(native.getMark(fdOf(client)), 0, 'client socket');
});

t.test('setIpTtl / getIpTtl round trip', async (t) => {
  const [sock] = await tcpPair(t);
  const fd = fdOf(sock);
  native.setIpTtl(fd, 1);
  t.equal(native.getIpTtl(fd), 1);
  native.setIpTtl(fd, 255);
  t.equal(native.getIpTtl(fd), 255);
});

t.test('syscall errors carry code and syscall', async (t) => {
  t.throws(() => native.getMark(BAD_FD), { code: 'EBADF', syscall: 'getsockopt' });
  t.throws(() => native.getIpTtl(BAD_FD), { code: 'EBADF', syscall: 'getsockopt' });
  // setIpTtl first asks the socket's family (SO_DOMAIN), which is where a bad fd fails.
  t.throws(() => native.setIpTtl(BAD_FD, 64), { code: 'EBADF', syscall: 'getsockopt' });
  const fileFd = openSync(fileURLToPath(import.meta.url), 'r');
  try {
    t.throws(() => native.getMark(fileFd), { code: 'ENOTSOCK', syscall: 'getsockopt' });
  } finally {
    closeSync(fileFd);
  }
});

t.test('IPv6 sockets: the hop limit, -1 meaning the route default', async (t) => {
  const server = net.createServer((s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as net.AddressInfo;
  const sock = net.connect(port, '::1');
  await new Promise((resolve) => sock.once('connect', resolve));
  t.teardown(() => sock.destroy());
  const fd = fdOf(sock);
  native.setIpTtl(fd, 1);
  t.equal(native.getIpTtl(fd), 1, 'IPV6_UNICAST_HOPS set');
  native.setIpTtl(fd, -1);
  t.equal(native.getIpTtl(fd), 64, 'back to the default');
});

t.test('listenTcp: reuse-port listeners, bound to a device or not', async (t) => {
  const fd = native.listenTcp('127.0.0.1', 45_911, '', 16);
  const fdLo = native.listenTcp('127.0.0.1', 45_911, 'lo', 16);
  const seen: string[] = [];
  const unbound = net.createServer((s) => {
    seen.push('unbound');
    s.end();
  });
  const bound = net.createServer((s) => {
    seen.push('bound');
    s.end();
  });
  await new Promise<void>((resolve) => unbound.listen({ fd }, resolve));
  await new Promise<void>((resolve) => bound.listen({ fd: fdLo }, resolve));
  t.teardown(() => {
    unbound.close();
    bound.close();
  });
  const c = net.connect(45_911, '127.0.0.1');
  await new Promise((resolve) => c.once('close', resolve).resume());
  t.same(seen, ['bound'], 'the listener bound to the ingress device wins');
  t.throws(() => native.listenTcp('127.0.0.1', 45_912, 'nosuchdev0', 4), { code: 'ENODEV', syscall: 'setsockopt' });
  t.throws(() => native.listenTcp('not-an-ip', 45_912, '', 4), TypeError);
  t.throws(() => native.listenTcp('127.0.0.1', 0, '', 4), RangeError);
  t.throws(() => native.listenTcp('127.0.0.1', 45_912, 'x'.repeat(16), 4), RangeError);
  const v6 = native.listenTcp('::1', 45_913, '', 4);
  t.ok(v6 > 2, 'IPv6 listener');
  const s6 = net.createServer().listen({ fd: v6 });
  t.teardown(() => s6.close());
});

t.test('bad arguments are rejected before any syscall', async (t) => {
  const [sock] = await tcpPair(t);
  const fd = fdOf(sock);
  for (const ttl of [0, 256, -1, -2, 1.5, Number.NaN]) {
    t.throws(() => native.setIpTtl(fd, ttl), RangeError, `ttl ${ttl}`);
  }
  t.throws(() => native.setIpTtl(fd, '64' as unknown as number), TypeError);
  t.throws(() => native.getMark(-1), RangeError);
  t.throws(() => (native.getMark as unknown as () => number)(), TypeError);
  t.equal(native.getIpTtl(fd) >= 1, true, 'ttl unchanged and valid');
});

function haveCmd(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

const rootReason =
  process.getuid?.() !== 0 ? 'needs root (network namespace, nftables)' : !haveCmd('ip') || !haveCmd('nft') ? 'needs ip and nft' : false;

t.test('reads a nonzero mark on an accepted socket (netns + nft + tcp_fwmark_accept)', { skip: rootReason }, async (t) => {
  const ns = `lgn${randomBytes(4).toString('hex')}`;
  const port = 8042;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  });
  const inNs = (cmd: string, args: string[], input?: string): string =>
    execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], {
      encoding: 'utf8',
      timeout: 20_000,
      ...(input !== undefined ? { input } : {}),
    });

  // Everything below happens inside the namespace only.
  inNs('ip', ['link', 'set', 'lo', 'up']);
  inNs('sysctl', ['-q', '-w', 'net.ipv4.tcp_fwmark_accept=1']);
  inNs(
    'nft',
    ['-f', '-'],
    [
      'table ip t {',
      '  chain c {',
      '    type filter hook output priority mangle;',
      `    tcp dport ${port} meta mark set 0x2a`,
      '  }',
      '}',
      '',
    ].join('\n'),
  );

  // A child Node in the namespace listens on 127.0.0.1, connects to itself (the SYN is marked
  // on output) and prints SO_MARK of the accepted socket.
  const child = `
    const net = require('node:net');
    const native = require(process.argv[1]);
    const port = Number(process.argv[2]);
    const server = net.createServer((sock) => {
      const out = { accepted: native.getMark(sock._handle.fd), client: native.getMark(client._handle.fd) };
      process.stdout.write(JSON.stringify(out) + '\\n');
      sock.destroy(); client.destroy(); server.close();
    });
    let client;
    server.listen(port, '127.0.0.1', () => { client = net.connect(port, '127.0.0.1'); });
    setTimeout(() => { console.error('timeout'); process.exit(3); }, 10000).unref();
  `;
  const out = inNs(process.execPath, ['-e', child, addonPath, String(port)]);
  const marks = JSON.parse(out.trim()) as { accepted: number; client: number };
  t.equal(marks.accepted, 42, 'accepted socket carries the SYN mark');
  t.equal(marks.client, 0, 'the client socket itself has no SO_MARK');
});
