/**
 * The lab: guests in network namespaces, wired to a "hypervisor" namespace by veth pairs,
 * standing in for VMs on TAP devices. Used by the demo, the network tests and the benchmarks.
 *
 * Names (prefix defaults to `lg` + 4 random hex chars):
 *   <prefix>-hv       the hypervisor namespace (lo up, the gateway address on lo, the bridge if any)
 *   <prefix>-g<i>     guest i (i from 1): lo and eth0 up, ipv4 = subnet .10+i
 *   <prefix>t<i>      guest i's host-side veth end, in <prefix>-hv
 *   <prefix>br        the bridge in <prefix>-hv (options `bridge` / `bridged`): bridged guests'
 *                     host ends are its ports; up, no address at all (IPv4 or IPv6)
 *   <prefix>-up       the "uplink" namespace (option `uplink`): its eth0's peer <prefix>up is
 *                     one more port of the bridge, standing for the host's physical uplink
 *   /tmp/<prefix>/    config file, admin socket, state dir
 *   /run/linkgate-lab/<prefix>.json   what this lab created, so a later process can remove it
 *
 * Addresses and MACs. Every guest i has an address index a (a = i, except with `overlap`, see
 * below). Then: ipv4 = subnet .10+a; MAC = 52:54:00:<2 bytes from the prefix>:<a as 1 hex byte>;
 * with IPv6, ipv6 = fd00:77::<10+a> (the decimal digits of 10+a written as the last group, so
 * guest 1 has 10.77.0.11 and fd00:77::11), prefix /64, added with `nodad`.
 *
 * Tenant networks (`networks`): the guests listed in `tenants` (default: every guest) take
 * networks[k % networks.length] in their order k, so by default guest 1 is on networks[0], guest
 * 2 on networks[1], guest 3 on networks[0], ... With `overlap`, the SECOND tenant guest takes the
 * address index of the FIRST (same IPv4, same IPv6, same MAC, on its own host port and network);
 * every other guest keeps its own index, so addresses stay unique elsewhere.
 *
 * Routes in a guest: bridged guests and odd routed guests `169.254.169.254/32 dev eth0` (on-link);
 * even routed guests `default via <subnet .1> dev eth0 onlink` (the .1 is on hv lo, and only
 * when the lab can have routed guests); IPv6 guests also `fd00:ec2::254/128 dev eth0`.
 *
 * Safety: every link is created inside the hv namespace (`ip -n <hv> link add ... peer ... netns
 * <guest>`), so nothing ever exists in the machine's own namespace; teardown deletes only the
 * names recorded for this prefix.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { addNetns, delNetns, inNetns, listNetns, nsExec, run, runRaw, type RunOptions, type RunResult } from './netns.js';

export const LAB_STATE_DIR = '/run/linkgate-lab';
export const METADATA_IPV4 = '169.254.169.254';
/** EC2's IPv6 metadata address; IPv6 guests have an on-link /128 route to it. */
export const METADATA_IPV6 = 'fd00:ec2::254';
/** Guests' IPv6 prefix: guest i (address index a) has fd00:77::<10+a>/64. */
export const LAB_IPV6_PREFIX = 'fd00:77::';
const NETWORK_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const IFNAME_RE = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,14}$/;
const SYSCTL_RE = /^[A-Za-z0-9_][A-Za-z0-9_./-]*$/;
const CAPTURE_READY_MS = 5_000;
const CAPTURE_STOP_GRACE_MS = 3_000;
const PREFIX_RE = /^[a-z][a-z0-9]{1,9}$/;
const IFNAMSIZ_MAX = 15;
const CREATE_CONCURRENCY = 8;

export type GuestMode = 'onlink' | 'gateway';
/** routed: the host end is a plain interface in hv; bridged: a port of the lab's bridge. */
export type GuestKind = 'routed' | 'bridged';

export interface GuestInfo {
  readonly index: number;
  /** The guest's network namespace. */
  readonly ns: string;
  /** Host-side veth end, in the hv namespace. */
  readonly hostIf: string;
  /** Guest eth0's MAC, lower-case: 52:54:00:<2 bytes from the prefix>:<address index>. */
  readonly mac: string;
  /** Subnet .10 + address index (the index itself, except the second overlapping tenant guest). */
  readonly ipv4: string;
  readonly prefixLen: number;
  /**
   * onlink: `169.254.169.254/32 dev eth0`; gateway: `default via <gateway> dev eth0 onlink`.
   * Bridged guests are always onlink.
   */
  readonly mode: GuestMode;
  readonly kind: GuestKind;
  /** The bridge the host end is a port of (bridged guests only). */
  readonly bridge?: string;
  /** fd00:77::<10+address index>, /64 (IPv6 guests only). */
  readonly ipv6?: string;
  /** The tenant network (guests on one only). */
  readonly network?: string;
}

