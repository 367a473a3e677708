// A real etcd (Debian's etcd-server, installed by scripts/test-services.sh) inside a lab's
// hypervisor namespace, on 127.0.0.1 there, with its data directory under the lab's /tmp/<prefix>.
// Driven through etcd's v3 JSON gateway with curl in the same namespace, on 127.0.0.2: the daemon's
// endpoint (127.0.0.1) can be left out of a start (`hidden`) to make changes it cannot see.
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { inNetns } from '../../src/lab/netns.js';
import type { Lab } from '../../src/lab/lab.js';
import { eventually, type Teardownable } from './net.js';

export interface Etcd {
  readonly url: string;
  put(key: string, value: string): Promise<string>;
  del(key: string): Promise<void>;
  /** The current revision. */
  revision(): Promise<number>;
  compact(revision: number): Promise<void>;
  stop(): Promise<void>;
  /** `hidden`: listen on the control address only (the daemon cannot reach it). */
  start(opts?: { hidden?: boolean }): Promise<void>;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

export async function startEtcd(t: Teardownable, lab: Lab, port = 2379): Promise<Etcd> {
  const url = `http://127.0.0.1:${port}`;
  const control = `http://127.0.0.2:${port}`;
  const peer = `http://127.0.0.1:${port + 1}`;
  let child: ChildProcess | undefined;
  let log = '';
  const call = async (path: string, body: unknown): Promise<unknown> =>
    JSON.parse(await lab.hvExec(['curl', '-sS', '-m', '5', '-X', 'POST', `${control}${path}`, '-d', JSON.stringify(body)])) as unknown;
  const start = async (opts: { hidden?: boolean } = {}): Promise<void> => {
    const argv = inNetns(lab.hv, [
      'etcd',
      '--name',
      'lg',
      '--data-dir',
      join(lab.dir, 'etcd'),
      '--listen-client-urls',
      opts.hidden === true ? control : `${url},${control}`,
      '--advertise-client-urls',
      url,
      '--listen-peer-urls',
      peer,
      '--initial-advertise-peer-urls',
      peer,
      '--initial-cluster',
      `lg=${peer}`,
    ]);
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
    if (c.pid !== undefined) lab.trackPid(c.pid);
    await eventually(async () => {
      if (c.exitCode !== null) throw new Error(`etcd exited ${c.exitCode}\n${log}`);
      try {
        return (await lab.hvExec(['curl', '-sS', '-m', '1', `${control}/health`])).includes('true');
      } catch {
        return false;
      }
    }, 15_000);
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
    await gone;
    if (c.pid !== undefined) lab.untrackPid(c.pid);
  };
  await start();
  t.teardown(stop);
  return {
    url,
    put: async (key, value) => {
      const r = (await call('/v3/kv/put', { key: b64(key), value: b64(value) })) as { header?: { revision?: string } };
      return r.header?.revision ?? '0';
    },
    del: async (key) => void (await call('/v3/kv/deleterange', { key: b64(key) })),
    revision: async () => Number(((await call('/v3/kv/range', { key: b64('/') })) as { header: { revision: string } }).header.revision),
    compact: async (revision) => void (await call('/v3/kv/compaction', { revision: String(revision), physical: true })),
    stop,
    start,
  };
}
