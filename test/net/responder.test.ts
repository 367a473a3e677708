// The ARP/NDP responder: its per-frame decisions (no root), and the real thing on a veth pair
// between two fresh network namespaces (root): the kernel in A never answers (arp_ignore=8, no
// address), linkgate's responder running inside A does; hostile frames from B are counted.
import t from 'tap';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import {
  captureFilter,
  decide,
  neighborConfig,
  NeighborResponder,
  newResponderCounters,
  type NeighborConfig,
  type ResponderCounters,
} from '../../src/packet/responder.js';
import type { CapHandle, CapModule } from '../../src/packet/cap.js';
import { ARP_REPLY, parseArp, parseEthernet, parseIcmpv6, parseIpv6Packet } from '../../src/wire/index.js';
import { guestFrames, INJECT, KERNEL_NA, KERNEL_NS } from '../helpers/frames.js';

const isRoot = process.getuid?.() === 0;
const V4 = '169.254.169.254';
const V6 = 'fd00:ec2::254';
const HOST_MAC = '52:54:00:aa:bb:01';
const GUEST_MAC = '52:54:00:aa:bb:02';
const GUEST_V4 = '10.9.0.2';
const GUEST_V6 = 'fd00:ec2::2';

// ---- frame builders (guest -> host) --------------------------------------------------------

const { arpRequest, neighborSolicit, hostileFrames } = guestFrames({ mac: GUEST_MAC, ipv4: GUEST_V4, ipv6: GUEST_V6, v4: V4, v6: V6 });

// ---- decisions (no root) -------------------------------------------------------------------

const cfg = (extra: Partial<NeighborConfig> = {}): NeighborConfig => neighborConfig({ mac: HOST_MAC, ipv4: V4, ipv6: V6, ...extra });

