// Admin API writes seen from guests: PUT/PATCH/DELETE take effect at once (kernel map, dialects),
// bad input is refused with field paths, the socket is 0600, config file and API never fight over
// an id, and API changes survive kill -9.
import t from 'tap';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, startDaemon } from '../../src/lab/daemon.js';
import { inNetns, runRaw } from '../../src/lab/netns.js';
import type { LabInstance } from '../../src/lab/lab.js';
import { adminRequest, withServedLab } from '../helpers/net.js';

const ID = '/latest/meta-data/instance-id';

t.test('admin API: writes are served at once, validated, owned, durable', async (t) => {
  let third: LabInstance | undefined;
  const { lab, daemon, config, configPath } = await withServedLab(t, {
    guests: 3,
    edit: (c) => {
      third = c.instances.pop(); // guest 3 comes through the API
    },
  });
  if (!third) throw new Error('no third instance');
  const sock = config.admin.socket;
  const id3 = third.id;
  const api = (method: string, id: string, body?: unknown) => adminRequest(sock, method, `/v1/instances/${id}`, body);

  t.equal(statSync(sock).mode & 0o777, 0o600, 'admin socket is 0600');
  t.not((await lab.curl(3, ID, { timeoutS: 1 })).status, 200, 'guest 3 is not served yet');

  // PUT without id in the body: the path's id is used.
  const { id: _drop, ...noId } = third;
  void _drop;
  const created = await api('PUT', id3, noId);
  t.equal(created.status, 201, 'PUT creates: 201');
  t.equal((created.body as { id?: string }).id, id3);
  const r3 = await lab.curl(3, ID, { timeoutS: 2 });
  t.equal(r3.body, id3, 'guest 3 served right after the PUT returned');
  t.equal(
    (await lab.curl(3, '/computeMetadata/v1/instance/hostname', { headers: { 'Metadata-Flavor': 'Google' } })).status,
    200,
    'in every dialect',
  );

  // PATCH: RFC 7396 merge patch.
  const patched = await api('PATCH', id3, { hostname: 'renamed-3', user_data: null, tags: { team: 'x' } });
  t.equal(patched.status, 200);
  t.equal((await lab.curl(3, '/latest/meta-data/hostname')).body, 'renamed-3', 'PATCH served at once');
  t.equal((await lab.curl(3, '/latest/user-data')).status, 404, 'null removes a member');
  t.same((patched.body as { tags?: unknown }).tags, { lab: lab.prefix, guest: '3', team: 'x' }, 'objects merge');

  // Bad input: field paths.
  const bad = await api('PUT', id3, { ...third, ports: [{ ...third.ports[0], mac: 'zz' }] });
  t.equal(bad.status, 400);
  t.match(bad.body, { problems: [{ path: 'ports[0].mac' }] }, 'invalid field: 400 with its path');
  const mismatch = await api('PUT', id3, { ...third, id: 'i-other' });
  t.match(mismatch, { status: 400, body: { problems: [{ path: 'id' }] } }, 'id in the body must be the path id');
  const notJson = await new Promise<number>((resolve, reject) => {
    void import('node:http').then(({ default: http }) => {
      const req = http.request({ socketPath: sock, method: 'PUT', path: `/v1/instances/${id3}` }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('{"id": ');
    });
  });
  t.equal(notJson, 400, 'not JSON: 400');
  const g1 = config.instances[0] as LabInstance;
  const stolen = await api('PUT', 'i-thief', { ...third, id: 'i-thief', ports: g1.ports });
  t.equal(stolen.status, 400, "another instance's port: 400");
  t.match(JSON.stringify(stolen.body), /ports\[0\]/);
  const big = await api('PUT', id3, { ...third, user_data: 'x'.repeat(2 * 1024 * 1024) });
  t.equal(big.status, 413, 'body over 1 MiB: 413');
  t.equal((await lab.curl(3, '/latest/meta-data/hostname')).body, 'renamed-3', 'refused writes changed nothing');

  // One owner per id.
  t.equal((await api('PUT', g1.id, g1)).status, 409, 'PUT of a config-file instance: 409');
  t.equal((await api('DELETE', g1.id)).status, 409, 'DELETE of a config-file instance: 409');
  t.equal((await api('DELETE', 'i-nope')).status, 404);
  t.equal((await api('PATCH', 'i-nope', {})).status, 404);

  // DELETE: refused on the next packet.
  t.equal((await api('DELETE', id3)).status, 200);
  const after = await lab.curl(3, ID, { timeoutS: 1 });
  t.not(after.status, 200, `deleted guest refused at once (status ${after.status})`);
  t.notMatch(after.body, /i-/);

  // Durable across kill -9.
  t.equal((await api('PUT', id3, third)).status, 201);
  await daemon.kill9();
  const again = await startDaemon(lab, configPath);
  t.equal((await lab.curl(3, ID)).body, id3, 'API instance back after kill -9 and restart');

  // A file that defines an API instance's id: SIGHUP refused (still served), start refused (exit 2).
  const clash = { ...config, instances: [...config.instances, third] };
  await lab.writeConfig(clash);
  const since = again.lines().length;
  process.kill(again.pid, 'SIGHUP');
  await again.waitFor((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('reload refused'), 5000, since);
  t.pass('SIGHUP with a clashing file: reload refused');
  t.equal((await lab.curl(3, ID)).body, id3, 'still served');
  await again.stop();
  const r = await runRaw(inNetns(lab.hv, [process.execPath, join(repoRoot(), 'bin', 'linkgate'), 'serve', '--config', configPath]), {
    timeoutMs: 15_000,
  });
  t.equal(r.code, 2, 'start with a clashing file: exit 2');
  t.match(r.stderr, /instances\[2\]\.id.*admin API/, 'with the field path and the way out');
});
