/**
 * Runs the daemon inside a lab's hv namespace, for tests, the demo and benchmarks:
 * `ip netns exec <hv> node <repo>/bin/linkgate serve --config FILE`. `ip netns exec` execs in
 * place, so the child's PID is the daemon's; it is only ever signalled by that PID.
 */
import { inNetns } from './netns.js';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Lab } from './lab.js';

export type LogLine = Record<string, unknown>;

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface DaemonOptions {
  /** Added to (and overriding) the inherited environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Extra arguments after `serve --config FILE`. */
  readonly args?: readonly string[];
  /** Script run with node instead of <repo>/bin/linkgate (e.g. a stub in tests). */
  readonly bin?: string;
  /** How long to wait for the `"msg":"ready"` line; default 15 000 ms. */
  readonly readyTimeoutMs?: number;
}

export interface DaemonProc {
  readonly pid: number;
  /** Parsed JSON log lines so far (stdout lines that are JSON objects). */
  lines(): LogLine[];
  /** Everything the daemon wrote so far. */
  output(): { stdout: string; stderr: string };
  /**
   * Resolves with the first log line (at index >= `since`, default 0, i.e. already-seen lines
   * count) that satisfies pred; rejects on timeout (default 5 000 ms) or when the daemon exits.
   * Pass `d.lines().length` as `since` to wait only for new lines.
   */
  waitFor(pred: (line: LogLine) => boolean, timeoutMs?: number, since?: number): Promise<LogLine>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<ExitInfo>;
  running(): boolean;
  /** Sends `signal` (default SIGTERM) to the PID, waits for exit; SIGKILL after 10 s. */
  stop(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** SIGKILL, then waits for exit. */
  kill9(): Promise<ExitInfo>;
}

/** The repository root: the nearest ancestor of this file with linkgate's package.json. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        if ((JSON.parse(readFileSync(pj, 'utf8')) as { name?: unknown }).name === 'linkgate') return dir;
      } catch {
        /* not ours; keep going up */
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('linkgate repository root not found');
    dir = up;
  }
}

const STOP_GRACE_MS = 10_000;

export function startDaemon(lab: Lab, configFile: string, opts: DaemonOptions = {}): Promise<DaemonProc> {
  const bin = opts.bin ?? join(repoRoot(), 'bin', 'linkgate');
  // ip → env → node all exec in place: the child's PID is the daemon's.
  const [cmd, ...argv] = inNetns(lab.hv, [process.execPath, bin, 'serve', '--config', configFile, ...(opts.args ?? [])]);
  const child = spawn(cmd as string, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(opts.env ?? {}) },
  });
  const pid = child.pid;
  if (pid === undefined) {
    return new Promise((_, reject) => child.once('error', (e) => reject(new Error(`spawn ip netns exec: ${e.message}`))));
  }
  lab.trackPid(pid);

  const parsed: LogLine[] = [];
  let stdout = '';
  let stderr = '';
  let partial = '';
  let exit: ExitInfo | undefined;
  interface Waiter {
    pred: (l: LogLine) => boolean;
    resolve: (l: LogLine) => void;
    reject: (e: Error) => void;
    timer: NodeJS.Timeout;
  }
  const waiters = new Set<Waiter>();

  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      lab.untrackPid(pid);
      resolve(exit);
    });
  });
  child.once('error', () => {
    /* reported through 'exit' / the ready timeout */
  });
  // Once the process and its pipes are done, fail whoever still waits.
  child.once('close', () => {
    const why = new Error(`daemon exited (code ${exit?.code ?? null}, signal ${exit?.signal ?? null})\n${tail()}`);
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(why);
    }
    waiters.clear();
  });

  const tail = (): string => `--- stdout ---\n${stdout.slice(-8000)}\n--- stderr ---\n${stderr.slice(-8000)}`;

  const onLine = (text: string): void => {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return;
    const line = obj as LogLine;
    parsed.push(line);
    for (const w of waiters) {
      if (w.pred(line)) {
        clearTimeout(w.timer);
        waiters.delete(w);
        w.resolve(line);
      }
    }
  };

  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (s: string) => {
    stdout += s;
    partial += s;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const l = partial.slice(0, nl).trim();
      partial = partial.slice(nl + 1);
      if (l !== '') onLine(l);
    }
  });
  child.stdout.on('end', () => {
    if (partial.trim() !== '') onLine(partial.trim());
    partial = '';
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr += s;
  });

  const signal = (sig: NodeJS.Signals): void => {
    if (exit !== undefined) return; // reaped: the PID may belong to someone else now
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  };

  const waitFor = (pred: (l: LogLine) => boolean, timeoutMs = 5000, since = 0): Promise<LogLine> => {
    const seen = parsed.slice(since).find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    if (exit !== undefined && child.stdout.readableEnded) {
      return Promise.reject(new Error(`daemon already exited (code ${exit.code}, signal ${exit.signal})\n${tail()}`));
    }
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for a log line\n${tail()}`));
        }, timeoutMs),
      };
      waiters.add(w);
    });
  };

  let stopping: Promise<ExitInfo> | undefined;
  const stop = (sig: NodeJS.Signals = 'SIGTERM'): Promise<ExitInfo> => {
    if (exit !== undefined) return Promise.resolve(exit);
    signal(sig);
    if (stopping === undefined) {
      const timer = setTimeout(() => signal('SIGKILL'), STOP_GRACE_MS);
      stopping = exited.finally(() => clearTimeout(timer));
    }
    return stopping;
  };

  const proc: DaemonProc = {
    pid,
    lines: () => [...parsed],
    output: () => ({ stdout, stderr }),
    waitFor,
    exited,
    running: () => exit === undefined,
    stop,
    kill9: () => stop('SIGKILL'),
  };
  lab.onDown(() => stop());

  const readyMs = opts.readyTimeoutMs ?? 15_000;
  return waitFor((l) => l['msg'] === 'ready', readyMs).then(
    () => proc,
    async (e: unknown) => {
      if (exit === undefined) await stop('SIGKILL');
      throw new Error(`daemon did not become ready: ${e instanceof Error ? e.message : String(e)}`);
    },
  );
}
