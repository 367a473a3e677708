// The etcd fleet registry against a real etcd in the lab's hypervisor namespace: initial load,
// live put/delete, a guest moved to another host, invalid values ignored, etcd restarted while
// serving (last known state kept, resync on reconnect), and a compacted watch revision.
import t, { type Test } from 'tap';
import { existsSync } from 'node:fs';
import { startDaemon } from '../../src/lab/daemon.js';
import type { LabInstance } from '../../src/lab/lab.js';
import { adminGet, eventually, withLab } from '../helpers/net.js';
import { startEtcd } from '../helpers/etcd.js';

t.setTimeout(120_000);

const ID = '/latest/meta-data/instance-id';

t.test(
  'etcd registry',
  { skip: existsSync('/usr/bin/etcd') ? false : 'etcd-server is not installed (scripts/test-services.sh)' },
  async (t) => {
    const lab = await withLab(t, { guests: 4 });
    const etcd = await startEtcd(t, lab, 23_790);
    const config = lab.config({ registry: { etcd: { endpoints: [etcd.url], prefix: '/lg/' } } });
    const all = config.instances.splice(0); // every guest comes from etcd
    const inst = (i: number): LabInstance => all[i - 1] as LabInstance;
    const key = (host: string, i: number): string => `/lg/hosts/${host}/instances/${inst(i).id}`;
    const here = config.host;
    await etcd.put(key(here, 1), JSON.stringify(inst(1)));
    await etcd.put(key(here, 2), JSON.stringify({ ...inst(2), id: undefined })); // id from the key
    await etcd.put(key('hv-other', 3), JSON.stringify(inst(3)));
    await etcd.put(`/lg/hosts/${here}/instances/i-bad`, '{"id": "i-bad", "hostname": ');
    const daemon = await startDaemon(lab, await lab.writeConfig(config));
    void daemon;
    const served = async (i: number): Promise<boolean> => (await lab.curl(i, ID, { timeoutS: 0.3 })).body === inst(i).id;
    /** Guest i is (not) served within `ms`, as seen from the guest (a refused probe takes 0.3 s). */
    const within = async (t: Test, ms: number, what: string, i: number, want: boolean): Promise<void> => {
      const took = await eventually(async () => (await served(i)) === want, ms);
      t.pass(`${what} (${took} ms)`);
    };

    await t.test('initial load: this host only; invalid values counted and ignored', async (t) => {
      // The first request of a fresh guest also resolves ARP: give it more than one 0.3 s probe.
      await within(t, 3000, 'guest 1 from etcd', 1, true);
      await within(t, 3000, 'guest 2 (id taken from its key)', 2, true);
      t.notOk(await served(3), "guest 3 is another host's");
      const h = (await adminGet(config.admin.socket, '/v1/health')).body as {
        etcd: { connected: boolean; invalid: number; invalidKeys: object };
      };
      t.equal(h.etcd.connected, true);
      t.equal(h.etcd.invalid, 1, 'the invalid key is counted');
      t.match(Object.keys(h.etcd.invalidKeys), [/i-bad$/]);
    });

    await t.test('live put and delete within 1 s; a moved guest leaves', async (t) => {
      await etcd.put(key(here, 4), JSON.stringify(inst(4)));
      await within(t, 1000, 'put served', 4, true);
      await etcd.del(key(here, 4));
      await within(t, 1000, 'delete refused', 4, false);
      // Guest 1 moves to another host: deleted here, written there.
      await etcd.del(key(here, 1));
      await etcd.put(key('hv-other', 1), JSON.stringify(inst(1)));
      await within(t, 1000, 'moved away: refused here', 1, false);
      // Guest 3 moves here.
      await etcd.del(key('hv-other', 3));
      await etcd.put(key(here, 3), JSON.stringify(inst(3)));
      await within(t, 1000, 'moved here: served', 3, true);
      // An invalid update drops the key (never a partial instance).
      await etcd.put(key(here, 3), JSON.stringify({ ...inst(3), ports: [{ interface: 'x', mac: 'nope', ipv4: '10.0.0.1' }] }));
      await within(t, 1000, 'invalid update: refused', 3, false);
      await etcd.put(key(here, 3), JSON.stringify(inst(3)));
      await within(t, 1000, 'valid again: served', 3, true);
    });

    await t.test('etcd down: last known state served; back: resynced', async (t) => {
      await etcd.stop();
      await eventually(async () => {
        const h = (await adminGet(config.admin.socket, '/v1/health')).body as { etcd: { connected: boolean } };
        return !h.etcd.connected;
      }, 3000);
      t.pass('health reports etcd disconnected');
      t.ok(await served(2), 'guest 2 still served');
      t.ok(await served(3), 'guest 3 still served');
      await etcd.start();
      // Changes made while the daemon was away (it resumes the watch at its revision).
      await etcd.put(key(here, 4), JSON.stringify(inst(4)));
      await etcd.del(key(here, 2));
      await within(t, 8000, 'after reconnect: put seen', 4, true);
      await within(t, 2000, 'after reconnect: delete seen', 2, false);
      const h = (await adminGet(config.admin.socket, '/v1/health')).body as { etcd: { connected: boolean; reconnects: number } };
      t.equal(h.etcd.connected, true);
      t.ok(h.etcd.reconnects >= 1);
    });

    await t.test('compaction while away: full resync', async (t) => {
      // Changes and a compaction past the daemon's revision while it cannot reach etcd.
      await etcd.stop();
      await etcd.start({ hidden: true });
      await etcd.del(key(here, 4));
      await etcd.put(key(here, 2), JSON.stringify(inst(2)));
      await etcd.compact(await etcd.revision());
      await etcd.stop();
      await etcd.start();
      await within(t, 8000, 'after compaction: put seen', 2, true);
      await within(t, 2000, 'after compaction: delete seen', 4, false);
      const h = (await adminGet(config.admin.socket, '/v1/health')).body as { etcd: { fullSyncs: number; compactions: number } };
      t.comment(`fullSyncs ${h.etcd.fullSyncs}, compactions ${h.etcd.compactions}`);
      t.ok(h.etcd.compactions >= 1 && h.etcd.fullSyncs >= 2, 'the watch saw the compaction; resynced through a full read');
    });
  },
);