t.test('decide: answers like the kernel, refuses the rest', async (t) => {
  const c = cfg();
  const nd = decide(KERNEL_NS, c);
  t.equal(nd.action, 'reply');
  if (nd.action === 'reply') t.same(nd.frame, KERNEL_NA, 'NA byte-identical to the Linux kernel answer');

  const arp = decide(arpRequest(), c);
  t.equal(arp.action, 'reply');
  if (arp.action === 'reply') {
    t.equal(arp.frame.length, 60, 'padded to the Ethernet minimum');
    const e = parseEthernet(arp.frame);
    t.ok(e.ok && e.value.dst === GUEST_MAC && e.value.src === HOST_MAC && e.value.vlans.length === 0);
    const a = e.ok ? parseArp(e.value.payload) : undefined;
    t.same(a?.ok ? a.value : undefined, {
      operation: ARP_REPLY,
      senderMac: HOST_MAC,
      senderIp: V4,
      targetMac: GUEST_MAC,
      targetIp: GUEST_V4,
    });
  }

  // DAD probe for the address: answered to all-nodes, not solicited.
  const dad = decide(neighborSolicit({ srcIp: '::', sll: null }), c);
  t.equal(dad.action, 'reply');
  if (dad.action === 'reply') {
    const e = parseEthernet(dad.frame);
    const ip = e.ok ? parseIpv6Packet(e.value.payload) : undefined;
    t.ok(e.ok && e.value.dst === '33:33:00:00:00:01');
    t.ok(ip?.ok && ip.value.dst === 'ff02::1' && ip.value.hopLimit === 255);
    const m = ip?.ok ? parseIcmpv6(ip.value.payload, ip.value.src, ip.value.dst) : undefined;
    t.ok(m?.ok && m.value.kind === 'na' && !m.value.solicited && m.value.override && m.value.targetLinkAddr === HOST_MAC);
  }

  t.match(decide(arpRequest({ targetIp: '10.9.0.1' }), c), { action: 'drop', reason: 'not-for-us' });
  t.match(decide(arpRequest({ src: HOST_MAC }), c), { action: 'drop', reason: 'own-frame' });
  t.match(decide(arpRequest({ src: 'ff:ff:ff:ff:ff:ff' }), c), { action: 'drop', reason: 'malformed' });
  t.match(decide(arpRequest(), c, true), { action: 'drop', reason: 'truncated' });
  t.match(decide(arpRequest().subarray(0, 30), c), { action: 'drop', reason: 'truncated' });
  t.match(decide(Buffer.alloc(0), c), { action: 'drop', reason: 'truncated' });
  t.match(decide(KERNEL_NS, neighborConfig({ mac: HOST_MAC, ipv4: V4 })), { action: 'drop', reason: 'not-for-us' });
  t.match(decide(arpRequest(), neighborConfig({ mac: HOST_MAC, ipv6: V6 })), { action: 'drop', reason: 'not-for-us' });
  for (const [what, frame, counter] of hostileFrames()) {
    const d = decide(frame, c);
    t.equal(d.action, 'drop', what);
    const reason = d.action === 'drop' ? d.reason : '';
    const expect = {
      malformed: 'malformed',
      bad_checksum: 'bad-checksum',
      truncated: 'truncated',
      oversized: 'oversized',
      vlan_tagged: 'vlan-tagged',
    }[counter as string];
    t.equal(reason, expect, `${what}: ${reason}`);
  }

  // Configured VLANs are answered with the same tag.
  const tagged = decide(arpRequest({ vlan: 42 }), cfg({ vlanIds: new Set([42]) }));
  t.equal(tagged.action, 'reply');
  if (tagged.action === 'reply') {
    const e = parseEthernet(tagged.frame);
    t.ok(e.ok && e.value.vlans[0]?.vid === 42);
  }
  t.match(decide(neighborSolicit({ vlan: 7 }), cfg({ vlanIds: new Set([42]) })), { action: 'drop', reason: 'vlan-tagged' });
  t.equal(decide(neighborSolicit({ vlan: 42 }), cfg({ vlanIds: new Set([42]) })).action, 'reply');

  // Only known guests.
  const seen: string[] = [];
  const only = cfg({ allowed: (m, ip) => (seen.push(`${m} ${ip}`), m === GUEST_MAC) });
  t.equal(decide(arpRequest(), only).action, 'reply');
  t.equal(decide(KERNEL_NS, only).action, 'reply');
  t.match(decide(arpRequest({ src: '52:54:00:99:99:99' }), only), { action: 'drop', reason: 'not-allowed' });
  t.same(seen.slice(0, 2), [`${GUEST_MAC} ${GUEST_V4}`, `${GUEST_MAC} ${GUEST_V6}`]);
  const throwing = cfg({
    allowed: () => {
      throw new Error('registry down');
    },
  });
  t.match(decide(arpRequest(), throwing), { action: 'drop', reason: 'not-allowed' }, 'a throwing filter refuses');

  t.throws(() => neighborConfig({ mac: 'nope', ipv4: V4 }));
  t.throws(() => neighborConfig({ mac: '01:00:5e:00:00:01', ipv4: V4 }));
  t.throws(() => neighborConfig({ mac: HOST_MAC }));
  t.throws(() => neighborConfig({ mac: HOST_MAC, ipv4: '1.2.3' }));
  t.throws(() => neighborConfig({ mac: HOST_MAC, ipv6: 'ff02::1' }));
  t.throws(() => neighborConfig({ mac: HOST_MAC, ipv4: V4, vlanIds: new Set([4095]) }));

  t.equal(
    captureFilter({ ipv4: V4, ipv6: V6 }),
    '((arp and arp[6:2] = 1 and arp[24:4] = 0xa9fea9fe) or (icmp6 and ip6[40] = 135 and ip6[48:4] = 0xfd000ec2 and ip6[52:4] = 0x00000000 and ip6[56:4] = 0x00000000 and ip6[60:4] = 0x00000254)) or (vlan and ((arp and arp[6:2] = 1 and arp[24:4] = 0xa9fea9fe) or (icmp6 and ip6[40] = 135 and ip6[48:4] = 0xfd000ec2 and ip6[52:4] = 0x00000000 and ip6[56:4] = 0x00000000 and ip6[60:4] = 0x00000254)))',
  );
});

