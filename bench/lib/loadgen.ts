/**
 * Load generators, always run inside a guest namespace: wrk (Debian's) for keep-alive and for
 * `Connection: close` runs, and lgload (bench/load/lgload.c, compiled here) for open-loop rates,
 * many guests started at one instant, and cloud-init-style crawls.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inNetns, run, runRaw } from '../../src/lab/netns.js';
import { repoRoot } from './machine.js';

// ---- wrk -------------------------------------------------------------------------------------

export interface WrkResult {
  readonly requests: number;
  readonly duration_s: number;
  readonly rps: number;
  readonly p50_us: number;
  readonly p90_us: number;
  readonly p99_us: number;
  readonly max_us: number;
  /** connect + read + write + timeout errors. */
  readonly socket_errors: number;
  /** Responses that were not 2xx/3xx. */
  readonly status_errors: number;
  /** TCP connections the guest opened during the run (its /proc/net/snmp ActiveOpens), per request. */
  readonly conns_per_req: number;
  /** Scripted runs (isolation, IMDSv2): what the script counted. */
  readonly script?: Readonly<Record<string, number>>;
}

/** wrk's done() hook, printing one JSON line (exact microsecond percentiles, error counts). */
const DONE_LUA = `
done = function(summary, latency, requests)
  local e = summary.errors
  local extra = ""
  if script_counts ~= nil then extra = script_counts() end
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d%s}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, extra))
end
`;

/**
 * IMDSv2 as a client does it: a token PUT, then reads carrying the token. Requests alternate
 * PUT / GET per thread; a response carrying the TTL header is a fresh token.
 */
const IMDSV2_LUA = `
token = nil
nextput = true
tokens = 0
gets = 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
request = function()
  if nextput or token == nil then
    nextput = false
    return wrk.format("PUT", "/latest/api/token", { ["X-aws-ec2-metadata-token-ttl-seconds"] = "21600", ["Connection"] = CONN })
  end
  nextput = true
  return wrk.format("GET", PATH, { ["X-aws-ec2-metadata-token"] = token, ["Connection"] = CONN })
end
response = function(status, headers, body)
  if headers["X-aws-ec2-metadata-token-ttl-seconds"] ~= nil and status == 200 then
    token = body
    tokens = tokens + 1
  elseif status == 200 then
    gets = gets + 1
  end
end
-- done() runs in the main Lua state: the counts live in each thread's state.
script_counts = function()
  local t, g = 0, 0
  for _, th in ipairs(threads) do
    t = t + th:get("tokens")
    g = g + th:get("gets")
  end
  return string.format(',"tokens":%d,"gets":%d', t, g)
end
`;

/**
 * Every request a path of its own (`PATH?miss=TAG-N`): each one a cache miss of the upstream
 * backend, the first fetch of that (instance, path). The counter is per wrk thread (-t1: one).
 */
const UNIQUE_LUA = `
n = 0
request = function()
  n = n + 1
  local h = { ["Connection"] = CONN }
  for k, v in pairs(HEADERS) do h[k] = v end
  return wrk.format("GET", PATH .. "?miss=" .. TAG .. "-" .. n, h)
end
`;

export interface WrkOptions {
  readonly ns: string;
  readonly path: string;
  readonly connections: number;
  readonly durationS: number;
  /** New TCP connection per request (`Connection: close`). */
  readonly close: boolean;
  /** IMDSv2: token PUT + GET pairs. */
  readonly imdsv2?: boolean;
  /** Every request its own path: `<path>?miss=<uniqueTag>-<n>` (the tag keeps runs apart). */
  readonly uniqueTag?: string;
  /** Extra request headers (not with imdsv2). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Where the Lua scripts are written. */
  readonly dir: string;
}

