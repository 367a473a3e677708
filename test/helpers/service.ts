// A server process a test runs inside a lab's hypervisor namespace (etcd, the fake Nova): spawned
// through `ip netns exec` with its PID tracked by the lab (the safety net kills it if the test
// process dies), stopped by PID with SIGKILL. Waiting until it answers is the caller's: each
// server tells it its own way.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { inNetns } from '../../src/lab/netns.js';
import type { Lab } from '../../src/lab/lab.js';

export interface HvProcess {
  /** The running process, if any (the last one spawned and not stopped). */
  readonly child: ChildProcess | undefined;
  /** Spawns `argv` in the lab's hypervisor namespace; the previous process, if any, must be stopped first. */
  spawn(argv: readonly string[], stdio: StdioOptions): ChildProcess;
  /** SIGKILL (by PID) and wait for its exit; nothing when it is not running. */
  stop(): Promise<void>;
}

export function hvProcess(lab: Lab): HvProcess {
  let child: ChildProcess | undefined;
  return {
    get child() {
      return child;
    },
    spawn(argv, stdio) {
      const [cmd, ...args] = inNetns(lab.hv, [...argv]);
      const c = spawn(cmd as string, args, { stdio });
      child = c;
      if (c.pid !== undefined) lab.trackPid(c.pid);
      return c;
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const gone = new Promise((r) => c.once('exit', r));
      if (c.pid !== undefined) process.kill(c.pid, 'SIGKILL');
      await gone;
      if (c.pid !== undefined) lab.untrackPid(c.pid);
    },
  };
}
