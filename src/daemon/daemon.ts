/**
 * Wiring and lifecycle: config → registry → dataplane + pipeline + admin socket; SIGHUP reloads
 * the config file, SIGTERM/SIGINT drain and remove every piece of kernel state.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import type http from 'node:http';
import net, { type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { loadConfigFile, formatProblems } from '../config/load.js';
import { Dataplane, DEFAULT_DATAPLANE, type ServedBinding } from '../dataplane/dataplane.js';
import { Registry } from '../identity/registry.js';
import type { Config } from '../model/instance.js';
import type { Logger } from '../model/log.js';
import { createPipeline, type SockOpts } from '../pipeline/server.js';
import type { NativeLoop, NativeLoopOptions } from '../pipeline/fastpath.js';
import { createAdminServer } from './admin.js';
import { Listeners, type ListenerSpec, type ListenTcp } from './listeners.js';
import { Responders } from './responders.js';
import { loadOrCreateKey, type DaemonKey } from './keys.js';
import { wire } from './wiring.js';

export interface DaemonHandle {
  readonly registry: Registry;
  readonly dataplane: Dataplane;
  stop(reason: string): Promise<void>;
  reload(): Promise<boolean>;
}

export function loadSockOpts(): SockOpts & ListenTcp & { FastPath: new (o: NativeLoopOptions) => NativeLoop } {
  // The addon is CommonJS; its path is the same from src/daemon (tests) and dist/daemon.
  const require = createRequire(import.meta.url);
  return require('../../native-bindings/index.cjs') as SockOpts & ListenTcp & { FastPath: new (o: NativeLoopOptions) => NativeLoop };
}

/** Per-port listeners for routed ports of tenant networks (see listeners.ts). */
function boundListeners(served: readonly ServedBinding[], ipv6: string | false, ipv4: string): ListenerSpec[] {
  const out: ListenerSpec[] = [];
  for (const s of served) {
    if (s.binding.network === 0 || s.bridge !== undefined) continue;
    out.push({ address: ipv4, ifname: s.binding.ifname });
    if (ipv6 !== false && s.binding.ipv6 !== undefined) out.push({ address: ipv6, ifname: s.binding.ifname });
  }
  return out;
}

