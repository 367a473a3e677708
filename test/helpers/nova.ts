// Runs test/helpers/nova-server.mjs inside a lab's hypervisor namespace, on 127.0.0.1 there, and
// talks to it over the IPC channel (which `ip netns exec` passes through: it execs in place).
import { join } from 'node:path';
import { repoRoot } from '../../src/lab/daemon.js';
import type { Lab } from '../../src/lab/lab.js';
import type { Teardownable } from './net.js';
import { hvProcess } from './service.js';

/** An instance nova knows; the optional fields fill its EC2 tree under /latest/ (nova-server.mjs). */
export interface NovaInstance {
  readonly project: string;
  readonly hostname?: string;
  readonly mac?: string;
  readonly ipv4?: string;
  readonly ssh_keys?: readonly string[];
  readonly user_data?: string;
  readonly tags?: Readonly<Record<string, string>>;
}

export interface NovaOptions {
  readonly port: number;
  readonly secret: string;
  readonly instances: Readonly<Record<string, NovaInstance>>;
}

export interface NovaState {
  readonly calls: number;
  /** Calls per `<instance id> <url>`. */
  readonly byKey: Readonly<Record<string, number>>;
}

export interface NovaTimes extends NovaState {
  /** Per key as in byKey: when each call arrived (ms, the server's monotonic clock). */
  readonly times: Readonly<Record<string, readonly number[]>>;
}

export interface Nova {
  readonly url: string;
  state(): Promise<NovaState>;
  /** Calls for (instance id, url) so far. */
  callsFor(id: string, url: string): Promise<number>;
  setDelay(ms: number): Promise<void>;
  /** Counts and arrival times of every call since the start or the last reset. */
  times(): Promise<NovaTimes>;
  /** Counts (and times) from 0 again. */
  reset(): Promise<void>;
  /** SIGKILL (by PID) and wait: the backend is down. */
  stop(): Promise<void>;
  /** Started again on the same port (counts start from 0). */
  restart(): Promise<void>;
}

export async function startNova(t: Teardownable, lab: Lab, opts: NovaOptions): Promise<Nova> {
  const proc = hvProcess(lab);
  const launch = async (): Promise<void> => {
    const c = proc.spawn(
      [process.execPath, join(repoRoot(), 'test', 'helpers', 'nova-server.mjs'), JSON.stringify(opts)],
      ['ignore', 'inherit', 'inherit', 'ipc'],
    );
    await new Promise<void>((resolve, reject) => {
      c.once('message', () => resolve());
      c.once('exit', (code) => reject(new Error(`nova exited (${code})`)));
    });
  };
  const stop = (): Promise<void> => proc.stop();
  const ask = (msg: object): Promise<NovaState> =>
    new Promise((resolve, reject) => {
      const c = proc.child;
      if (!c) return reject(new Error('nova is stopped'));
      c.once('message', (m) => resolve(m as NovaState));
      c.send(msg);
    });
  await launch();
  t.teardown(stop);
  return {
    url: `http://127.0.0.1:${opts.port}`,
    state: () => ask({ cmd: 'calls' }),
    callsFor: async (id, url) => (await ask({ cmd: 'calls' })).byKey[`${id} ${url}`] ?? 0,
    setDelay: async (ms) => void (await ask({ cmd: 'delay', ms })),
    times: async () => (await ask({ cmd: 'times' })) as NovaTimes,
    reset: async () => void (await ask({ cmd: 'reset' })),
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
  };
}