/** The uplink stand-in: `<prefix>-up`, whose eth0's peer `<prefix>up` is a port of the bridge. */
export interface UplinkInfo {
  readonly ns: string;
  /** The bridge port in the hv namespace. */
  readonly hostIf: string;
}

/** Where to capture: a namespace of this lab and an interface in it. */
export interface CaptureWhere {
  readonly ns: string;
  readonly ifname: string;
}

export interface CaptureOptions {
  /** tcpdump is stopped (SIGINT) after this long even if stop() is never called; default 60. */
  readonly maxSeconds?: number;
}

/** A running `tcpdump -n -l -e --immediate-mode -i IF FILTER` in a lab namespace. */
export interface Capture {
  readonly where: CaptureWhere;
  readonly filter: string;
  /** tcpdump's output lines so far (one per frame). */
  lines(): string[];
  /** Stops tcpdump (SIGINT, then SIGKILL after 3 s); resolves with all its lines. Idempotent. */
  stop(): Promise<string[]>;
}

/**
 * Everything but `guests` is optional; the defaults give routed IPv4 guests on the default network.
 * Index lists (`bridged`, `ipv6`, `tenants`) name guests by index (from 1) and also apply to guests
 * added later with addGuest(); indices never created are ignored.
 */
export interface LabOptions {
  /** Default: `lg` + 4 random lowercase hex chars. Must match /^[a-z][a-z0-9]{1,9}$/. */
  readonly prefix?: string;
  readonly guests: number;
  /** Default 10.77.0.0/24. Guest i gets .10+i, the gateway is .1. */
  readonly subnet?: string;
  /**
   * Creates the bridge `<prefix>br` in hv. Alone (no `bridged`): EVERY guest is bridged, and the
   * gateway address is not put on hv lo (no routed guest can need it).
   */
  readonly bridge?: boolean;
  /** Only these guests are bridged, the others routed (implies the bridge). E.g. `guests: 4, bridged: [3, 4]`. */
  readonly bridged?: readonly number[];
  /** The uplink namespace `<prefix>-up`, its peer a bridge port; needs the bridge. */
  readonly uplink?: boolean;
  /** true: every guest gets IPv6 (fd00:77::<10+a>/64 and the on-link fd00:ec2::254 route); a list: those guests. */
  readonly ipv6?: boolean | readonly number[];
  /** Tenant network names (1 to 32 of a-z 0-9 -), assigned round-robin to the `tenants` guests. */
  readonly networks?: readonly string[];
  /** Guests on tenant networks, in assignment order; default every guest (when `networks` is set). */
  readonly tenants?: readonly number[];
  /**
   * The first two tenant guests (default guests 1 and 2) get the same IPv4, IPv6 and MAC: the
   * first one's. Needs at least two networks, so that they are on different ones.
   */
  readonly overlap?: boolean;
}

/** A plain, mutable configuration object (CONTRACT.md); tests may edit it before writing. */
export interface LabPort {
  interface: string;
  mac: string;
  ipv4: string;
  /** Set for IPv6 guests. */
  ipv6?: string;
  /** Set for bridged guests: `<prefix>br`. */
  bridge?: string;
  /** Set for guests on a tenant network. */
  network?: string;
  [k: string]: unknown;
}
export interface LabInstance {
  id: string;
  hostname: string;
  ports: LabPort[];
  [k: string]: unknown;
}
export interface LabConfig {
  listen: { ipv4: string; port: number };
  admin: { socket: string };
  host: string;
  state_dir: string;
  instances: LabInstance[];
  [k: string]: unknown;
}

export interface CurlOptions {
  readonly method?: string;
  /** Request headers; an empty value sends the header empty (`Name;`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** curl -m; default 5. */
  readonly timeoutS?: number;
  /** Sent with --data-binary @- (stdin). */
  readonly body?: string | Buffer;
  /** Ask for the response headers (curl -D -); they come back in `headers`/`rawHeaders`. */
  readonly responseHeaders?: boolean;
  /** Default `http://169.254.169.254`, or `http://[fd00:ec2::254]` with `ipv6`. */
  readonly baseUrl?: string;
  /** Ask the IPv6 metadata address (when no baseUrl is given). */
  readonly ipv6?: boolean;
  /** Extra curl arguments, placed before the URL (e.g. ['--local-port', '40000']). */
  readonly extraArgs?: readonly string[];
}

export interface CurlResult {
  /** HTTP status; 0 when no response (no connection, timeout before the status line). */
  readonly status: number;
  readonly body: string;
  /** Final response's headers, names lower-case, repeats joined with ", " (when asked). */
  readonly headers?: Record<string, string>;
  /** Every header block curl printed (1xx ones included), verbatim (when asked). */
  readonly rawHeaders?: string;
  /** curl's exit code (0 ok, 7 refused/unreachable, 28 timeout, 52 empty reply, 56 reset, ...). */
  readonly exitCode: number | null;
  /** curl's stderr (its error message, when any). */
  readonly error: string;
}

