// A real etcd (Debian's etcd-server, installed by scripts/test-services.sh) inside a lab's
// hypervisor namespace, on 127.0.0.1 there, with its data directory under the lab's /tmp/<prefix>.
// Driven through etcd's v3 JSON gateway with curl in the same namespace, on 127.0.0.2: the daemon's
// endpoint (127.0.0.1) can be left out of a start (`hidden`) to make changes it cannot see.
import { join } from 'node:path';
import type { Lab } from '../../src/lab/lab.js';
import { eventually, type Teardownable } from './net.js';
import { hvProcess } from './service.js';

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
  const proc = hvProcess(lab);
  let log = '';
  const call = async (path: string, body: unknown): Promise<unknown> =>
    JSON.parse(await lab.hvExec(['curl', '-sS', '-m', '5', '-X', 'POST', `${control}${path}`, '-d', JSON.stringify(body)])) as unknown;
  const start = async (opts: { hidden?: boolean } = {}): Promise<void> => {
    const c = proc.spawn(
      [
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
      ],
      ['ignore', 'pipe', 'pipe'],
    );
    c.stdout?.on('data', (d: Buffer) => (log += d.toString()));
    c.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
    await eventually(async () => {
      if (c.exitCode !== null) throw new Error(`etcd exited ${c.exitCode}\n${log}`);
      try {
        return (await lab.hvExec(['curl', '-sS', '-m', '1', `${control}/health`])).includes('true');
      } catch {
        return false;
      }
    }, 15_000);
  };
  const stop = (): Promise<void> => proc.stop();
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
