// Every way a guest is wired: bridge ports, ARP/NDP on the ports, IPv6, overlapping tenant IPs.
import t from 'tap';
import { adminGet, hvState, withCapture, withServedLab } from '../helpers/net.js';
import { guestFrames, INJECT } from '../helpers/frames.js';

const ID = '/latest/meta-data/instance-id';

t.test('bridged guests: own ids, neighbour spoof refused, nothing reaches other ports or the uplink', async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 3, bridge: true, uplink: true });
  const uplink = lab.uplink;
  if (!uplink) throw new Error('lab without uplink');
  // Watch the uplink and guest 3's port for anything about the metadata address.
  const filter = 'arp or host 169.254.169.254 or icmp6 or host fd00:ec2::254';
  const onUplink = await withCapture(t, lab, { ns: uplink.ns, ifname: 'eth0' }, filter);
  const onPort3 = await withCapture(
    t,
    lab,
    { ns: lab.hv, ifname: lab.guest(3).hostIf },
    `(${filter}) and not ether host ${lab.guest(3).mac}`,
  );

  for (const i of [1, 2]) {
    const r = await lab.curl(i, ID);
    t.equal(r.body, config.instances[i - 1]?.id, `bridged guest ${i} got its own id`);
  }
  const state = await hvState(lab);
  t.same(state.bridgePorts, [...lab.guests().map((g) => g.hostIf), uplink.hostIf].sort(), 'the guests are bridge ports');
  const port3 = await onPort3.stop();
  t.same(
    port3.filter((l) => /169\.254\.169\.254/.test(l)),
    [],
    "guest 3's port saw nothing of the others' metadata traffic",
  );

  // Guest 3 takes guest 1's MAC and IP on its own bridge port.
  const g1 = lab.guest(1);
  await lab.exec(3, ['ip', 'link', 'set', 'eth0', 'address', g1.mac]);
  await lab.exec(3, ['ip', 'addr', 'flush', 'dev', 'eth0']);
  await lab.exec(3, ['ip', 'addr', 'add', `${g1.ipv4}/24`, 'dev', 'eth0']);
  await lab.exec(3, ['ip', 'route', 'replace', '169.254.169.254/32', 'dev', 'eth0']);
  const spoof = await lab.curl(3, ID, { timeoutS: 2 });
  t.equal(spoof.status, 0, "a bridged guest with its neighbour's MAC and IP gets nothing");
  t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id, 'the real guest 1 is still served, by its own port');

  const up = await onUplink.stop();
  t.same(
    up.filter((l) => /169\.254\.169\.254|fd00:ec2::254/.test(l)),
    [],
    'the uplink saw no ARP and no frame for the metadata address',
  );
  const stats = (await adminGet(config.admin.socket, '/v1/stats')).body as { kernel: Record<string, number> };
  t.ok((stats.kernel.bridge_refused4 ?? 0) > 0, `the bridge table counted the spoof (${stats.kernel.bridge_refused4})`);
  t.ok((stats.kernel.bridge_kept4 ?? 0) > 0, `and the ARP it kept from flooding (${stats.kernel.bridge_kept4})`);
});

t.test("a bridge whose kernel will not answer ARP: linkgate's responder does", async (t) => {
  const { lab, config, daemon } = await withServedLab(t, {
    guests: 2,
    bridge: true,
    before: async (lab) => {
      // arp_ignore=8: the kernel answers no ARP on the bridge (an IP-less bridge in many setups).
      await lab.hvSysctl(`net.ipv4.conf.${lab.bridge ?? ''}.arp_ignore`, 8);
    },
  });
  const started = await daemon.waitFor((l) => l.msg === 'neighbor responder started' && l.ifname === lab.guest(1).hostIf);
  t.ok(started, 'a responder runs on the bridged port');
  const bridgeMac = (await lab.hvExec(['cat', `/sys/class/net/${lab.bridge ?? ''}/address`])).trim();
  const arping = await lab.execRaw(1, ['arping', '-c', '2', '-w', '3', '-I', 'eth0', '169.254.169.254']);
  t.match(arping.stdout, /reply from 169\.254\.169\.254/i, `ARP answered: ${arping.stdout.split('\n')[1] ?? ''}`);
  t.match(arping.stdout.toLowerCase(), bridgeMac, "with the bridge's MAC, by linkgate (the kernel is told not to answer)");
  t.equal((await lab.curl(1, ID)).body, config.instances[0]?.id, 'and the guest is served');
  t.equal((await lab.curl(2, ID)).body, config.instances[1]?.id);
});

