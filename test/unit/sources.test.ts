// The pure parts of instance sources and admin writes: layering (identity/sources.ts), RFC 7396
// merge patch, validateInstanceFor, instanceSetConflicts.
import t from 'tap';
import { Sources } from '../../src/identity/sources.js';
import { mergePatch } from '../../src/config/mergepatch.js';
import { instanceContext, instanceSetConflicts, validateInstance, validateInstanceFor } from '../../src/config/validate.js';
import type { Instance } from '../../src/model/instance.js';

function inst(id: string, n: number, extra: Record<string, unknown> = {}): Instance {
  const r = validateInstance({
    id,
    hostname: `h-${n}`,
    ports: [{ interface: `tap${n}`, mac: `52:54:00:00:00:${n.toString(16).padStart(2, '0')}`, ipv4: `10.0.0.${n}` }],
    ...extra,
  });
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  return r.instance;
}

t.test('Sources: first source owns an id; colliding ports of later sources are left out', async (t) => {
  const s = new Sources(['file', 'api', 'etcd'], instanceSetConflicts);
  t.throws(() => s.put('nope', inst('a', 1)), /unknown instance source/);
  s.replace('file', [inst('a', 1)]);
  s.put('api', inst('b', 2));
  s.put('etcd', inst('a', 3)); // same id as the file's
  s.put('etcd', inst('c', 2)); // same port as the API's
  s.put('etcd', inst('d', 4));
  const m = s.merged();
  t.same(
    m.instances.map((i) => i.id),
    ['a', 'b', 'd'],
  );
  t.same(
    m.shadowed.map((x) => [x.source, x.id]),
    [
      ['etcd', 'a'],
      ['etcd', 'c'],
    ],
  );
  t.match(m.shadowed[1]?.reason, /instance c\.ports\[0\]/);
  t.equal(s.owner('a'), 'file');
  t.same(s.holders('a'), ['file', 'etcd']);
  t.equal(s.owner('zz'), undefined);
  t.equal(s.get('api', 'b')?.id, 'b');
  t.same(
    s.list('etcd').map((i) => i.id),
    ['a', 'c', 'd'],
  );
  // The shadowing instance goes: the left-out one comes back.
  t.ok(s.delete('api', 'b'));
  t.notOk(s.delete('api', 'b'));
  t.same(
    s.merged().instances.map((i) => i.id),
    ['a', 'c', 'd'],
  );
});

t.test('mergePatch: RFC 7396 examples', async (t) => {
  const cases: [unknown, unknown, unknown][] = [
    [{ a: 'b' }, { a: 'c' }, { a: 'c' }],
    [{ a: 'b' }, { b: 'c' }, { a: 'b', b: 'c' }],
    [{ a: 'b' }, { a: null }, {}],
    [{ a: 'b', b: 'c' }, { a: null }, { b: 'c' }],
    [{ a: ['b'] }, { a: 'c' }, { a: 'c' }],
    [{ a: 'c' }, { a: ['b'] }, { a: ['b'] }],
    [{ a: { b: 'c' } }, { a: { b: 'd', c: null } }, { a: { b: 'd' } }],
    [{ a: [{ b: 'c' }] }, { a: [1] }, { a: [1] }],
    [
      ['a', 'b'],
      ['c', 'd'],
      ['c', 'd'],
    ],
    [{ a: 'b' }, ['c'], ['c']],
    [{ a: 'foo' }, null, null],
    [{ a: 'foo' }, 'bar', 'bar'],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: 'b', c: null }, { a: 'b' }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) t.same(mergePatch(target, patch), want, JSON.stringify([target, patch]));
  const target = { a: { b: 1 } };
  mergePatch(target, { a: { b: 2 } });
  t.same(target, { a: { b: 1 } }, 'the target is not modified');
});

t.test('validateInstanceFor: the id of the path/key, backend needs upstream', async (t) => {
  const ctx = instanceContext({ listen: { ipv4: '169.254.169.254', ipv6: false, port: 80, fast_path: true }, backends: {} });
  const body = { hostname: 'x', ports: [{ interface: 'tap1', mac: '52:54:00:00:00:01', ipv4: '10.0.0.1' }] };
  const ok = validateInstanceFor(body, ctx, 'i-1');
  t.ok(ok.ok && ok.instance.id === 'i-1', 'id filled in');
  t.match(validateInstanceFor({ ...body, id: 'i-2' }, ctx, 'i-1'), { ok: false, problems: [{ path: 'id', message: /"i-1"/ }] });
  t.match(validateInstanceFor({ ...body, backend: 'upstream' }, ctx, 'i-1'), { ok: false, problems: [{ path: 'backend' }] });
  const up = instanceContext({
    listen: { ipv4: '169.254.169.254', ipv6: false, port: 80, fast_path: true },
    backends: {
      upstream: { url: 'http://x', shared_secret: 's', cache_ttl_s: 1, timeout_ms: 100, max_connections: 1, stale_if_error_s: 1 },
    },
  });
  t.ok(validateInstanceFor({ ...body, backend: 'upstream' }, up, 'i-1').ok);
  t.match(validateInstanceFor({ ...body, ports: [{ ...body.ports[0], mac: 'x' }] }, ctx, 'i-1'), {
    ok: false,
    problems: [{ path: 'ports[0].mac' }],
  });
  t.match(validateInstanceFor({ ...body, ports: [{ ...body.ports[0], ipv4: '169.254.169.254' }] }, ctx), { ok: false });
  t.ok(validateInstanceFor('nope', ctx, 'i-1').ok === false, 'not an object');
});

t.test('instanceSetConflicts names the later claimant by index', async (t) => {
  const list = [inst('a', 1), inst('a.b', 2), inst('a.b.c', 2)];
  const c = instanceSetConflicts(list);
  t.equal(c.length, 1);
  t.equal(c[0]?.index, 2, 'longest matching name wins (ids with dots)');
  t.match(c[0]?.message, /instance a\.b\.c\.ports\[0\]/);
  t.same(instanceSetConflicts([inst('x', 1), inst('y', 2)]), []);
});

t.test('Sources: a replaced list and a written map answer alike', async (t) => {
  const s = new Sources(['file', 'api'], instanceSetConflicts);
  const given = [inst('a', 1), inst('b', 2)];
  s.replace('file', given);
  t.equal(s.count('file'), 2);
  t.equal(s.get('file', 'b')?.id, 'b');
  t.equal(s.get('file', 'zz'), undefined);
  t.same(s.holders('b'), ['file']);
  t.same(
    s.list('file').map((i) => i.id),
    ['a', 'b'],
  );
  // Writing one by one into a replaced source, and deleting from it.
  s.put('file', inst('c', 3));
  t.ok(s.delete('file', 'a'));
  t.notOk(s.delete('file', 'a'));
  t.same(
    s.list('file').map((i) => i.id),
    ['b', 'c'],
  );
  t.same(
    given.map((i) => i.id),
    ['a', 'b'],
    'the list handed over is not changed',
  );
  // An id given twice: the later one counts, in the earlier one's place (as a map would have it).
  const a2 = inst('a', 4, { hostname: 'second' });
  s.replace('file', [inst('a', 1), inst('b', 2), a2]);
  t.equal(s.count('file'), 2);
  t.equal(s.get('file', 'a'), a2);
  t.same(
    s.merged().instances.map((i) => i.hostname),
    ['second', 'h-2'],
  );
  // Anything iterable.
  s.replace('api', new Map([['d', inst('d', 5)]]).values());
  t.same(s.holders('d'), ['api']);
  t.equal(s.count('api'), 1);
  t.equal(s.count('file'), 2);
});