/** Refuses to start beside a running daemon: its admin socket would be taken over. */
async function assertAlone(socketPath: string): Promise<void> {
  const answered = await new Promise<boolean>((resolve) => {
    const c = net.connect(socketPath);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (answered) throw new Error(`another linkgate is running: its admin socket ${socketPath} answers`);
}

/** Starts serving. Throws (after undoing what it did) if the kernel state cannot be set up. */
export async function startDaemon(config: Config, configFile: string | undefined, log: Logger): Promise<DaemonHandle> {
  await assertAlone(config.admin.socket);
  const sockopts = loadSockOpts();
  const registry = new Registry();
  registry.replaceAll(config.instances);
  const responders = new Responders({ ipv4: config.listen.ipv4, ipv6: config.listen.ipv6, log });
  let listeners: Listeners | undefined;
  // Responders and per-port listeners follow what the kernel serves, one update at a time.
  let follow = Promise.resolve();
  const dataplane = new Dataplane({
    ...DEFAULT_DATAPLANE,
    listenIpv4: config.listen.ipv4,
    listenIpv6: config.listen.ipv6 === false ? undefined : config.listen.ipv6,
    port: config.listen.port,
    log,
    onServed: (served) => {
      follow = follow
        .then(async () => {
          await responders.sync(served);
          await listeners?.sync(boundListeners(served, config.listen.ipv6, config.listen.ipv4));
        })
        .catch((err: unknown) => log.error({ err: String(err) }, 'updating responders and listeners failed'));
    },
  });
  // ---- instance sources (admin API state, etcd) and the upstream backend: wiring.ts ----
  // Loaded before the dataplane follows the registry: the kernel starts with the merged set.
  const wiring = await wire({ config, registry, log, settle: () => dataplane.setBindings(registry.bindings()) });
  // ---- end sources ----
  registry.on('change', () => void dataplane.setBindings(registry.bindings()));

  const tokenKey = randomBytes(32);
  // The signing key lives in the state directory; without it the daemon still serves, minus signed documents.
  let signingKey: DaemonKey | undefined;
  try {
    signingKey = await loadOrCreateKey(config.state_dir);
  } catch (err) {
    log.warn({ err: String(err), state_dir: config.state_dir }, 'no signing key: GCE identity tokens are unavailable');
  }
  const pipeline = createPipeline({
    config,
    registry,
    sockopts,
    tokenKey,
    log,
    backends: wiring.backends,
    ...(signingKey ? { signingKey } : {}),
    ...(config.listen.fast_path ? { nativeLoop: (o: NativeLoopOptions) => new sockopts.FastPath(o) } : {}),
  });
  const { server, stats, longPolls } = pipeline;
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  const ports = new Listeners({ http: server, native: sockopts, port: config.listen.port, backlog: 4096, log, loop: pipeline.native });
  let admin: http.Server | undefined;
  try {
    await dataplane.start(registry.bindings());
    await ports.open({ address: config.listen.ipv4, ifname: '' });
    if (config.listen.ipv6 !== false) {
      await ports.open({ address: config.listen.ipv6, ifname: '' }).catch((err: unknown) => {
        log.warn({ err: String(err), address: config.listen.ipv6 }, 'no IPv6 metadata listener');
      });
    }
    listeners = ports;
    await ports.sync(boundListeners(dataplane.served(), config.listen.ipv6, config.listen.ipv4));
    await mkdir(dirname(config.admin.socket), { recursive: true, mode: 0o700 });
    await rm(config.admin.socket, { force: true });
    admin = createAdminServer({
      registry,
      dataplane,
      stats,
      log,
      keys: () => (signingKey ? [signingKey.jwk] : []),
      instances: wiring.instances,
      status: () => ({ ...wiring.status(), neighbor: { responders: responders.size, ...responders.counters } }),
    });
    await new Promise<void>((resolve, reject) => {
      admin?.once('error', reject).listen(config.admin.socket, () => resolve());
    });
    await chmod(config.admin.socket, 0o600);
    await wiring.start(); // etcd: first read (or first failure: served from what the other sources hold)
  } catch (err) {
    ports.close();
    pipeline.closeAll();
    pipeline.dispose();
    responders.stop();
    admin?.close();
    await wiring.stop();
    await dataplane.stop();
    throw err;
  }

  let stopping: Promise<void> | undefined;
  const handle: DaemonHandle = {
    registry,
    dataplane,
    stop(reason: string): Promise<void> {
      stopping ??= (async () => {
        log.info({ reason, inFlight: sockets.size }, 'stopping');
        ports.close();
        responders.stop();
        pipeline.closeIdle();
        longPolls.releaseAll();
        admin?.close();
        const deadline = Date.now() + config.limits.shutdown_grace_ms;
        while (sockets.size > 0 && Date.now() < deadline) {
          pipeline.closeIdle();
          await new Promise((r) => setTimeout(r, 20));
        }
        if (sockets.size > 0) {
          log.warn({ connections: sockets.size }, 'grace period over: closing remaining connections');
          pipeline.closeAll();
        }
        pipeline.dispose();
        await wiring.stop();
        await dataplane.stop();
        await rm(config.admin.socket, { force: true }).catch(() => undefined);
        log.info({}, 'stopped');
      })();
      return stopping;
    },
    async reload(): Promise<boolean> {
      if (!configFile) return false;
      const res = loadConfigFile(configFile);
      if (!res.ok) {
        log.error({ problems: res.problems }, `reload refused, keeping the running configuration:\n${formatProblems(res.problems)}`);
        return false;
      }
      // The file's instances beside the admin API's (instances.ts): a clash refuses the reload.
      const { problems, change } = await wiring.instances.reloadFile(res.config.instances);
      if (problems.length > 0) {
        log.error({ problems }, `reload refused, keeping the running configuration:\n${formatProblems(problems)}`);
        return false;
      }
      log.info({ ...change }, 'configuration reloaded (instances; listen/admin changes need a restart)');
      return true;
    },
  };
  // Start-up (config parsing, validation, the first registry and nftables builds) leaves
  // hundreds of MB of garbage at 100,000 instances that V8 would keep until the next full GC;
  // collect it once now so the resident size is what the daemon actually holds.
  await collectGarbage();
  log.info(
    {
      listen: `${config.listen.ipv4}:${config.listen.port}`,
      listenIpv6: config.listen.ipv6,
      listeners: ports.size,
      responders: responders.size,
      admin: config.admin.socket,
      instances: registry.size,
      served: dataplane.served().length,
      ...memoryFigures(),
    },
    'ready',
  );
  return handle;
}

/** Memory at a glance for the log (MB): resident, V8 heap reserved and used. */
function memoryFigures(): { rssMB: number; heapTotalMB: number; heapUsedMB: number } {
  const m = process.memoryUsage();
  const mb = (n: number): number => Math.round(n / 1048576);
  return { rssMB: mb(m.rss), heapTotalMB: mb(m.heapTotal), heapUsedMB: mb(m.heapUsed) };
}

/**
 * A full garbage collection, once, after start-up, one that gives memory back: the inspector's
 * HeapProfiler.collectGarbage also drops the young generation start-up grew and compacts old space
 * (at 100,000 instances ≈ 195 → 160 MB RSS); a plain `gc()` (V8 exposes it only behind a flag) is
 * the fallback.
 */
async function collectGarbage(): Promise<void> {
  try {
    const { Session } = await import('node:inspector');
    const session = new Session();
    session.connect();
    try {
      await new Promise<void>((resolve, reject) => session.post('HeapProfiler.collectGarbage', (err) => (err ? reject(err) : resolve())));
      return;
    } finally {
      session.disconnect();
    }
  } catch {
    /* no inspector in this build: the plain collection below */
  }
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    if (typeof gc === 'function') (gc as () => void)();
  } catch {
    /* not available: V8 collects on its own schedule */
  }
}