t.test('NeighborResponder over a fake capture: counts, sends, rate-limits, never throws', async (t) => {
  const sent: Buffer[] = [];
  let opened: { device: string; filter: string } | undefined;
  let closed = 0;
  let failSend = false;
  class FakeCap implements CapHandle {
    open(device: string, filter: string): string {
      opened = { device, filter };
      return 'ETHERNET';
    }
    close(): void {
      closed++;
    }
    send(b: Buffer): void {
      if (failSend) throw new Error('ENETDOWN');
      sent.push(Buffer.from(b));
    }
    on(): this {
      return this;
    }
    removeAllListeners(): this {
      return this;
    }
  }
  const cap: CapModule = { Cap: FakeCap };
  const counters: Partial<ResponderCounters> = { malformed: 5 };
  const r = new NeighborResponder({ ifname: 'tap0', mac: HOST_MAC, ipv4: V4, ipv6: V6, cap, counters, maxRepliesPerSecond: 3 });
  t.equal(r.handleFrame(arpRequest()), undefined, 'nothing before start');
  r.start();
  r.start();
  t.ok(r.running);
  t.equal(opened?.device, 'tap0');
  t.equal(opened?.filter, captureFilter({ ipv4: V4, ipv6: V6 }));
  r.handleFrame(arpRequest());
  r.handleFrame(KERNEL_NS);
  failSend = true;
  r.handleFrame(KERNEL_NS);
  failSend = false;
  for (const [, f] of hostileFrames()) r.handleFrame(f);
  r.handleFrame(arpRequest({ targetIp: '10.0.0.1' }));
  r.handleFrame(arpRequest());
  t.equal(sent.length, 2, 'two answers, one send error, then the budget of 3 is spent');
  t.same(sent[1], KERNEL_NA);
  t.match(r.counters, {
    arp_requests: 2,
    arp_replies: 1,
    nd_solicits: 2,
    nd_adverts: 1,
    send_errors: 1,
    malformed: 5 + 9,
    oversized: 1,
    truncated: 1,
    bad_checksum: 1,
    vlan_tagged: 2,
    rate_limited: 1,
    ignored: 4,
  });
  t.equal(r.counters, counters, 'the caller’s counters object is updated in place');
  r.stop();
  r.stop();
  t.equal(closed, 1);
  t.notOk(r.running);
  t.same(Object.keys(newResponderCounters()).sort(), Object.keys(r.counters).sort());
  t.throws(() => new NeighborResponder({ ifname: '../etc', ipv4: V4 }));
  t.throws(() => new NeighborResponder({ ifname: 'x', ipv4: V4, maxRepliesPerSecond: 0 }));
  t.throws(() => new NeighborResponder({ ifname: 'x' }));
  class OtherLink extends FakeCap {
    override open(): string {
      return 'LINKTYPE_LINUX_SLL';
    }
  }
  t.throws(() => new NeighborResponder({ ifname: 'x', mac: HOST_MAC, ipv4: V4, cap: { Cap: OtherLink } }).start(), /not Ethernet/);
});

