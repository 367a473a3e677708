import t from 'tap';
import { renderTable, renderElementChanges, renderDeleteTable, elementKey } from '../../src/dataplane/nft.js';

const spec = { table: 'linkgate', listenIpv4: '169.254.169.254', port: 80 };
const e1 = { ifname: 'tap1', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1', mark: 0xa0000001 };
const e2 = { ifname: 'tap2', mac: '52:54:00:00:00:02', ipv4: '10.0.0.2', mark: 0xa0000002 };

t.test('table: replaces an earlier one atomically, one map, no per-guest rules', async (t) => {
  const s = renderTable(spec, [e1, e2]);
  const lines = s.split('\n');
  t.equal(lines[0], 'table inet linkgate', 'creates it if missing so that the delete cannot fail');
  t.equal(lines[1], 'delete table inet linkgate');
  t.match(s, /type ifname \. ether_addr \. ipv4_addr : mark/);
  t.match(s, /"tap1" \. 52:54:00:00:00:01 \. 10\.0\.0\.1 : 0xa0000001/);
  t.match(s, /ip daddr 169\.254\.169\.254 tcp dport 80 meta mark set iifname \. ether saddr \. ip saddr map @ports4 accept/);
  t.match(s, /tcp dport 80 counter name refused4 drop/);
  const ruleLines = lines.filter((l) => /^\s+ip daddr/.test(l));
  t.equal(ruleLines.length, 3, 'rule count does not grow with guests');
  t.equal(
    renderTable(spec, [])
      .split('\n')
      .filter((l) => /^\s+ip daddr/.test(l)).length,
    3,
  );
  t.notMatch(renderTable(spec, []), /elements/);
});

t.test('element changes are one transaction', async (t) => {
  t.equal(
    renderElementChanges(spec, [e2], [e1]),
    'delete element inet linkgate ports4 { "tap1" . 52:54:00:00:00:01 . 10.0.0.1 }\n' +
      'add element inet linkgate ports4 { "tap2" . 52:54:00:00:00:02 . 10.0.0.2 : 0xa0000002 }\n',
  );
  t.equal(renderElementChanges(spec, [], []), '');
  t.equal(renderDeleteTable('linkgate'), 'table inet linkgate\ndelete table inet linkgate\n');
});

t.test('nothing unchecked reaches nft', async (t) => {
  t.throws(() => elementKey({ ifname: 'ta"p; flush ruleset', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1' }));
  t.throws(() => elementKey({ ifname: 'tap1', mac: '52:54:00:00:00:0G', ipv4: '10.0.0.1' }));
  t.throws(() => elementKey({ ifname: 'tap1', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1; x' }));
  t.throws(() => renderTable({ ...spec, table: 'Bad Name' }, []));
  t.throws(() => renderTable({ ...spec, port: 0 }, []));
  t.throws(() => renderTable({ ...spec, listenIpv4: 'x' }, []));
  t.throws(() => renderDeleteTable('x;y'));
});
