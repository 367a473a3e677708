// Crash safety of the admin API's state: a stream of writes, the daemon killed with SIGKILL at a
// random point, 50 times; after each restart every acknowledged write is there, an unacknowledged
// one is either there whole or not at all, and no stored file is half-written.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon } from '../../src/lab/daemon.js';
import { adminRequest, withServedLab } from '../helpers/net.js';

// ~50 daemon starts (0.6 s each) plus the writes: past tap's default 30 s per file.
t.setTimeout(150_000);

const ROUNDS = 50;
const IDS = 16;
const WRITERS = 4;

/** What an id may hold after a crash: its last acknowledged state, or the one in flight. */
interface Track {
  acked: number | null; // version, or null = absent
  inflight: number | null | undefined; // undefined: nothing in flight
}

const idOf = (k: number): string => `i-crash-${k}`;
const instance = (k: number, v: number) => ({
  id: idOf(k),
  hostname: `crash-${k}`,
  ports: [{ interface: `crash${k}`, mac: `52:54:00:cc:00:${k.toString(16).padStart(2, '0')}`, ipv4: `10.99.0.${10 + k}` }],
  tags: { v: String(v) },
  user_data: `#cloud-config\n# version ${v}\n${'x'.repeat((v * 997) % 20000)}`,
});

t.test(`kill -9 during admin writes, ${ROUNDS} times: acknowledged writes survive, nothing half-written`, async (t) => {
  const t0 = Date.now();
  const { lab, daemon: first, configPath, config } = await withServedLab(t, { guests: 0 });
  const sock = config.admin.socket;
  const stateDir = join(config.state_dir, 'instances');
  const track = new Map<number, Track>();
  for (let k = 0; k < IDS; k++) track.set(k, { acked: null, inflight: undefined });
  let daemon = first;
  let version = 0;
  let acks = 0;
  let failures = 0;

  for (let round = 0; round < ROUNDS; round++) {
    const r0 = Date.now();
    if (round > 0) daemon = await startDaemon(lab, configPath);
    if (round < 3) t.comment(`round ${round}: daemon ready in ${Date.now() - r0} ms`);
    // 1. Everything acknowledged is there; the in-flight write is there whole or not at all.
    const listed = await adminRequest(sock, 'GET', '/v1/instances');
    const now = new Map<string, number>();
    for (const i of listed.body as { id: string; tags: { v: string }; user_data: string }[]) {
      const v = Number(i.tags.v);
      if (i.user_data !== instance(0, v).user_data) failures++;
      now.set(i.id, v);
    }
    for (const [k, tr] of track) {
      const got = now.get(idOf(k)) ?? null;
      const ok = got === tr.acked || (tr.inflight !== undefined && got === tr.inflight);
      if (!ok) {
        failures++;
        t.fail(`round ${round}: ${idOf(k)} is ${got}, acknowledged ${tr.acked}, in flight ${tr.inflight}`);
      }
      tr.acked = got;
      tr.inflight = undefined;
    }
    // 2. Every stored file is a complete record (no temporary file is left after start).
    for (const name of readdirSync(stateDir)) {
      if (!name.endsWith('.json')) {
        failures++;
        t.fail(`round ${round}: leftover ${name}`);
        continue;
      }
      const doc = JSON.parse(readFileSync(join(stateDir, name), 'utf8')) as { version: number; instance: { id: string } };
      if (doc.version !== 1 || `${doc.instance.id}.json` !== name) failures++;
    }

    // 3. A stream of writes (one writer per id at a time), killed at a random point.
    let stop = false;
    const writer = async (w: number): Promise<void> => {
      for (let n = 0; !stop; n++) {
        const k = (w + WRITERS * ((n * 7 + round) % (IDS / WRITERS))) % IDS;
        const tr = track.get(k) as Track;
        const del = tr.acked !== null && (n + round) % 5 === 0;
        const v = ++version;
        tr.inflight = del ? null : v;
        try {
          const r = del
            ? await adminRequest(sock, 'DELETE', `/v1/instances/${idOf(k)}`)
            : await adminRequest(sock, 'PUT', `/v1/instances/${idOf(k)}`, instance(k, v));
          if (r.status === 200 || r.status === 201) {
            tr.acked = del ? null : v;
            tr.inflight = undefined;
            acks++;
          } else if (!stop) {
            failures++;
            t.fail(`unexpected ${r.status} ${JSON.stringify(r.body)}`);
          }
        } catch {
          return; // the daemon died mid-request: this write stays "in flight"
        }
      }
    };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    await new Promise((r) => setTimeout(r, 20 + Math.random() * 150));
    await daemon.kill9();
    stop = true;
    await Promise.all(writers);
  }
  t.comment(`${ROUNDS} rounds in ${Date.now() - t0} ms`);
  t.equal(failures, 0, `${ROUNDS} kills, ${acks} acknowledged writes, all accounted for`);
  t.ok(acks > ROUNDS * 5, 'writes were acknowledged in every round (on average)');
});
