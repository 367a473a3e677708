/**
 * Wiring and lifecycle: config → registry → dataplane + pipeline + admin socket; SIGHUP reloads
 * the config file, SIGTERM/SIGINT drain and remove every piece of kernel state.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import type http from 'node:http';
import type { Socket } from 'node:net';
import { loadConfigFile, formatProblems } from '../config/load.js';
import { Dataplane, DEFAULT_DATAPLANE } from '../dataplane/dataplane.js';
import { Registry } from '../identity/registry.js';
import type { Config } from '../model/instance.js';
import type { Logger } from '../model/log.js';
import { createPipeline, type SockOpts } from '../pipeline/server.js';
import { createAdminServer } from './admin.js';
import { loadOrCreateKey, type DaemonKey } from './keys.js';

export interface DaemonHandle {
  readonly registry: Registry;
  readonly dataplane: Dataplane;
  stop(reason: string): Promise<void>;
  reload(): Promise<boolean>;
}

export function loadSockOpts(): SockOpts {
  // The addon is CommonJS; its path is the same from src/daemon (tests) and dist/daemon.
  const require = createRequire(import.meta.url);
  return require('../../native-bindings/index.cjs') as SockOpts;
}

function listen(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Starts serving. Throws (after undoing what it did) if the kernel state cannot be set up. */
export async function startDaemon(config: Config, configFile: string | undefined, log: Logger): Promise<DaemonHandle> {
  const sockopts = loadSockOpts();
  const registry = new Registry();
  registry.replaceAll(config.instances);
  const dataplane = new Dataplane({
    ...DEFAULT_DATAPLANE,
    listenIpv4: config.listen.ipv4,
    port: config.listen.port,
    log,
  });
  registry.on('change', () => void dataplane.setBindings(registry.bindings()));

  const tokenKey = randomBytes(32);
  // The signing key lives in the state directory; without it the daemon still serves, minus signed documents.
  let signingKey: DaemonKey | undefined;
  try {
    signingKey = await loadOrCreateKey(config.state_dir);
  } catch (err) {
    log.warn({ err: String(err), state_dir: config.state_dir }, 'no signing key: GCE identity tokens are unavailable');
  }
  const { server, stats, longPolls } = createPipeline({ config, registry, sockopts, tokenKey, log, ...(signingKey ? { signingKey } : {}) });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  let admin: http.Server | undefined;
  try {
    await dataplane.start(registry.bindings());
    await listen(server, config.listen.port, config.listen.ipv4);
    await mkdir(dirname(config.admin.socket), { recursive: true, mode: 0o700 });
    await rm(config.admin.socket, { force: true });
    admin = createAdminServer({ registry, dataplane, stats, log, keys: () => (signingKey ? [signingKey.jwk] : []) });
    await new Promise<void>((resolve, reject) => {
      admin?.once('error', reject).listen(config.admin.socket, () => resolve());
    });
    await chmod(config.admin.socket, 0o600);
  } catch (err) {
    server.close();
    admin?.close();
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
        server.close();
        server.closeIdleConnections();
        longPolls.releaseAll();
        admin?.close();
        const deadline = Date.now() + config.limits.shutdown_grace_ms;
        while (sockets.size > 0 && Date.now() < deadline) {
          server.closeIdleConnections();
          await new Promise((r) => setTimeout(r, 20));
        }
        if (sockets.size > 0) {
          log.warn({ connections: sockets.size }, 'grace period over: closing remaining connections');
          server.closeAllConnections();
        }
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
      const change = registry.replaceAll(res.config.instances);
      log.info({ ...change }, 'configuration reloaded (instances; listen/admin changes need a restart)');
      return true;
    },
  };
  log.info(
    {
      listen: `${config.listen.ipv4}:${config.listen.port}`,
      admin: config.admin.socket,
      instances: registry.size,
      served: dataplane.served().length,
    },
    'ready',
  );
  return handle;
}