async function activeOpens(ns: string): Promise<number> {
  const snmp = await run(inNetns(ns, ['cat', '/proc/net/snmp']));
  const lines = snmp.split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = (lines[0] ?? '').split(/\s+/);
  const values = (lines[1] ?? '').split(/\s+/);
  const i = names.indexOf('ActiveOpens');
  return i >= 0 ? Number(values[i]) : NaN;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  mkdirSync(o.dir, { recursive: true });
  const conn = o.close ? 'close' : 'keep-alive';
  let lua = DONE_LUA;
  if (o.imdsv2 === true) lua = `CONN = "${conn}"\nPATH = "${o.path}"\n${IMDSV2_LUA}\n${DONE_LUA}`;
  else if (o.uniqueTag !== undefined) {
    const headers = Object.entries(o.headers ?? {})
      .map(([k, v]) => `[${JSON.stringify(k)}] = ${JSON.stringify(v)}`)
      .join(', ');
    lua = `CONN = "${conn}"\nPATH = "${o.path}"\nTAG = "${o.uniqueTag}"\nHEADERS = { ${headers} }\n${UNIQUE_LUA}\n${DONE_LUA}`;
  }
  const scripted = o.imdsv2 === true || o.uniqueTag !== undefined;
  const script = join(o.dir, o.imdsv2 === true ? `imdsv2-${conn}.lua` : o.uniqueTag !== undefined ? `unique-${conn}.lua` : 'done.lua');
  writeFileSync(script, lua);
  const argv = ['wrk', '-t1', `-c${o.connections}`, `-d${o.durationS}s`, '--timeout', '5s', '-s', script];
  if (o.close && !scripted) argv.push('-H', 'Connection: close');
  if (!scripted) for (const [k, v] of Object.entries(o.headers ?? {})) argv.push('-H', `${k}: ${v}`);
  argv.push(`http://169.254.169.254${o.path}`);
  const before = await activeOpens(o.ns);
  const r = await runRaw(inNetns(o.ns, argv), { timeoutMs: (o.durationS + 20) * 1000 });
  const after = await activeOpens(o.ns);
  const line = r.stdout.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (r.code !== 0 || line === undefined) {
    throw new Error(`wrk in ${o.ns} failed (exit ${r.code}): ${r.stderr.trim()} ${r.stdout.slice(-400)}`);
  }
  const j = JSON.parse(line.slice('WRKJSON '.length)) as Record<string, number>;
  const n = (k: string): number => j[k] ?? 0;
  const duration = n('duration_us') / 1e6;
  const script_ = o.imdsv2 === true ? { tokens: n('tokens'), gets: n('gets') } : undefined;
  return {
    requests: n('requests'),
    duration_s: duration,
    rps: duration > 0 ? n('requests') / duration : 0,
    p50_us: n('p50'),
    p90_us: n('p90'),
    p99_us: n('p99'),
    max_us: n('max'),
    socket_errors: n('connect') + n('read') + n('write') + n('timeout'),
    status_errors: n('status'),
    conns_per_req: n('requests') > 0 ? (after - before) / n('requests') : NaN,
    ...(script_ !== undefined ? { script: script_ } : {}),
  };
}

// ---- lgload ----------------------------------------------------------------------------------

export interface LgloadResult {
  readonly mode: 'get' | 'crawl';
  readonly requests: number;
  readonly ok: number;
  readonly errors: number;
  readonly non200: number;
  readonly mismatches: number;
  /** CLOCK_REALTIME, µs. */
  readonly start_us: number;
  readonly end_us: number;
  readonly elapsed_s: number;
  readonly rps: number;
  readonly p50_us: number;
  readonly p90_us: number;
  readonly p99_us: number;
  readonly max_us: number;
  readonly first_error: string;
}

/** Compiles bench/load/lgload.c (when the binary is missing or older); returns its path. */
export async function buildLgload(): Promise<string> {
  const src = join(repoRoot(), 'bench', 'load', 'lgload.c');
  const outDir = join(repoRoot(), 'node_modules', '.cache', 'linkgate');
  const bin = join(outDir, 'lgload');
  if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) return bin;
  mkdirSync(outDir, { recursive: true });
  await run(['cc', '-O2', '-Wall', '-o', bin, src]);
  return bin;
}

