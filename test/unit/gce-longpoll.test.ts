// The pipeline's held requests (GCE wait_for_change), its per-instance rate limiter (Azure) and
// the guest data store (OpenStack password): pure in-process tests with fake timers where needed.
import t from 'tap';
import type { DialectResponse } from '../../src/dialects/types.js';
import { GuestData } from '../../src/pipeline/guestdata.js';
import { final, LongPolls } from '../../src/pipeline/longpoll.js';
import { RateLimiter } from '../../src/pipeline/ratelimit.js';

const res = (body: string, etag?: string): DialectResponse => ({
  status: 200,
  headers: {},
  body,
  ...(etag !== undefined ? { wait: { etag, timeoutMs: 1000 } } : {}),
});
const change = (changed: string[], removed: string[] = []) => ({ added: [], removed, changed, unbound: [] });

t.test('a held request answers when a re-render changes its etag, not before', async (t) => {
  const lp = new LongPolls(2);
  let current = res('v1', 'e1');
  const got: DialectResponse[] = [];
  const h = lp.hold({ instanceId: 'i-1', etag: 'e1', rerender: () => current, finish: (r) => got.push(r) }, 60_000);
  t.ok(h.ok);
  t.equal(lp.count('i-1'), 1);
  lp.onChange(change(['i-2']));
  t.equal(got.length, 0, 'another instance changed: still held');
  lp.onChange(change(['i-1']));
  t.equal(got.length, 0, 'same etag after re-render: still held');
  current = res('v2', 'e2');
  lp.onChange(change(['i-1']));
  t.equal(got.length, 1);
  t.equal(got[0]?.body, 'v2');
  t.equal(got[0]?.wait, undefined, 'the wait is stripped');
  t.equal(lp.count(), 0);
  lp.onChange(change(['i-1']));
  t.equal(got.length, 1, 'answered once');
});

t.test('a re-render without wait (refused, gone) answers at once; a throwing one gives 500', async (t) => {
  const lp = new LongPolls(4);
  const got: DialectResponse[] = [];
  lp.hold(
    { instanceId: 'i-1', etag: 'e', rerender: () => ({ status: 403, headers: {}, body: 'Forbidden' }), finish: (r) => got.push(r) },
    60_000,
  );
  lp.hold(
    {
      instanceId: 'i-1',
      etag: 'e',
      rerender: () => {
        throw new Error('boom');
      },
      finish: (r) => got.push(r),
    },
    60_000,
  );
  lp.onChange(change([], ['i-1']));
  t.same(
    got.map((r) => r.status),
    [403, 500],
  );
});

t.test('timeout answers with a fresh render; the per-instance bound; cancel; releaseAll', async (t) => {
  const lp = new LongPolls(2);
  const got: string[] = [];
  const first = lp.hold({ instanceId: 'i-1', etag: 'e', rerender: () => res('late', 'e'), finish: (r) => got.push(r.body) }, 30);
  const second = lp.hold(
    { instanceId: 'i-1', etag: 'e', rerender: () => res('x', 'e'), finish: (r) => got.push(`second ${r.body}`) },
    60_000,
  );
  t.ok(first.ok && second.ok);
  t.notOk(
    lp.hold({ instanceId: 'i-1', etag: 'e', rerender: () => res('x'), finish: () => undefined }, 1000).ok,
    'third for the same instance refused',
  );
  const other = lp.hold({ instanceId: 'i-2', etag: 'e', rerender: () => res('other', 'e'), finish: (r) => got.push(r.body) }, 60_000);
  t.ok(other.ok, 'other instances have their own bound');
  await new Promise((r) => setTimeout(r, 80));
  t.same(got, ['late'], 'timed out with a fresh render');
  if (second.ok) second.cancel();
  t.equal(lp.count('i-1'), 0, 'cancelled (client went away)');
  lp.releaseAll();
  t.same(got, ['late', 'other'], 'released at shutdown');
  t.equal(lp.count(), 0);
  t.same(final(res('a', 'b')), res('a'));
});

t.test('rate limiter: rate per second per (dialect, instance), one second of burst, 0 = unlimited', async (t) => {
  const rl = new RateLimiter(4);
  let now = 1_000_000;
  const takes = (n: number, id = 'i-1', rate = 5): number => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (rl.take('azure', id, rate, now)) ok++;
    return ok;
  };
  t.equal(takes(10), 5, '5 of a burst of 10');
  t.equal(takes(3, 'i-2'), 3, 'another instance has its own budget');
  t.equal(rl.take('gce', 'i-1', 5, now), true, 'and another dialect');
  now += 200;
  t.equal(takes(3), 1, 'one token back after 200 ms');
  now += 5000;
  t.equal(takes(10), 5, 'refilled, capped at the rate');
  t.equal(takes(100, 'i-3', 0), 100, '0: unlimited');
  rl.forget('i-1');
  t.equal(rl.size, 1);
  now += 5000;
  for (const id of ['a', 'b', 'c', 'd', 'e']) rl.take('azure', id, 5, now);
  t.ok(rl.size <= 5, `pruned (${rl.size})`);
});

t.test('guest data: per instance, copy on write, forgotten on removal', async (t) => {
  const gd = new GuestData();
  t.equal(gd.get('i-1'), undefined);
  gd.set('i-1', 'k', 'v');
  const snap = gd.get('i-1');
  gd.set('i-1', 'k2', 'v2');
  t.same(snap, { k: 'v' }, 'earlier snapshots do not change');
  t.same(gd.get('i-1'), { k: 'v', k2: 'v2' });
  t.equal(gd.get('i-2'), undefined);
  gd.forget('i-1');
  t.equal(gd.get('i-1'), undefined);
});
