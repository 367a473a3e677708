import t from 'tap';
import {
  emptyElements,
  renderDeleteTables,
  renderElementDiff,
  renderTables,
  nftIfname,
  nftIp,
  nftMac,
  nftMark,
} from '../../src/dataplane/nft.js';
import { elementsFor, type ServedBinding } from '../../src/dataplane/dataplane.js';

const spec = { table: 'linkgate', listenIpv4: '169.254.169.254', listenIpv6: 'fd00:ec2::254', port: 80 };
const routed: ServedBinding = {
  binding: { ifname: 'tap1', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1', ipv6: 'fd00:77::11', mark: 0xa0000001, network: 0 },
  ifindex: 5,
  answerMac: '02:00:00:00:00:05',
  bridge: undefined,
};
const bridged: ServedBinding = {
  binding: { ifname: 'tap2', mac: '52:54:00:00:00:02', ipv4: '10.0.0.2', bridge: 'br0', mark: 0xa0000002, network: 0 },
  ifindex: 6,
  answerMac: '02:00:00:00:00:99',
  bridge: 'br0',
};

t.test('tables: replace earlier ones atomically, maps not rules', async (t) => {
  const s = renderTables(spec, elementsFor([routed, bridged], true));
  const lines = s.split('\n');
  t.same(lines.slice(0, 2), ['table inet linkgate', 'delete table inet linkgate'], 'created if missing so that the delete cannot fail');
  t.match(s, /table bridge linkgate\ndelete table bridge linkgate\n/);
  t.match(s, /type ifname \. ether_addr \. ipv4_addr : mark/);
  t.match(s, /type ifname \. ether_addr \. ipv6_addr : mark/);
  t.match(s, /"tap1" \. 52:54:00:00:00:01 \. 10\.0\.0\.1 : 0xa0000001/);
  t.match(s, /"tap1" \. 52:54:00:00:00:01 \. fd00:77::11 : 0xa0000001/);
  t.match(s, /ip daddr 169\.254\.169\.254 tcp dport 80 meta mark set iifname \. ether saddr \. ip saddr map @ports4 accept/);
  t.match(s, /ether daddr set iifname map @brmac meta pkttype set host accept/, 'bridged traffic is forced to the host');
  t.match(s, /ether type arp arp daddr ip 169\.254\.169\.254 counter name kept4 drop/, 'ARP for the metadata address is never flooded');
  t.match(s, /@th,64,128 0xfd000ec2000000000000000000000254/, 'nor NDP for the IPv6 one');
  const ruleCount = (x: string): number => x.split('\n').filter((l) => /^\s+(ip|ip6|ether|iifname) /.test(l)).length;
  t.equal(ruleCount(s), ruleCount(renderTables(spec, emptyElements())), 'rule count does not grow with guests');
  t.notMatch(renderTables({ ...spec, listenIpv6: undefined }, emptyElements()), /ip6 daddr/, 'no IPv6 rules without an IPv6 address');
});

t.test('elements: bridged bindings also go to the bridge table with their bridge MAC', async (t) => {
  const els = elementsFor([routed, bridged], true);
  t.equal(els['inet ports4'].size, 2);
  t.equal(els['inet ports6'].size, 1);
  t.same([...els['inet bridges'].keys()], ['"br0"']);
  t.same([...els['bridge ports4'].keys()], ['"tap2" . 52:54:00:00:00:02 . 10.0.0.2']);
  t.same([...els['bridge brmac']], [['"tap2"', '02:00:00:00:00:99']]);
  t.equal(elementsFor([routed], false)['inet ports6'].size, 0, 'no IPv6 elements when IPv6 is off');
});

t.test('element diff: one transaction, deletions first, changed values replaced', async (t) => {
  const a = elementsFor([routed], true);
  const b = elementsFor([{ ...routed, binding: { ...routed.binding, mark: 0xa0000009 } }, bridged], true);
  const diff = renderElementDiff('linkgate', a, b);
  const lines = diff.trim().split('\n');
  t.ok(lines.findIndex((l) => l.startsWith('add')) > lines.findIndex((l) => l.startsWith('delete')), 'deletes before adds');
  t.match(diff, /delete element inet linkgate ports4 \{ "tap1" \. 52:54:00:00:00:01 \. 10\.0\.0\.1 \}/);
  t.match(diff, /add element inet linkgate ports4 \{ "tap1" \. 52:54:00:00:00:01 \. 10\.0\.0\.1 : 0xa0000009, "tap2"/);
  t.match(diff, /add element bridge linkgate brmac \{ "tap2" : 02:00:00:00:00:99 \}/);
  t.equal(renderElementDiff('linkgate', b, b), '', 'no change, no transaction');
  t.equal(
    renderDeleteTables('linkgate'),
    'table inet linkgate\ndelete table inet linkgate\ntable bridge linkgate\ndelete table bridge linkgate\n',
  );
});

t.test('nothing unchecked reaches nft', async (t) => {
  t.throws(() => nftIfname('ta"p; flush ruleset'));
  t.throws(() => nftMac('52:54:00:00:00:0G'));
  t.throws(() => nftIp('10.0.0.1; x', 4));
  t.throws(() => nftIp('fd00::1 }', 6));
  t.equal(nftMark(1), '0x00000001');
  t.throws(() => renderTables({ ...spec, table: 'Bad Name' }, emptyElements()));
  t.throws(() => renderTables({ ...spec, port: 0 }, emptyElements()));
  t.throws(() => renderTables({ ...spec, listenIpv4: 'x' }, emptyElements()));
  t.throws(() => renderDeleteTables('x;y'));
  t.throws(() => renderElementDiff('x;y', emptyElements(), emptyElements()));
});
