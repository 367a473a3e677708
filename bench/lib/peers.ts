/**
 * The servers compared, each run in turn inside the lab's hypervisor namespace, listening on
 * 169.254.169.254:80 there, so every guest reaches each over the identical path (guest eth0 →
 * veth → hv). Never more than one at a time; never anything in the machine's own namespace.
 *
 *   nginx      `return 200 <id>` (the ceiling); the id chosen by the guest's source address
 *   haproxy    haproxy → nginx backend on 127.0.0.1:8775 (the hop an OpenStack metadata request
 *              takes), the backend choosing the id by X-Forwarded-For
 *   linkgate   bin/linkgate serve (src/lab/daemon.ts), identity from SO_MARK
 *
 * nginx and haproxy need what linkgate's dataplane would otherwise install: 169.254.169.254/32
 * on the hv's lo and a /32 route to each guest. `plumb()` adds those while a peer runs and
 * removes them before linkgate starts (linkgate owns that address when it runs).
 * Processes are started through `ip netns exec` (which execs in place, so the PID is the
 * server's), registered with the lab (killed by PID on teardown), and stopped by PID.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, type DaemonProc } from '../../src/lab/daemon.js';
import { METADATA_IPV4, type Lab, type LabConfig } from '../../src/lab/lab.js';
import { inNetns, run } from '../../src/lab/netns.js';
import { sleep } from './machine.js';

export type PeerName = 'nginx' | 'haproxy' | 'linkgate';
export const PEERS: readonly PeerName[] = ['nginx', 'haproxy', 'linkgate'];

export interface Peer {
  readonly name: PeerName;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** RSS of the serving process(es), kB, from /proc/<pid>/status. */
  rssKb(): number;
  /** The main PID while running. */
  pid(): number | undefined;
}

const BACKEND_PORT = 8775;

interface Proc {
  readonly pid: number;
  readonly exited: Promise<void>;
  running(): boolean;
  stderr(): string;
}

function spawnIn(lab: Lab, argv: readonly string[]): Proc {
  const [cmd, ...args] = inNetns(lab.hv, argv);
  const child = spawn(cmd as string, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`cannot spawn ${argv.join(' ')}`);
  lab.trackPid(pid);
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err = (err + s).slice(-4000)));
  let alive = true;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      alive = false;
      lab.untrackPid(pid);
      resolve();
    }),
  );
  return { pid, exited, running: () => alive, stderr: () => err };
}

async function stopProc(p: Proc | undefined): Promise<void> {
  if (p === undefined || !p.running()) return;
  try {
    process.kill(p.pid, 'SIGTERM');
  } catch {
    return;
  }
  const killed = await Promise.race([p.exited.then(() => false), sleep(5000).then(() => true)]);
  if (killed && p.running()) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await p.exited;
  }
}

export function rssKbOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Waits until guest 1 gets a 200 with its own id (the server is up and routed). */
async function waitServing(lab: Lab, expect: string, proc: () => Proc | DaemonProc | undefined, what: string): Promise<void> {
  const until = Date.now() + 15_000;
  let last = '';
  while (Date.now() < until) {
    const r = await lab.curl(1, '/latest/meta-data/instance-id', { timeoutS: 1 });
    if (r.status === 200 && r.body === expect) return;
    last = `status ${r.status} ${r.body.slice(0, 80)} ${r.error.trim()}`;
    const p = proc();
    if (p !== undefined && !p.running()) break;
    await sleep(100);
  }
  const p = proc();
  const err = p !== undefined && 'stderr' in p ? p.stderr() : '';
  throw new Error(`${what} is not serving guest 1: ${last} ${err}`);
}

/** The address and per-guest routes nginx and haproxy need in the hv namespace. */
async function plumb(lab: Lab, on: boolean): Promise<void> {
  const verb = on ? 'add' : 'del';
  const lines = [`addr ${verb} ${METADATA_IPV4}/32 dev lo`];
  for (const g of lab.guests()) lines.push(`route ${verb} ${g.ipv4}/32 dev ${g.hostIf}`);
  // -force: carry on past lines that fail (e.g. deleting what is already gone)
  await run(['ip', '-n', lab.hv, '-force', '-batch', '-'], { input: `${lines.join('\n')}\n`, allowFail: !on });
}