export interface Lab {
  readonly prefix: string;
  /** The hypervisor namespace, `<prefix>-hv`. */
  readonly hv: string;
  /** `/tmp/<prefix>` */
  readonly dir: string;
  /** `/tmp/<prefix>/linkgate.json` */
  readonly configPath: string;
  readonly subnet: string;
  /** Subnet .1; on the hv namespace's lo as /32, unless every guest is bridged (`bridge` without `bridged`). */
  readonly gateway: string;
  /** `<prefix>br` when the lab has a bridge. */
  readonly bridge: string | undefined;
  /** The uplink stand-in, when asked for. */
  readonly uplink: UplinkInfo | undefined;
  /** Current guests, by index. */
  guests(): GuestInfo[];
  /** Throws for an unknown index. */
  guest(i: number): GuestInfo;
  /** A later-created port: same scheme, next index. */
  addGuest(): Promise<GuestInfo>;
  /** Deletes guest i's namespace (and with it both veth ends). */
  removeGuest(i: number): Promise<void>;
  config(extra?: Readonly<Record<string, unknown>>): LabConfig;
  /** Writes JSON to `configPath` (default: `config()`); returns the path. */
  writeConfig(obj?: unknown): Promise<string>;
  /** Runs argv in guest i's namespace; throws on non-zero exit. */
  exec(i: number, argv: readonly string[], opts?: RunOptions): Promise<string>;
  /** Same, resolving with stdout/stderr/code whatever the exit status. */
  execRaw(i: number, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  /** Runs argv in the hv namespace. */
  hvExec(argv: readonly string[], opts?: RunOptions): Promise<string>;
  /** `sysctl -qw name=value` in the hv namespace (e.g. `net.ipv4.conf.all.rp_filter`, 0). */
  hvSysctl(name: string, value: string | number): Promise<void>;
  /**
   * Starts tcpdump in one of this lab's namespaces and resolves once it is capturing (it printed
   * "listening on"). Rejects for a namespace the lab does not own, or when tcpdump fails to start.
   */
  startCapture(where: CaptureWhere, filter: string, opts?: CaptureOptions): Promise<Capture>;
  /** startCapture, wait `seconds`, stop: the frames seen meanwhile. */
  capture(where: CaptureWhere, filter: string, seconds: number): Promise<string[]>;
  curl(i: number, path: string, opts?: CurlOptions): Promise<CurlResult>;
  /** Runs before namespaces are deleted in down() (e.g. stopping a daemon). */
  onDown(fn: () => unknown): void;
  /** PIDs running inside the lab; down()/downSync() SIGKILL the ones still tracked. */
  trackPid(pid: number): void;
  untrackPid(pid: number): void;
  /** Deletes everything this lab created. Idempotent; already-gone things are not errors. */
  down(): Promise<void>;
  /** Best-effort synchronous teardown, for process 'exit' and signal handlers. Never throws. */
  downSync(): void;
}

/** What a lab created; /run/linkgate-lab/<prefix>.json */
export interface LabState {
  readonly prefix: string;
  readonly created: string;
  readonly pid: number;
  readonly hv: string;
  readonly dir: string;
  readonly namespaces: string[];
  readonly guests: GuestInfo[];
  readonly bridge?: string;
  readonly uplink?: UplinkInfo;
}

// ---------------------------------------------------------------------------------------------

interface Subnet {
  readonly base: number; // network address as uint32
  readonly len: number;
  readonly size: number;
}

function ipToInt(ip: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (m === null) throw new Error(`bad IPv4 address ${ip}`);
  let n = 0;
  for (const part of m.slice(1)) {
    const o = Number(part);
    if (o > 255) throw new Error(`bad IPv4 address ${ip}`);
    n = n * 256 + o;
  }
  return n;
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function parseSubnet(s: string): Subnet {
  const [ip, lenS] = s.split('/');
  const len = Number(lenS);
  if (ip === undefined || !Number.isInteger(len) || len < 8 || len > 28) {
    throw new Error(`bad subnet ${s} (want a.b.c.d/8..28)`);
  }
  const size = 2 ** (32 - len);
  const base = ipToInt(ip) - (ipToInt(ip) % size);
  return { base, len, size };
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/** Two bytes for the MAC, from the prefix: its 4 hex chars when it is `lgXXXX`, else a hash. */
function macBytes(prefix: string): [number, number] {
  const m = /^lg([0-9a-f]{2})([0-9a-f]{2})$/.exec(prefix);
  if (m !== null) return [parseInt(m[1] ?? '0', 16), parseInt(m[2] ?? '0', 16)];
  const h = createHash('sha256').update(prefix).digest();
  return [h[0] ?? 0, h[1] ?? 0];
}

/** A well-formed (but throwaway) ssh-ed25519 public key line. */
function fakeSshKey(seed: string, comment: string): string {
  const name = Buffer.from('ssh-ed25519');
  const key = createHash('sha256').update(seed).digest();
  const blob = Buffer.alloc(4 + name.length + 4 + key.length);
  blob.writeUInt32BE(name.length, 0);
  name.copy(blob, 4);
  blob.writeUInt32BE(key.length, 4 + name.length);
  key.copy(blob, 8 + name.length);
  return `ssh-ed25519 ${blob.toString('base64')} ${comment}`;
}

function statePath(prefix: string): string {
  return join(LAB_STATE_DIR, `${prefix}.json`);
}

function writeState(st: LabState): void {
  mkdirSync(LAB_STATE_DIR, { recursive: true, mode: 0o755 });
  const p = statePath(st.prefix);
  const tmp = `${p}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(st, null, 2) + '\n');
  renameSync(tmp, p);
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

/** Names a lab with this prefix may own; anything else in a state file is ignored. */
function ownedNs(prefix: string, ns: string): boolean {
  return ns === `${prefix}-hv` || ns === `${prefix}-up` || new RegExp(`^${prefix}-g[0-9]+$`).test(ns);
}

/** A set of guest indices from an option, checked. */
function indexSet(name: string, v: readonly number[] | undefined): Set<number> | undefined {
  if (v === undefined) return undefined;
  for (const i of v) if (!Number.isInteger(i) || i < 1) throw new Error(`${name}: guest indices are integers >= 1, found ${i}`);
  return new Set(v);
}

/**
 * tcpdump in `ns`, resolved once it is capturing. `track`/`untrack` get its PID (`ip netns exec`
 * and `env` exec in place, so the child's PID is tcpdump's; it is only ever signalled by that PID).
 */
function spawnCapture(
  where: CaptureWhere,
  filter: string,
  maxSeconds: number,
  track: (pid: number) => void,
  untrack: (pid: number) => void,
): Promise<Capture> {
  const [cmd, ...args] = inNetns(where.ns, ['tcpdump', '-n', '-l', '-e', '--immediate-mode', '-i', where.ifname, filter]);
  const child = spawn(cmd as string, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined) {
    return new Promise((_, reject) => child.once('error', (e) => reject(new Error(`spawn tcpdump: ${e.message}`))));
  }
  track(pid);
  let stdout = '';
  let stderr = '';
  let exited = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => void (stdout += d));
  child.stderr.setEncoding('utf8');
  const closed = new Promise<void>((resolve) => {
    child.once('close', () => resolve());
  });
  child.once('exit', () => {
    exited = true;
    untrack(pid);
  });
  child.once('error', () => {
    /* reported through 'close' */
  });
  const signal = (sig: NodeJS.Signals): void => {
    if (exited) return; // reaped: the PID may be someone else's now
    try {
      process.kill(pid, sig);
    } catch {
      /* already gone */
    }
  };
  const lines = (): string[] => stdout.split('\n').filter((l) => l.trim() !== '');
  const auto = setTimeout(() => signal('SIGINT'), maxSeconds * 1000);
  auto.unref();
  let stopping: Promise<string[]> | undefined;
  const stop = (): Promise<string[]> => {
    if (stopping === undefined) {
      signal('SIGINT');
      const kill = setTimeout(() => signal('SIGKILL'), CAPTURE_STOP_GRACE_MS);
      stopping = closed.then(() => {
        clearTimeout(kill);
        clearTimeout(auto);
        return lines();
      });
    }
    return stopping;
  };
  const cap: Capture = { where, filter, lines, stop };
  return new Promise((resolve, reject) => {
    const fail = (why: string): void => {
      clearTimeout(timer);
      void stop().then(() => reject(new Error(`tcpdump on ${where.ns}/${where.ifname} (${filter}): ${why}: ${stderr.trim()}`)));
    };
    const timer = setTimeout(() => fail(`not capturing after ${CAPTURE_READY_MS} ms`), CAPTURE_READY_MS);
    child.stderr.on('data', (d: string) => {
      const before = stderr;
      stderr += d;
      if (!before.includes('listening on') && stderr.includes('listening on')) {
        clearTimeout(timer);
        resolve(cap);
      }
    });
    void closed.then(() => {
      if (!stderr.includes('listening on')) fail('exited before capturing');
    });
  });
}

async function pool<T>(items: readonly T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const x = items[next++] as T;
      await fn(x);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

/** Parses `curl -D - -o - -w '\n%{http_code}'` output: header blocks, then body, then the code. */
export function parseCurlOutput(
  stdout: string,
  withHeaders: boolean,
): { status: number; body: string; headers?: Record<string, string>; rawHeaders?: string } {
  const nl = stdout.lastIndexOf('\n');
  const codeText = nl < 0 ? stdout : stdout.slice(nl + 1);
  const status = /^\d{3}$/.test(codeText.trim()) ? Number(codeText.trim()) : 0;
  let rest = nl < 0 ? '' : stdout.slice(0, nl);
  if (!withHeaders) return { status, body: rest };
  let raw = '';
  let last = '';
  while (/^HTTP\/[0-9.]+ \d{3}/.test(rest)) {
    const m = /\r?\n\r?\n/.exec(rest);
    const end = m === null ? rest.length : m.index + m[0].length;
    const block = rest.slice(0, end);
    raw += block;
    rest = rest.slice(end);
    last = block;
    if (!/^HTTP\/[0-9.]+ 1\d\d/.test(block)) break;
  }
  const headers: Record<string, string> = {};
  for (const line of last.split(/\r?\n/).slice(1)) {
    const c = line.indexOf(':');
    if (c <= 0) continue;
    const k = line.slice(0, c).trim().toLowerCase();
    const v = line.slice(c + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  }
  return { status, body: rest, headers, rawHeaders: raw };
}

// ---------------------------------------------------------------------------------------------

export async function createLab(opts: LabOptions): Promise<Lab> {
  const prefix = opts.prefix ?? `lg${randomBytes(2).toString('hex')}`;
  if (!PREFIX_RE.test(prefix)) throw new Error(`lab prefix ${prefix} must match ${PREFIX_RE}`);
  if (!Number.isInteger(opts.guests) || opts.guests < 0) throw new Error('guests must be an integer >= 0');
  const subnetText = opts.subnet ?? '10.77.0.0/24';
  const subnet = parseSubnet(subnetText);
  const hv = `${prefix}-hv`;
  const dir = `/tmp/${prefix}`;
  const configPath = join(dir, 'linkgate.json');
  const gateway = intToIp(subnet.base + 1);
  const [mb4, mb5] = macBytes(prefix);

  // Guest kinds, IPv6, tenant networks: checked up front, applied per index by guestInfo().
  const bridgedSet = indexSet('bridged', opts.bridged);
  const bridge = opts.bridge === true || (bridgedSet?.size ?? 0) > 0 ? `${prefix}br` : undefined;
  const allBridged = opts.bridge === true && bridgedSet === undefined;
  const ipv6Set = Array.isArray(opts.ipv6) ? indexSet('ipv6', opts.ipv6) : undefined;
  const networks = [...(opts.networks ?? [])];
  for (const n of networks) if (!NETWORK_RE.test(n)) throw new Error(`network name ${JSON.stringify(n)} must match ${NETWORK_RE}`);
  if (new Set(networks).size !== networks.length) throw new Error('networks: names must be unique');
  const tenants = opts.tenants === undefined ? undefined : [...opts.tenants];
  indexSet('tenants', tenants);
  if (tenants !== undefined && new Set(tenants).size !== tenants.length) throw new Error('tenants: an index appears twice');
  if (tenants !== undefined && networks.length === 0) throw new Error('tenants needs networks');
  if (opts.overlap === true && networks.length < 2) throw new Error('overlap needs at least two networks');
  if (opts.overlap === true && tenants !== undefined && tenants.length < 2) throw new Error('overlap needs at least two tenants');
  if (opts.uplink === true && bridge === undefined) throw new Error('uplink needs the bridge (bridge or bridged)');
  /** With overlap: [first tenant guest, second tenant guest]; the second takes the first's addresses. */
  const overlapPair = opts.overlap === true ? [tenants?.[0] ?? 1, tenants?.[1] ?? 2] : undefined;
  const networkOf = (i: number): string | undefined => {
    if (networks.length === 0) return undefined;
    const k = tenants === undefined ? i - 1 : tenants.indexOf(i);
    return k < 0 ? undefined : networks[k % networks.length];
  };
  const uplink: UplinkInfo | undefined = opts.uplink === true ? { ns: `${prefix}-up`, hostIf: `${prefix}up` } : undefined;

  const guests = new Map<number, GuestInfo>();
  /** Namespaces recorded as ours (recorded before creation, so a crash mid-way is covered). */
  const namespaces = new Set<string>();
  const pids = new Set<number>();
  const downHooks: Array<() => unknown> = [];
  let dirCreated = false;
  let nextIndex = 1;
  let isDown = false;
  const created = new Date().toISOString();

  const saveState = (): void => {
    writeState({
      prefix,
      created,
      pid: process.pid,
      hv,
      dir,
      namespaces: [...namespaces],
      guests: [...guests.values()],
      ...(bridge !== undefined ? { bridge } : {}),
      ...(uplink !== undefined ? { uplink } : {}),
    });
  };

  const guestInfo = (i: number): GuestInfo => {
    // The address index: the guest's own, except the second of an overlapping pair.
    const a = overlapPair !== undefined && i === overlapPair[1] ? (overlapPair[0] ?? i) : i;
    const off = 10 + a;
    if (off >= subnet.size - 1) throw new Error(`subnet ${subnetText} has no address for guest ${i}`);
    // 6 octets: 52:54:00 (QEMU's prefix), 2 bytes from the lab prefix, 1 byte of index.
    if (i > 0xff) throw new Error(`guest index ${i} too large (the MAC has one byte for it)`);
    const hostIf = `${prefix}t${i}`;
    if (hostIf.length > IFNAMSIZ_MAX) throw new Error(`interface name ${hostIf} too long`);
    const bridged = bridge !== undefined && (bridgedSet === undefined || bridgedSet.has(i));
    const v6 = opts.ipv6 === true || (ipv6Set?.has(i) ?? false);
    const network = networkOf(i);
    return {
      index: i,
      ns: `${prefix}-g${i}`,
      hostIf,
      mac: ['52', '54', '00', hex2(mb4), hex2(mb5), hex2(a)].join(':'),
      ipv4: intToIp(subnet.base + off),
      prefixLen: subnet.len,
      mode: bridged || i % 2 === 1 ? 'onlink' : 'gateway',
      kind: bridged ? 'bridged' : 'routed',
      ...(bridged ? { bridge } : {}),
      ...(v6 ? { ipv6: `${LAB_IPV6_PREFIX}${off}` } : {}),
      ...(network !== undefined ? { network } : {}),
    };
  };

  const createGuest = async (g: GuestInfo): Promise<void> => {
    namespaces.add(g.ns);
    saveState();
    await addNetns(g.ns);
    // Created inside hv; the peer goes straight into the guest namespace.
    await run(['ip', '-n', hv, 'link', 'add', g.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'address', g.mac, 'netns', g.ns]);
    // A bridge port gets no IPv6 link-local either: it never speaks for itself on the bridge.
    const port = g.bridge !== undefined ? [`link set ${g.hostIf} addrgenmode none`, `link set ${g.hostIf} master ${g.bridge}`] : [];
    await run(['ip', '-n', hv, '-batch', '-'], { input: [...port, `link set ${g.hostIf} up`].join('\n') + '\n' });
    // Before eth0 is up: no DAD, so the link-local and the guest address are usable at once.
    const sysctls = ['net.ipv4.tcp_tw_reuse=1', ...(g.ipv6 !== undefined ? ['net.ipv6.conf.eth0.accept_dad=0'] : [])];
    await nsExec(g.ns, ['sysctl', '-qw', ...sysctls]);
    const route = g.mode === 'onlink' ? `route add ${METADATA_IPV4}/32 dev eth0` : `route add default via ${gateway} dev eth0 onlink`;
    const v6 = g.ipv6 !== undefined ? [`addr add ${g.ipv6}/64 dev eth0 nodad`, `route add ${METADATA_IPV6}/128 dev eth0`] : [];
    await run(['ip', '-n', g.ns, '-batch', '-'], {
      input: ['link set lo up', 'link set eth0 up', `addr add ${g.ipv4}/${g.prefixLen} dev eth0`, route, ...v6].join('\n') + '\n',
    });
    guests.set(g.index, g);
    saveState();
  };

  const getGuest = (i: number): GuestInfo => {
    const g = guests.get(i);
    if (g === undefined) throw new Error(`lab ${prefix} has no guest ${i}`);
    return g;
  };

  const down = async (): Promise<void> => {
    const errors: unknown[] = [];
    const hooks = downHooks.splice(0);
    for (const fn of hooks.reverse()) {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
      pids.delete(pid);
    }
    const guestNs = [...namespaces].filter((n) => n !== hv);
    await pool(guestNs, CREATE_CONCURRENCY, async (ns) => {
      try {
        await delNetns(ns);
        namespaces.delete(ns);
      } catch (e) {
        errors.push(e);
      }
    });
    if (namespaces.has(hv)) {
      try {
        await delNetns(hv);
        namespaces.delete(hv);
      } catch (e) {
        errors.push(e);
      }
    }
    guests.clear();
    if (dirCreated) {
      try {
        rmSync(dir, { recursive: true, force: true });
        dirCreated = false;
      } catch (e) {
        errors.push(e);
      }
    }
    if (namespaces.size === 0) {
      rmSync(statePath(prefix), { force: true });
      isDown = true;
      active.delete(lab);
    } else {
      saveState();
    }
    if (errors.length > 0) throw new AggregateError(errors, `lab ${prefix}: teardown incomplete`);
  };

  const downSync = (): void => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    pids.clear();
    const all = [...namespaces].filter((n) => n !== hv);
    if (namespaces.has(hv)) all.push(hv);
    for (const ns of all) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 10_000 });
      } catch {
        /* gone already, or nothing more we can do here */
      }
      namespaces.delete(ns);
    }
    guests.clear();
    try {
      if (dirCreated) rmSync(dir, { recursive: true, force: true });
      dirCreated = false;
      rmSync(statePath(prefix), { force: true });
    } catch {
      /* best effort */
    }
    isDown = true;
    active.delete(lab);
  };

  const lab: Lab = {
    prefix,
    hv,
    dir,
    configPath,
    subnet: `${intToIp(subnet.base)}/${subnet.len}`,
    gateway,
    bridge,
    uplink,
    guests: () => [...guests.values()].sort((a, b) => a.index - b.index),
    guest: getGuest,
    async addGuest() {
      if (isDown) throw new Error(`lab ${prefix} is down`);
      const g = guestInfo(nextIndex++);
      await createGuest(g);
      return g;
    },
    async removeGuest(i) {
      const g = getGuest(i);
      guests.delete(i);
      await delNetns(g.ns);
      namespaces.delete(g.ns);
      saveState();
    },
    config(extra = {}) {
      const instances: LabInstance[] = lab.guests().map((g) => ({
        id: `i-${prefix}-${g.index}`,
        hostname: `guest-${g.index}`,
        ports: [
          {
            interface: g.hostIf,
            mac: g.mac,
            ipv4: g.ipv4,
            ...(g.ipv6 !== undefined ? { ipv6: g.ipv6 } : {}),
            ...(g.bridge !== undefined ? { bridge: g.bridge } : {}),
            ...(g.network !== undefined ? { network: g.network } : {}),
          },
        ],
        project: 'proj-lab',
        region: 'region-1',
        zone: 'region-1a',
        image: 'img-debian-12',
        type: 'm1.small',
        ssh_keys: [fakeSshKey(`${prefix}/${g.index}`, `lab@guest-${g.index}`)],
        user_data: `#cloud-config\nhostname: guest-${g.index}\n`,
        tags: { lab: prefix, guest: String(g.index) },
      }));
      return {
        listen: { ipv4: METADATA_IPV4, port: 80 },
        admin: { socket: join(dir, 'admin.sock') },
        host: hv,
        state_dir: join(dir, 'state'),
        instances,
        ...extra,
      };
    },
    async writeConfig(obj) {
      writeFileSync(configPath, JSON.stringify(obj ?? lab.config(), null, 2) + '\n');
      return configPath;
    },
    exec: (i, argv, o) => nsExec(getGuest(i).ns, argv, o),
    execRaw: (i, argv, o) => runRaw(['ip', 'netns', 'exec', getGuest(i).ns, ...argv], o ?? {}),
    hvExec: (argv, o) => nsExec(hv, argv, o),
    async hvSysctl(name, value) {
      if (!SYSCTL_RE.test(name)) throw new Error(`bad sysctl name ${JSON.stringify(name)}`);
      await nsExec(hv, ['sysctl', '-qw', `${name}=${value}`]);
    },
    startCapture(where, filter, o = {}) {
      if (isDown) return Promise.reject(new Error(`lab ${prefix} is down`));
      if (!namespaces.has(where.ns)) return Promise.reject(new Error(`lab ${prefix} does not own namespace ${where.ns}`));
      if (!IFNAME_RE.test(where.ifname)) return Promise.reject(new Error(`bad interface name ${JSON.stringify(where.ifname)}`));
      const max = o.maxSeconds ?? 60;
      return spawnCapture(
        where,
        filter,
        max,
        (pid) => pids.add(pid),
        (pid) => pids.delete(pid),
      );
    },
    async capture(where, filter, seconds) {
      const c = await lab.startCapture(where, filter, { maxSeconds: seconds + 10 });
      await new Promise((r) => setTimeout(r, seconds * 1000));
      return c.stop();
    },
    async curl(i, path, o = {}) {
      const t = o.timeoutS ?? 5;
      const head = o.method?.toUpperCase() === 'HEAD';
      const withHeaders = head || o.responseHeaders === true;
      const argv = ['curl', '-q', '-sS', '-g', '--path-as-is', '--noproxy', '*', '-m', String(t), '-o', '-', '-w', '\n%{http_code}'];
      if (head) argv.push('--head');
      else {
        if (o.responseHeaders === true) argv.push('-D', '-');
        if (o.method !== undefined && o.method.toUpperCase() !== 'GET') argv.push('-X', o.method);
      }
      const hdrs = o.headers ?? {};
      for (const [k, v] of Object.entries(hdrs)) argv.push('-H', v === '' ? `${k};` : `${k}: ${v}`);
      if (o.body !== undefined) {
        argv.push('--data-binary', '@-');
        if (!Object.keys(hdrs).some((k) => k.toLowerCase() === 'expect')) argv.push('-H', 'Expect:');
      }
      const base = o.baseUrl ?? (o.ipv6 === true ? `http://[${METADATA_IPV6}]` : `http://${METADATA_IPV4}`);
      argv.push(...(o.extraArgs ?? []), `${base}${path}`);
      const r = await runRaw(['ip', 'netns', 'exec', getGuest(i).ns, ...argv], {
        input: o.body ?? '',
        timeoutMs: (t + 5) * 1000,
      });
      const p = parseCurlOutput(r.stdout, withHeaders);
      return {
        status: p.status,
        body: head ? '' : p.body,
        ...(p.headers !== undefined ? { headers: p.headers } : {}),
        ...(p.rawHeaders !== undefined ? { rawHeaders: p.rawHeaders } : {}),
        exitCode: r.code,
        error: r.stderr,
      };
    },
    onDown(fn) {
      downHooks.push(fn);
    },
    trackPid(pid) {
      pids.add(pid);
    },
    untrackPid(pid) {
      pids.delete(pid);
    },
    down,
    downSync,
  };

  // Refuse to adopt anything that already exists under this prefix.
  const existing = (await listNetns()).filter((n) => ownedNs(prefix, n));
  if (existing.length > 0) throw new Error(`lab ${prefix}: namespaces already exist: ${existing.join(' ')}`);
  try {
    mkdirSync(dir, { mode: 0o755 });
  } catch (e) {
    if (isErrno(e, 'EEXIST')) throw new Error(`lab ${prefix}: ${dir} already exists`);
    throw e;
  }
  dirCreated = true;
  active.add(lab);
  try {
    namespaces.add(hv);
    saveState();
    await addNetns(hv);
    await run(['ip', '-n', hv, '-batch', '-'], {
      input: `link set lo up\n${allBridged ? '' : `addr add ${gateway}/32 dev lo\n`}`,
    });
    if (bridge !== undefined) {
      // No address at all on the bridge: addrgenmode none before it is up (no IPv6 link-local).
      await run(['ip', '-n', hv, '-batch', '-'], {
        input:
          [`link add ${bridge} type bridge forward_delay 0`, `link set ${bridge} addrgenmode none`, `link set ${bridge} up`].join('\n') +
          '\n',
      });
    }
    if (uplink !== undefined && bridge !== undefined) {
      namespaces.add(uplink.ns);
      saveState();
      await addNetns(uplink.ns);
      await run(['ip', '-n', hv, 'link', 'add', uplink.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', uplink.ns]);
      await run(['ip', '-n', hv, '-batch', '-'], {
        input:
          [`link set ${uplink.hostIf} addrgenmode none`, `link set ${uplink.hostIf} master ${bridge}`, `link set ${uplink.hostIf} up`].join(
            '\n',
          ) + '\n',
      });
      await run(['ip', '-n', uplink.ns, '-batch', '-'], { input: 'link set lo up\nlink set eth0 addrgenmode none\nlink set eth0 up\n' });
    }
    const todo = Array.from({ length: opts.guests }, () => guestInfo(nextIndex++));
    await pool(todo, CREATE_CONCURRENCY, createGuest);
  } catch (e) {
    await down().catch(() => lab.downSync());
    throw e;
  }
  return lab;
}

/** Labs of this process that are not down yet (for exit-time safety nets). */
const active = new Set<Lab>();

export function activeLabs(): Lab[] {
  return [...active];
}

/** The state files of labs that are up (any process). */
export function listLabs(): LabState[] {
  let files: string[];
  try {
    files = readdirSync(LAB_STATE_DIR).filter((f) => f.endsWith('.json'));
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return [];
    throw e;
  }
  const out: LabState[] = [];
  for (const f of files) {
    try {
      const st = JSON.parse(readFileSync(join(LAB_STATE_DIR, f), 'utf8')) as LabState;
      if (typeof st.prefix === 'string' && `${st.prefix}.json` === f) out.push(st);
    } catch {
      /* unreadable: skip */
    }
  }
  return out;
}

export interface LabDownResult {
  readonly prefix: string;
  /** Namespaces deleted (or already gone). */
  readonly namespaces: string[];
  /** PIDs still running in its namespaces before deletion (killed when `kill` was set). */
  readonly pids: number[];
}

/**
 * Tears down labs from their state files (the CLI's `lab down`): the one with this prefix, or
 * all recorded labs. Deletes exactly the namespaces recorded for the prefix, `/tmp/<prefix>` and
 * the state file; nothing else. With `kill`, first SIGKILLs processes inside those namespaces
 * (e.g. a daemon started by hand in the hv namespace); otherwise they are only reported.
 */
export async function labDown(prefix?: string, opts: { kill?: boolean } = {}): Promise<LabDownResult[]> {
  const states = listLabs().filter((s) => prefix === undefined || s.prefix === prefix);
  const results: LabDownResult[] = [];
  for (const st of states) {
    if (!PREFIX_RE.test(st.prefix)) continue;
    const mine = st.namespaces.filter((n) => ownedNs(st.prefix, n));
    const present = new Set(await listNetns());
    const pids: number[] = [];
    for (const ns of mine.filter((n) => present.has(n))) {
      const out = await run(['ip', 'netns', 'pids', ns], { allowFail: true });
      for (const p of out.split(/\s+/).filter((s) => /^\d+$/.test(s))) pids.push(Number(p));
    }
    if (opts.kill === true) {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    const hvLast = [...mine.filter((n) => !n.endsWith('-hv')), ...mine.filter((n) => n.endsWith('-hv'))];
    for (const ns of hvLast) await delNetns(ns);
    rmSync(`/tmp/${st.prefix}`, { recursive: true, force: true });
    rmSync(statePath(st.prefix), { force: true });
    results.push({ prefix: st.prefix, namespaces: hvLast, pids });
  }
  return results;
}