function parseLgload(stdout: string, what: string): LgloadResult {
  const line = stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error(`lgload (${what}) printed no result: ${stdout.slice(-300)}`);
  return JSON.parse(line) as LgloadResult;
}

/** Runs lgload to completion in a namespace. */
export async function runLgload(bin: string, ns: string, args: readonly string[], maxS: number): Promise<LgloadResult> {
  const r = await runRaw(inNetns(ns, [bin, ...args]), { timeoutMs: (maxS + 20) * 1000 });
  if (r.code !== 0) throw new Error(`lgload in ${ns} failed (exit ${r.code}): ${r.stderr.trim()}`);
  return parseLgload(r.stdout, ns);
}

/** Reads a raw latency dump (-o): little-endian uint32 microseconds. */
export function readLatencies(file: string): Uint32Array {
  const b = readFileSync(file);
  const out = new Uint32Array(b.length >>> 2);
  for (let i = 0; i < out.length; i++) out[i] = b.readUInt32LE(i * 4);
  return out;
}

export interface Gang {
  /** Starts every member at the same instant; resolves with each one's result, in order. */
  go(): Promise<LgloadResult[]>;
  /** Kills every member still running (by PID). */
  kill(): void;
}

/**
 * Spawns lgload with -w in each namespace and waits until every one has printed "ready"; go()
 * then writes one byte to each stdin, so they all start within a few hundred microseconds.
 */
export async function lgloadGang(
  bin: string,
  members: readonly { ns: string; args: readonly string[] }[],
  maxS: number,
  track: { add(pid: number): void; remove(pid: number): void },
): Promise<Gang> {
  const procs: { child: ChildProcessWithoutNullStreams; out: string; done: Promise<number | null> }[] = [];
  const kill = (): void => {
    for (const p of procs) {
      if (p.child.exitCode === null && p.child.signalCode === null && p.child.pid !== undefined) {
        try {
          process.kill(p.child.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  };
  try {
    const ready: Promise<void>[] = [];
    for (const m of members) {
      // args[0] is the mode (get|crawl); -w goes after it.
      const [cmd, ...argv] = inNetns(m.ns, [bin, m.args[0] ?? 'get', '-w', ...m.args.slice(1)]);
      const child = spawn(cmd as string, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
      if (child.pid !== undefined) track.add(child.pid);
      const p = { child, out: '', done: new Promise<number | null>((res) => child.once('close', (code) => res(code))) };
      void p.done.then(() => {
        if (child.pid !== undefined) track.remove(child.pid);
      });
      child.stdout.setEncoding('utf8');
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
      child.stdin.on('error', () => {
        /* exited early: its exit code says why */
      });
      ready.push(
        new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`lgload in ${m.ns} not ready after 30 s: ${err}`)), 30_000);
          child.stdout.on('data', (s: string) => {
            p.out += s;
            if (p.out.includes('ready\n')) {
              clearTimeout(t);
              resolve();
            }
          });
          void p.done.then((code) => {
            clearTimeout(t);
            reject(new Error(`lgload in ${m.ns} exited (${code}) before starting: ${err}`));
          });
        }),
      );
      procs.push(p);
    }
    await Promise.all(ready);
  } catch (e) {
    kill();
    throw e;
  }
  return {
    kill,
    async go() {
      for (const p of procs) p.child.stdin.write('g');
      const timer = setTimeout(kill, (maxS + 30) * 1000);
      try {
        const codes = await Promise.all(procs.map((p) => p.done));
        return procs.map((p, i) => {
          if (codes[i] !== 0) throw new Error(`lgload in ${members[i]?.ns ?? '?'} exited ${codes[i]}`);
          return parseLgload(p.out, members[i]?.ns ?? '?');
        });
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