function idMap(config: LabConfig, lab: Lab): string {
  const byIp = new Map(lab.guests().map((g) => [g.ipv4, `i-${lab.prefix}-${g.index}`]));
  for (const inst of config.instances) for (const p of inst.ports) byIp.set(p.ipv4, inst.id);
  return [...byIp].map(([ip, id]) => `    ${ip} "${id}";`).join('\n');
}

function nginxConf(dir: string, listen: string, mapVar: string, map: string): string {
  return `# written by linkgate bench/lib/peers.ts
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  server_tokens off;
  map ${mapVar} $lg_id {
    default "unknown";
${map}
  }
  server {
    listen ${listen} default_server backlog=4096;
    location / {
      default_type text/plain;
      return 200 $lg_id;
    }
  }
}
`;
}

function haproxyConf(): string {
  return `# written by linkgate bench/lib/peers.ts
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option forwardfor
frontend metadata
  bind ${METADATA_IPV4}:80 backlog 4096
  default_backend backend
backend backend
  http-reuse always
  server b1 127.0.0.1:${BACKEND_PORT}
`;
}

export interface PeerContext {
  readonly lab: Lab;
  readonly config: LabConfig;
  readonly configPath: string;
  /** A directory of the lab's for the peers' configs, pid and log files. */
  readonly dir: string;
}

export function makePeer(name: PeerName, ctx: PeerContext): Peer {
  const { lab, config } = ctx;
  const expect1 = config.instances[0]?.id ?? `i-${lab.prefix}-1`;
  const dir = join(ctx.dir, name);
  mkdirSync(dir, { recursive: true });
  const map = idMap(config, lab);

  if (name === 'linkgate') {
    let d: DaemonProc | undefined;
    return {
      name,
      async start() {
        d = await startDaemon(lab, ctx.configPath, { readyTimeoutMs: 120_000 });
        await waitServing(lab, expect1, () => d, 'linkgate');
      },
      async stop() {
        if (d !== undefined) await d.stop();
        d = undefined;
      },
      rssKb: () => rssKbOf(d?.pid),
      pid: () => d?.pid,
    };
  }

  if (name === 'nginx') {
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, nginxConf(dir, `${METADATA_IPV4}:80`, '$remote_addr', map));
    let p: Proc | undefined;
    return {
      name,
      async start() {
        await plumb(lab, true);
        p = spawnIn(lab, ['nginx', '-e', join(dir, 'error.log'), '-p', dir, '-c', conf]);
        await waitServing(lab, expect1, () => p, 'nginx');
      },
      async stop() {
        await stopProc(p);
        p = undefined;
        await plumb(lab, false);
      },
      rssKb: () => rssKbOf(p?.pid),
      pid: () => p?.pid,
    };
  }

  // haproxy → nginx backend
  const backendDir = join(dir, 'backend');
  mkdirSync(backendDir, { recursive: true });
  const backendConf = join(backendDir, 'nginx.conf');
  writeFileSync(backendConf, nginxConf(backendDir, `127.0.0.1:${BACKEND_PORT}`, '$http_x_forwarded_for', map));
  const conf = join(dir, 'haproxy.cfg');
  writeFileSync(conf, haproxyConf());
  let backend: Proc | undefined;
  let p: Proc | undefined;
  return {
    name,
    async start() {
      await plumb(lab, true);
      backend = spawnIn(lab, ['nginx', '-e', join(backendDir, 'error.log'), '-p', backendDir, '-c', backendConf]);
      p = spawnIn(lab, ['haproxy', '-db', '-f', conf]);
      await waitServing(lab, expect1, () => p, 'haproxy → nginx');
    },
    async stop() {
      await stopProc(p);
      await stopProc(backend);
      p = undefined;
      backend = undefined;
      await plumb(lab, false);
    },
    rssKb: () => rssKbOf(p?.pid) + rssKbOf(backend?.pid),
    pid: () => p?.pid,
  };
}