t.test('IPv6 guests: own ids over fd00:ec2::254 (NDP answered by linkgate), IPv6 spoofing refused', async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 3, ipv6: true });
  for (const g of lab.guests()) {
    const r = await lab.curl(g.index, ID, { ipv6: true });
    t.equal(r.body, config.instances[g.index - 1]?.id, `guest ${g.index} over IPv6 got its own id`);
  }
  const neigh = await lab.exec(1, ['ip', '-6', 'neigh', 'show', 'fd00:ec2::254']);
  t.match(neigh, /lladdr/, `the guest resolved the metadata address by NDP (${neigh.trim()})`);

  // Guest 2 adds guest 1's IPv6 address and asks from it.
  const g1 = lab.guest(1);
  await lab.exec(2, ['ip', '-6', 'addr', 'add', `${g1.ipv6 ?? ''}/128`, 'dev', 'eth0', 'nodad']);
  const spoof = await lab.curl(2, ID, { ipv6: true, timeoutS: 2, extraArgs: ['--interface', g1.ipv6 ?? ''] });
  t.equal(spoof.status, 0, "a guest with another guest's IPv6 address gets nothing");
  // And with guest 1's MAC too.
  await lab.exec(3, ['ip', 'link', 'set', 'eth0', 'address', g1.mac]);
  await lab.exec(3, ['ip', '-6', 'addr', 'add', `${g1.ipv6 ?? ''}/128`, 'dev', 'eth0', 'nodad']);
  const spoof2 = await lab.curl(3, ID, { ipv6: true, timeoutS: 2, extraArgs: ['--interface', g1.ipv6 ?? ''] });
  t.equal(spoof2.status, 0, 'nor one with its MAC and IPv6 address');
  const stats = (await adminGet(config.admin.socket, '/v1/stats')).body as { kernel: Record<string, number> };
  t.ok((stats.kernel.refused6 ?? 0) >= 2, `refused IPv6 SYNs counted (${stats.kernel.refused6})`);
  t.equal((await lab.curl(1, ID, { ipv6: true })).body, config.instances[0]?.id, 'guest 1 unaffected');
});

t.test('two tenant networks, same IPv4 and MAC: each guest its own id, replies never cross, even on one 4-tuple', async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 2, networks: ['tenant-a', 'tenant-b'], overlap: true });
  const [a, b] = [lab.guest(1), lab.guest(2)];
  t.equal(a.ipv4, b.ipv4, 'same IPv4');
  t.equal(a.mac, b.mac, 'same MAC');
  t.not(a.hostIf, b.hostIf, 'different ports');
  // The same source port from both guests: the kernel sees two identical 4-tuples.
  for (let round = 0; round < 3; round++) {
    const port = String(41000 + round);
    const [ra, rb] = await Promise.all([
      lab.curl(1, ID, { extraArgs: ['--local-port', port] }),
      lab.curl(2, ID, { extraArgs: ['--local-port', port] }),
    ]);
    t.equal(ra.body, config.instances[0]?.id, `round ${round}: tenant-a's guest got its own id`);
    t.equal(rb.body, config.instances[1]?.id, `round ${round}: tenant-b's guest got its own id`);
  }
  const state = await hvState(lab);
  const routes = state.routes.filter((l) => l.startsWith(`${a.ipv4} `));
  t.equal(routes.length, 2, 'one route per guest, in separate tables');
  t.equal(new Set(routes.map((l) => /table (\d+)/.exec(l)?.[1])).size, 2);
  t.equal(
    state.rules.filter((l) => /fwmark 0xa0[0-9a-f]00000\/0xfff00000/.test(l)).length,
    3 * 2,
    'one rule per network and family, not per guest',
  );
});

t.test('hostile frames on a port: no crash, no answer, counted in the daemon', async (t) => {
  const { lab, config } = await withServedLab(t, { guests: 2, ipv6: true });
  const g = lab.guest(1);
  const frames = guestFrames({ mac: g.mac, ipv4: g.ipv4, ipv6: g.ipv6 ?? '', v4: '169.254.169.254', v6: 'fd00:ec2::254' });
  // The NDP ones: on this routed port the kernel itself answers ARP (arp_ignore=0), linkgate NDP.
  const hostile = frames.hostileFrames().filter(([what]) => what.includes('NS'));
  const port = lab.guest(1).hostIf;
  const answerMac = (await lab.hvExec(['cat', `/sys/class/net/${port}/address`])).trim();
  // Room for the oversized frames on both ends of the veth pair.
  await lab.hvExec(['ip', 'link', 'set', port, 'mtu', '4000']);
  await lab.exec(1, ['ip', 'link', 'set', 'eth0', 'mtu', '4000']);
  // The injector counts answers from the port's MAC for 1.5 s after sending.
  const out = await lab.exec(1, ['/usr/bin/python3', '-c', INJECT, 'eth0', answerMac, '1.5'], {
    input: `${hostile.map(([, f]) => f.toString('hex')).join('\n')}\n`,
  });
  t.equal(out.trim(), '0', `no answer to any of ${hostile.length} hostile frames`);
  const stats = (await adminGet(config.admin.socket, '/v1/stats')).body as { neighbor: Record<string, number> };
  const n = stats.neighbor;
  t.ok((n.responders ?? 0) >= 2, 'responders run on the IPv6 ports');
  const expected: Record<string, number> = {};
  for (const [, , counter] of hostile) expected[counter] = (expected[counter] ?? 0) + 1;
  for (const [counter, count] of Object.entries(expected))
    t.ok((n[counter] ?? 0) >= count, `${counter}: ${count} sent, ${n[counter]} counted`);
  t.equal(n.nd_adverts ?? 0, 0, 'no advert went out for any of them');
  for (const g2 of lab.guests())
    t.equal((await lab.curl(g2.index, ID, { ipv6: true })).body, config.instances[g2.index - 1]?.id, `guest ${g2.index} still served`);
});
