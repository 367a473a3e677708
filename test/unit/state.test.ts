// The admin API's state files (sources/state.ts): round trip, atomic replace, leftovers removed,
// unreadable records reported, unsafe ids refused, writes serialized.
import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateStore } from '../../src/sources/state.js';

const tmp = mkdtempSync(join(tmpdir(), 'lg-state-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

t.test('put, delete, open', async (t) => {
  const dir = join(tmp, 'a');
  const s = new StateStore(dir);
  t.same(await s.open(), { entries: [], problems: [] });
  await s.put('i-1', { id: 'i-1', v: 1 });
  await s.put('i-2', { id: 'i-2', v: 1 });
  await s.put('i-1', { id: 'i-1', v: 2 });
  t.same(JSON.parse(readFileSync(join(dir, 'instances', 'i-1.json'), 'utf8')), { version: 1, instance: { id: 'i-1', v: 2 } });
  t.equal(await s.delete('i-2'), true);
  t.equal(await s.delete('i-2'), false);
  t.same(readdirSync(join(dir, 'instances')), ['i-1.json'], 'no temporary file left');
  // Leftovers of a crash and broken records.
  writeFileSync(join(dir, 'instances', '.i-3.json.1.1.tmp'), '{"version":1,"inst');
  writeFileSync(join(dir, 'instances', 'i-4.json'), 'garbage');
  writeFileSync(join(dir, 'instances', 'i-5.json'), '{"version":7,"instance":{}}');
  writeFileSync(join(dir, 'instances', 'README'), 'ignored');
  const again = await new StateStore(dir).open();
  t.same(again.entries, [{ id: 'i-1', raw: { id: 'i-1', v: 2 } }]);
  t.match(again.problems, [
    { file: /i-4\.json$/, message: /not JSON/ },
    { file: /i-5\.json$/, message: /not a version 1/ },
  ]);
  t.notOk(
    readdirSync(join(dir, 'instances')).some((n) => n.endsWith('.tmp')),
    'temporary files removed at open',
  );
});

t.test('unsafe ids are refused; one failed write does not stop the next', async (t) => {
  const s = new StateStore(join(tmp, 'b'));
  await s.open();
  await t.rejects(s.put('../etc/passwd', {}), /cannot be a file name/);
  await t.rejects(s.delete('a/b'), /cannot be a file name/);
  const writes = Array.from({ length: 20 }, (_, i) => s.put('i-x', { n: i }));
  await Promise.all(writes);
  t.same((await s.open()).entries, [{ id: 'i-x', raw: { n: 19 } }], 'serialized: the last call wins');
});
