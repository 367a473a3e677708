/**
 * Small helpers around iproute2 and friends: argv in, stdout out, no shell ever.
 * Only the lab (demo, tests, benchmarks) uses these; production code talks netlink.
 */
import { spawn } from 'node:child_process';

export interface RunOptions {
  /** Written to the child's stdin, then stdin is closed. */
  readonly input?: string | Buffer;
  /** Kill the child (SIGKILL, by its PID) after this long; default 30 s. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  /** Resolve instead of throwing when the command exits non-zero (see runRaw). */
  readonly allowFail?: boolean;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code; null when killed by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * `ip netns exec NS env -u NODE_OPTIONS ...`: a test runner that wraps child_process (tap's
 * processinfo injects its loader into NODE_OPTIONS of every spawn) must not follow into guests
 * and daemons, so the variable is dropped after the namespace switch.
 */
export function inNetns(ns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', ns, 'env', '-u', 'NODE_OPTIONS', ...argv];
}

/** Runs argv[0] with the rest as arguments; resolves with everything, whatever the exit status. */
export function runRaw(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('run: empty argv'));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.env !== undefined ? { env: opts.env } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }, opts.timeoutMs ?? 30_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${argv.join(' ')}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code,
        signal,
      });
    });
    child.stdin.on('error', () => {
      /* child exited without reading its input: the exit status tells */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command; returns its stdout; throws an Error carrying stderr when it fails. */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await runRaw(argv, opts);
  if (r.code !== 0 && opts.allowFail !== true) {
    const why = r.signal !== null ? `signal ${r.signal}` : `exit ${r.code}`;
    throw Object.assign(new Error(`${argv.join(' ')}: ${why}: ${r.stderr.trim()}`), {
      stderr: r.stderr,
      stdout: r.stdout,
      code: r.code,
    });
  }
  return r.stdout;
}

/** `ip netns exec NS argv...` */
export function nsExec(ns: string, argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  return run(inNetns(ns, argv), opts);
}

/** `ip netns exec NS argv...`, resolving with the full result whatever the exit status. */
export function nsExecRaw(ns: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return runRaw(inNetns(ns, argv), opts);
}

export async function addNetns(ns: string): Promise<void> {
  await run(['ip', 'netns', 'add', ns]);
}

/** Deletes a namespace; a namespace that is already gone is not an error. */
export async function delNetns(ns: string): Promise<void> {
  const r = await runRaw(['ip', 'netns', 'del', ns]);
  if (r.code === 0) return;
  if (!(await listNetns()).includes(ns)) return;
  throw new Error(`ip netns del ${ns}: ${r.stderr.trim()}`);
}

/** Names of all named network namespaces (`ip netns list`). */
export async function listNetns(): Promise<string[]> {
  const out = await run(['ip', 'netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}
