import t from 'tap';
import { Registry } from '../../src/identity/registry.js';
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