// ---- the real thing (root) -----------------------------------------------------------------

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DIST = `${ROOT}dist/packet/responder.js`;
const has = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function sh(argv: string[], allowFail = false): string {
  const [file, ...args] = argv;
  const r = spawnSync(file ?? 'false', args, { encoding: 'utf8', timeout: 20_000 });
  if (!allowFail && r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}: ${r.stderr}`);
  return `${r.stdout ?? ''}${allowFail ? (r.stderr ?? '') : ''}`;
}

// Runs inside namespace A: a responder on argv[3]; stdin "counters" -> one JSON line; "stop" -> exit.
const CHILD = `
const { NeighborResponder } = await import(process.argv[1]);
const opts = JSON.parse(process.argv[2]);
const r = new NeighborResponder(opts);
r.start();
const rl = (await import('node:readline')).createInterface({ input: process.stdin });
console.log('ready');
rl.on('line', (l) => {
  if (l === 'counters') console.log(JSON.stringify(r.counters));
  if (l === 'stop') { r.stop(); console.log('stopped'); process.exit(0); }
});
// The test runner went away: stop too.
rl.on('close', () => { r.stop(); process.exit(0); });
`;

t.test(
  'responder in a namespace answers ARP and NDP the kernel ignores',
  { skip: isRoot ? false : 'needs root', timeout: 90_000 },
  async (t) => {
    if (!existsSync(DIST)) sh(['bash', `${ROOT}scripts/bootstrap.sh`]);
    const id = randomBytes(3).toString('hex');
    const A = `lgr${id}-a`;
    const B = `lgr${id}-b`;
    const X = `lgr${id}x`;
    const Y = `lgr${id}y`;
    const children: ChildProcessWithoutNullStreams[] = [];
    t.teardown(() => {
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
          try {
            process.kill(c.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
      for (const ns of [A, B]) spawnSync('ip', ['netns', 'del', ns]);
    });
    sh(['ip', 'netns', 'add', A]);
    sh(['ip', 'netns', 'add', B]);
    sh(['ip', '-n', A, 'link', 'add', X, 'mtu', '9000', 'type', 'veth', 'peer', 'name', Y, 'mtu', '9000', 'netns', B]);
    sh(['ip', '-n', A, 'link', 'set', X, 'address', HOST_MAC, 'up']);
    sh(['ip', '-n', B, 'link', 'set', Y, 'address', GUEST_MAC, 'up']);
    sh(['ip', 'netns', 'exec', A, 'sysctl', '-qw', `net.ipv4.conf.${X}.arp_ignore=8`, `net.ipv6.conf.${X}.disable_ipv6=0`]);
    sh(['ip', '-n', B, 'addr', 'add', `${GUEST_V4}/24`, 'dev', Y]);
    sh(['ip', '-n', B, 'route', 'add', V4, 'dev', Y, 'scope', 'link']);
    sh(['ip', '-n', B, '-6', 'addr', 'add', `${GUEST_V6}/64`, 'dev', Y, 'nodad']);

    // Nothing answers before the responder runs (the kernel in A has no address and arp_ignore=8).
    if (has('arping')) {
      const before = sh(['ip', 'netns', 'exec', B, 'arping', '-c', '1', '-w', '1', '-I', Y, V4], true);
      t.match(before, /Received 0 response/, 'no ARP answer without the responder');
    }

    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        A,
        'env',
        '-u',
        'NODE_OPTIONS',
        'node',
        '--input-type=module',
        '-e',
        CHILD,
        DIST,
        JSON.stringify({ ifname: X, ipv4: V4, ipv6: V6 }),
      ],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
      },
    );
    children.push(child);
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const lines = createInterface({ input: child.stdout });
    const waiting: Array<(l: string) => void> = [];
    lines.on('line', (l) => waiting.shift()?.(l));
    const nextLine = (ms = 10_000): Promise<string> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`responder child: no output in ${ms} ms; stderr: ${stderr}`)), ms);
        waiting.push((l) => {
          clearTimeout(timer);
          resolve(l);
        });
      });
    const counters = async (): Promise<ResponderCounters> => {
      const p = nextLine();
      child.stdin.write('counters\n');
      return JSON.parse(await p) as ResponderCounters;
    };
    t.equal(await nextLine(), 'ready', 'responder started in A');

    // IPv4: arping gets A's MAC; the kernel's own ARP (after a ping) learns it too.
    if (has('arping')) {
      const out = sh(['ip', 'netns', 'exec', B, 'arping', '-c', '2', '-w', '3', '-I', Y, V4], true);
      t.match(out, new RegExp(`reply from ${V4.replace(/\./g, '\\.')} \\[${HOST_MAC}\\]`, 'i'), 'arping answered with A’s MAC');
      t.match(out, /Received 2 response/);
    }
    sh(['ip', 'netns', 'exec', B, 'ping', '-c', '1', '-W', '1', V4], true);
    t.match(
      sh(['ip', '-n', B, 'neigh', 'show', V4, 'dev', Y]),
      new RegExp(`lladdr ${HOST_MAC}`),
      'kernel neighbour entry for 169.254.169.254',
    );

    // IPv6: ndisc6 gets the target link-layer address; the kernel's own NDP learns it too.
    if (has('ndisc6')) {
      const out = sh(['ip', 'netns', 'exec', B, 'ndisc6', '-r', '2', '-w', '1000', V6, Y], true);
      t.match(out, new RegExp(`Target link-layer address: ${HOST_MAC}`, 'i'), 'ndisc6 answered with A’s MAC');
    }
    sh(['ip', 'netns', 'exec', B, 'ping', '-6', '-c', '1', '-W', '1', V6], true);
    t.match(
      sh(['ip', '-n', B, '-6', 'neigh', 'show', V6, 'dev', Y]),
      new RegExp(`lladdr ${HOST_MAC}`),
      'kernel neighbour entry for fd00:ec2::254',
    );

    const c1 = await counters();
    t.ok(c1.arp_replies >= 1 && c1.arp_replies === c1.arp_requests, `ARP answered (${c1.arp_requests}/${c1.arp_replies})`);
    t.ok(c1.nd_adverts >= 1 && c1.nd_adverts === c1.nd_solicits, `NDP answered (${c1.nd_solicits}/${c1.nd_adverts})`);

    // Hostile frames from B: no answer, no crash, each counted; plus junk the filter drops in the kernel.
    const hostile = hostileFrames();
    const junk = [
      Buffer.alloc(0),
      Buffer.alloc(14, 0xff),
      arpRequest().subarray(0, 30),
      neighborSolicit().subarray(0, 60),
      randomBytes(1000),
    ].filter((b) => b.length >= 14);
    const inj = spawnSync('ip', ['netns', 'exec', B, '/usr/bin/python3', '-c', INJECT, Y, HOST_MAC, '1.5'], {
      input: [...hostile.map(([, f]) => f), ...junk].map((f) => f.toString('hex')).join('\n') + '\n',
      encoding: 'utf8',
      timeout: 20_000,
    });
    t.equal(inj.status, 0, `injector ran: ${inj.stderr}`);
    t.equal(inj.stdout.trim(), '0', 'no reply to any hostile frame');
    const c2 = await counters();
    t.equal(c2.arp_replies, c1.arp_replies, 'no ARP reply sent');
    t.equal(c2.nd_adverts, c1.nd_adverts, 'no NA sent');
    const expected: Partial<Record<keyof ResponderCounters, number>> = {};
    for (const [, , k] of hostile) expected[k] = (expected[k] ?? 0) + 1;
    // Tagged frames reach the capture only if the kernel hands libpcap the tag (veth: it does).
    for (const [k, n] of Object.entries(expected) as Array<[keyof ResponderCounters, number]>) {
      if (k === 'malformed') continue; // the total is checked below (it includes the detailed kinds)
      t.equal(c2[k] - c1[k], n, `${k} +${n}`);
    }
    const malformedKinds = hostile.filter(([, , k]) => k !== 'vlan_tagged').length;
    t.equal(c2.malformed - c1.malformed, malformedKinds, `malformed +${malformedKinds}`);
    t.equal(c2.ignored - c1.ignored, expected.vlan_tagged ?? 0, 'tagged frames counted as ignored');

    // Still alive and answering.
    if (has('arping')) {
      t.match(sh(['ip', 'netns', 'exec', B, 'arping', '-c', '1', '-w', '2', '-I', Y, V4], true), /Received 1 response/, 'still answering');
    }
    const stopped = nextLine();
    child.stdin.write('stop\n');
    t.equal(await stopped, 'stopped');
    await new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : child.once('exit', () => resolve())));
    t.equal(child.exitCode, 0, `child exited cleanly; stderr: ${stderr}`);
  },
);
