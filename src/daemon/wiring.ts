/**
 * The daemon's wiring of where instances and answers come from, kept out of daemon.ts: the
 * instance sources (file, admin API state, etcd; instances.ts) and the upstream backend.
 */
import { instanceContext, validateInstanceFor } from '../config/validate.js';
import { UpstreamBackend } from '../backends/upstream/index.js';
import type { Registry } from '../identity/registry.js';
import type { Config } from '../model/instance.js';
import type { Logger } from '../model/log.js';
import type { ProxyOptions } from '../pipeline/proxy.js';
import { EtcdSource } from '../sources/etcd.js';
import { StateStore } from '../sources/state.js';
import { Instances } from './instances.js';

export interface Wiring {
  readonly instances: Instances;
  /** For createPipeline's `backends`. */
  readonly backends: ProxyOptions;
  /** For /v1/health and /v1/stats. */
  status(): Record<string, unknown>;
  /** Starts following etcd (after the daemon serves). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface WiringDeps {
  readonly config: Config;
  readonly registry: Registry;
  readonly log: Logger;
  /** Resolves once the kernel follows the registry. */
  readonly settle: () => Promise<void>;
}

/** Loads the stored API instances into the registry (throws ConfigConflictError when the file clashes with them). */
export async function wire(deps: WiringDeps): Promise<Wiring> {
  const { config, registry, log } = deps;
  const instances = new Instances({ registry, config, store: new StateStore(config.state_dir), log, settle: deps.settle });
  await instances.load(config.instances);

  const up = config.backends.upstream;
  const upstream = up ? new UpstreamBackend(up, { log }) : undefined;

  const ctx = instanceContext(config);
  const etcdSpec = config.registry.etcd;
  const etcd = etcdSpec
    ? new EtcdSource({
        endpoints: etcdSpec.endpoints,
        prefix: etcdSpec.prefix,
        host: config.host,
        validate: (raw, id) => validateInstanceFor(raw, ctx, id),
        onChange: (list) =>
          void instances.setEtcd(list).catch((err: unknown) => log.error({ err: String(err) }, 'applying etcd instances failed')),
        log,
      })
    : undefined;

  return {
    instances,
    backends: { ...(upstream ? { upstream } : {}), defaultBackend: config.default_backend },
    status: () => ({
      sources: instances.summary(),
      ...(etcd ? { etcd: etcd.status() } : {}),
      ...(upstream ? { upstream: upstream.stats() } : {}),
    }),
    start: async () => {
      await etcd?.start();
    },
    stop: async () => {
      await etcd?.stop();
      await upstream?.close();
    },
  };
}
