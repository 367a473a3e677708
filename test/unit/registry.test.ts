import t from 'tap';
import { Registry, tripleKey } from '../../src/identity/registry.js';
import { makeMark, parseMark, networkRuleMatch, MAX_SLOT } from '../../src/dataplane/mark.js';
import type { Instance } from '../../src/model/instance.js';

function inst(id: string, ports: { interface: string; mac: string; ipv4: string; network?: string }[]): Instance {
  return {
    id,
    hostname: id,
    ports,
    project: 'p',
    region: 'r-1',
    zone: 'r-1a',
    image: 'img',
    type: 't',
    ssh_keys: [],
    tags: {},
  };
}

const A = inst('i-a', [{ interface: 'tap1', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1' }]);
const B = inst('i-b', [
  { interface: 'tap2', mac: '52:54:00:00:00:02', ipv4: '10.0.0.2' },
  { interface: 'tap3', mac: '52:54:00:00:00:03', ipv4: '10.0.1.2' },
]);

t.test('marks: layout, parse, rule match', async (t) => {
  const m = makeMark(3, 17);
  t.equal(m, 0xa0300011);
  t.same(parseMark(m), { network: 3, slot: 17 });
  t.equal(parseMark(0), undefined, 'unmarked traffic is nobody');
  t.equal(parseMark(0x00000011), undefined, 'a mark without our tag is nobody');
  t.equal(parseMark(0xa0300000), undefined, 'slot 0 is nobody');
  t.throws(() => makeMark(0, 0));
  t.throws(() => makeMark(0, MAX_SLOT + 1));
  t.throws(() => makeMark(256, 1));
  const r = networkRuleMatch(3);
  t.equal((m & r.fwmask) >>> 0, r.fwmark, 'the network rule matches its marks');
  t.not((makeMark(4, 17) & r.fwmask) >>> 0, r.fwmark, 'and not another network');
  t.not((0 & r.fwmask) >>> 0, networkRuleMatch(0).fwmark, 'unmarked traffic never matches network 0');
});

t.test('lookup by mark, by triple, by id', async (t) => {
  const reg = new Registry(() => 1000);
  reg.replaceAll([A, B]);
  t.equal(reg.size, 2);
  const a = reg.byTriple('tap1', '52:54:00:00:00:01', '10.0.0.1');
  t.ok(a);
  t.equal(reg.byMark(a!.mark)?.instance.id, 'i-a');
  const b2 = reg.byTriple('tap3', '52:54:00:00:00:03', '10.0.1.2');
  t.equal(b2?.portIndex, 1);
  t.equal(b2?.instance.id, 'i-b');
  t.equal(reg.byTriple('tap1', '52:54:00:00:00:02', '10.0.0.1'), undefined, 'wrong MAC is nobody');
  t.equal(reg.byTriple('tap2', '52:54:00:00:00:01', '10.0.0.1'), undefined, 'wrong port is nobody');
  t.equal(reg.byMark(0), undefined);
  t.equal(reg.bindings().length, 3);
  t.equal(new Set(reg.bindings().map((b) => b.mark)).size, 3, 'marks are distinct');
  t.equal(reg.since('i-a'), 1000);
  t.equal(reg.get('i-b'), B);
});

t.test('replacing keeps marks; deleting frees them; no prompt reuse', async (t) => {
  const reg = new Registry();
  const changes: unknown[] = [];
  reg.on('change', (c) => changes.push(c));
  reg.replaceAll([A, B]);
  const markA = reg.byTriple('tap1', '52:54:00:00:00:01', '10.0.0.1')!.mark;
  const A2 = { ...A, hostname: 'renamed' };
  const ch = reg.replaceAll([A2, B]);
  t.same(ch, { added: [], removed: [], changed: ['i-a'], unbound: [] });
  t.equal(reg.byMark(markA)?.instance.hostname, 'renamed', 'same triple keeps its mark');
  t.same(reg.replaceAll([A2, B]), { added: [], removed: [], changed: [], unbound: [] }, 'identical objects: no change');
  t.equal(changes.length, 2);
  t.ok(reg.delete('i-a'));
  t.notOk(reg.delete('i-a'));
  t.equal(reg.byMark(markA), undefined, 'deleted guest is nobody at once');
  reg.put(A);
  const markA2 = reg.byTriple('tap1', '52:54:00:00:00:01', '10.0.0.1')!.mark;
  t.not(markA2, markA, 'a freed mark is not handed out again right away');
});

t.test('put refuses a triple bound to another instance and changes nothing', async (t) => {
  const reg = new Registry();
  reg.replaceAll([A]);
  const thief = inst('i-c', [{ interface: 'tap1', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1' }]);
  t.throws(() => reg.put(thief), /already bound to instance i-a/);
  t.equal(reg.get('i-c'), undefined);
  t.equal(reg.byTriple('tap1', '52:54:00:00:00:01', '10.0.0.1')?.instance.id, 'i-a');
});

t.test('changing ports rebinds only what changed', async (t) => {
  const reg = new Registry();
  reg.replaceAll([B]);
  const keep = reg.byTriple('tap2', '52:54:00:00:00:02', '10.0.0.2')!.mark;
  const gone = reg.byTriple('tap3', '52:54:00:00:00:03', '10.0.1.2')!.mark;
  reg.put({ ...B, ports: [B.ports[0]!, { interface: 'tap4', mac: '52:54:00:00:00:04', ipv4: '10.0.1.3' }] });
  t.equal(reg.byTriple('tap2', '52:54:00:00:00:02', '10.0.0.2')?.mark, keep);
  t.equal(reg.byMark(gone), undefined);
  t.ok(reg.byTriple('tap4', '52:54:00:00:00:04', '10.0.1.3'));
  t.equal(reg.bindings().length, 2);
});

t.test('tenant networks get distinct ids in the mark', async (t) => {
  const reg = new Registry();
  const x = inst('i-x', [{ interface: 'tapx', mac: '52:54:00:00:00:09', ipv4: '10.9.0.9', network: 'tenant-a' }]);
  const y = inst('i-y', [{ interface: 'tapy', mac: '52:54:00:00:00:09', ipv4: '10.9.0.9', network: 'tenant-b' }]);
  reg.replaceAll([x, y]);
  const bx = reg.byTriple('tapx', '52:54:00:00:00:09', '10.9.0.9', 'tenant-a')!;
  const by = reg.byTriple('tapy', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b')!;
  t.not(bx.network, by.network);
  t.equal(parseMark(bx.mark)?.network, bx.network);
  t.not(bx.network, 0);
});

t.test('100,000 instances: O(1) lookups', async (t) => {
  const reg = new Registry();
  const many: Instance[] = [];
  for (let i = 0; i < 100_000; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    many.push(inst(`i-${i}`, [{ interface: `tap${i}`, mac: '52:54:00:00:00:01', ipv4: ip }]));
  }
  reg.replaceAll(many);
  t.equal(reg.size, 100_000);
  const b = reg.byTriple('tap77777', '52:54:00:00:00:01', '10.1.47.209');
  t.equal(b?.instance.id, 'i-77777');
  t.equal(reg.byMark(b!.mark)?.instance.id, 'i-77777');
});

t.test('change.unbound names the marks that stopped naming a binding', (t) => {
  const reg = new Registry(() => 1);
  reg.replaceAll([A, B]);
  const markA = reg.byTriple(A.ports[0]!.interface, A.ports[0]!.mac, A.ports[0]!.ipv4)?.mark;
  t.ok(markA !== undefined);
  const seen: number[][] = [];
  reg.on('change', (c: { unbound: number[] }) => seen.push(c.unbound));
  reg.put({ ...A, hostname: 'renamed' });
  t.same(seen.pop(), [], 'same ports: nothing unbound');
  t.ok(reg.delete(A.id));
  t.same(seen.pop(), [markA], 'deleted: its mark');
  t.end();
});

t.test('tenant networks may repeat an address: each binding is its own', (t) => {
  const reg = new Registry();
  const on = (id: string, ifname: string, network?: string): Instance =>
    inst(id, [{ interface: ifname, mac: '52:54:00:00:00:09', ipv4: '10.9.0.9', ...(network !== undefined ? { network } : {}) }]);
  // Not a set the validator lets through (the same triple twice), but the registry tells them apart by network.
  const [x, y, z] = [on('i-x', 'tapx', 'tenant-a'), on('i-y', 'tapy', 'tenant-b'), on('i-z', 'tapx', 'tenant-b')];
  reg.replaceAll([x, y, z]);
  t.equal(reg.bindings().length, 3);
  t.equal(reg.byTriple('tapx', '52:54:00:00:00:09', '10.9.0.9', 'tenant-a')?.instance.id, 'i-x');
  t.equal(reg.byTriple('tapy', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b')?.instance.id, 'i-y');
  t.equal(reg.byTriple('tapx', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b')?.instance.id, 'i-z');
  t.equal(reg.byTriple('tapx', '52:54:00:00:00:09', '10.9.0.9'), undefined, 'not in the default network');
  const markY = reg.byTriple('tapy', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b')!.mark;
  t.ok(reg.delete('i-y'));
  t.equal(reg.byMark(markY), undefined);
  t.equal(reg.byTriple('tapy', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b'), undefined);
  t.equal(reg.byTriple('tapx', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b')?.instance.id, 'i-z', 'the others stay');
  t.ok(reg.delete('i-x'));
  t.equal(reg.byTriple('tapx', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b')?.instance.id, 'i-z');
  t.same(
    reg.bindings().map((b) => b.ifname),
    ['tapx'],
  );
  t.throws(() => reg.put(on('i-w', 'tapx', 'tenant-b')), /already bound to instance i-z/);
  reg.put({ ...z, hostname: 'z2' });
  t.equal(reg.byTriple('tapx', '52:54:00:00:00:09', '10.9.0.9', 'tenant-b')?.instance.hostname, 'z2');
  t.end();
});

t.test('a binding is what the dataplane installs and what a mark names', (t) => {
  const reg = new Registry();
  const c = inst('i-c', [
    { interface: 'tapc', mac: '52:54:00:00:00:0c', ipv4: '10.0.0.12' },
    { interface: 'tapd', mac: '52:54:00:00:00:0d', ipv4: '10.0.0.13', network: 'n1' },
  ]);
  const withV6 = { ...c, ports: [c.ports[0]!, { ...c.ports[1]!, ipv6: 'fd00::13', bridge: 'br0' }] };
  reg.replaceAll([withV6]);
  const [b0, b1] = reg.bindings();
  t.match(b0, { ifname: 'tapc', mac: '52:54:00:00:00:0c', ipv4: '10.0.0.12', ipv6: undefined, bridge: undefined, network: 0 });
  t.match(b1, { ifname: 'tapd', mac: '52:54:00:00:00:0d', ipv4: '10.0.0.13', ipv6: 'fd00::13', bridge: 'br0', network: 1 });
  t.same(parseMark(b1!.mark), { network: 1, slot: parseMark(b1!.mark)!.slot });
  const bound = reg.byMark(b1!.mark)!;
  t.equal(bound, b1, 'the same object');
  t.equal(bound.port, withV6.ports[1]);
  t.equal(bound.portIndex, 1);
  t.equal(bound.key, tripleKey('tapd', '52:54:00:00:00:0d', '10.0.0.13', 'n1'));
  t.equal(bound.key, bound.key);
  // The slot is right but the network bits are not: nobody.
  const slot = parseMark(b1!.mark)!.slot;
  t.equal(reg.byMark(makeMark(0, slot)), undefined);
  t.equal(reg.byMark(makeMark(2, slot)), undefined);
  t.equal(reg.byMark(b1!.mark + 2 ** 32), undefined, 'only the mark itself');
  t.equal(reg.byMark(NaN), undefined);
  // Replacing the instance: new binding objects, same marks; the old objects still describe the old instance.
  reg.put({ ...withV6, hostname: 'c2' });
  const again = reg.byMark(b1!.mark)!;
  t.not(again, bound);
  t.equal(again.instance.hostname, 'c2');
  t.equal(again.key, bound.key);
  t.equal(bound.instance.hostname, 'i-c');
  t.end();
});

t.test('an instance without ports is held, and bound to nothing', (t) => {
  const reg = new Registry(() => 5);
  const none = inst('i-none', []);
  reg.replaceAll([A, none]);
  t.equal(reg.size, 2);
  t.equal(reg.get('i-none'), none);
  t.equal(reg.since('i-none'), 5);
  t.equal(reg.bindings().length, 1);
  t.same(
    reg.list().map((i) => i.id),
    ['i-a', 'i-none'],
  );
  reg.put({ ...none, ports: [{ interface: 'tapn', mac: '52:54:00:00:00:0e', ipv4: '10.0.0.14' }] });
  t.equal(reg.byTriple('tapn', '52:54:00:00:00:0e', '10.0.0.14')?.instance.id, 'i-none');
  t.same(reg.delete('i-none') && reg.bindings().length, 1);
  t.end();
});

t.test('since: read once per change, kept while the instance stays', (t) => {
  let now = 100;
  const reg = new Registry(() => now++);
  reg.replaceAll([A, B]);
  t.equal(reg.since('i-a'), 100);
  t.equal(reg.since('i-b'), 100, 'one change, one reading');
  reg.put({ ...A, hostname: 'again' });
  t.equal(reg.since('i-a'), 100, 'replaced, not new');
  const C = inst('i-c', [{ interface: 'tapc', mac: '52:54:00:00:00:0c', ipv4: '10.0.0.12' }]);
  reg.put(C);
  t.equal(reg.since('i-c'), 101);
  reg.delete('i-c');
  reg.replaceAll([A, B, C]);
  t.equal(reg.since('i-c'), 102);
  t.equal(reg.since('i-zz'), undefined);
  t.end();
});
