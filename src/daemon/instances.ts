/**
 * The instances the daemon serves, from three sources layered in this order (sources.ts):
 *
 *   1. `file`  — the config file's `instances` (replaced on SIGHUP)
 *   2. `api`   — written through the admin API, kept crash-safe in `<state_dir>/instances/`
 *   3. `etcd`  — the fleet registry's keys for this host
 *
 * One owner per id. The admin API refuses (409) to write an id the file or etcd defines; a
 * config file that defines an id (or claims a port) the API already holds is refused — at start
 * the daemon exits 2, on SIGHUP the running configuration is kept — with the field path and the
 * way out. An etcd entry that collides with the file or the API is left out (logged, counted)
 * until the collision goes away. Every change lands in the registry at once (one replaceAll, one
 * 'change' event: dataplane, long polls, caches follow it), and writes are answered only once the
 * state is on disk and the kernel map is reconciled.
 */
import { checkInstanceSet, instanceContext, instanceSetConflicts, validateInstanceFor, type Problem } from '../config/validate.js';
import { mergePatch } from '../config/mergepatch.js';
import type { Registry, RegistryChange } from '../identity/registry.js';
import { Sources, type Shadowed } from '../identity/sources.js';
import type { Config, Instance } from '../model/instance.js';
import type { Logger } from '../model/log.js';
import type { StateStore } from '../sources/state.js';

export const SOURCE_ORDER = ['file', 'api', 'etcd'] as const;
export type SourceName = (typeof SOURCE_ORDER)[number];

const LABEL: Record<SourceName, string> = { file: 'the config file', api: 'the admin API', etcd: 'the etcd registry' };

/** A configuration that cannot be served beside the stored state: exit 2 at start. */
export class ConfigConflictError extends Error {
  constructor(readonly problems: Problem[]) {
    super('the configuration conflicts with instances created through the admin API');
  }
}

export interface ApiResult {
  readonly status: number;
  readonly body: unknown;
}

export interface InstancesDeps {
  readonly registry: Registry;
  readonly config: Config;
  readonly store: StateStore;
  readonly log: Logger;
  /** Resolves once the kernel follows the registry (the dataplane's reconcile). */
  readonly settle?: () => Promise<void>;
}

export class Instances {
  readonly sources = new Sources(SOURCE_ORDER, instanceSetConflicts);
  private readonly ctx;
  private queue: Promise<unknown> = Promise.resolve();
  private shadowedNow: Shadowed[] = [];
  /** Stored records that could not be loaded at start (left on disk, logged). */
  stateProblems = 0;

  constructor(private readonly deps: InstancesDeps) {
    this.ctx = instanceContext(deps.config);
  }

  /** Loads the stored API instances beside the file's; throws ConfigConflictError when they clash. */
  async load(fileInstances: readonly Instance[]): Promise<void> {
    const { entries, problems } = await this.deps.store.open();
    for (const p of problems) this.deps.log.error({ file: p.file, problem: p.message }, 'stored instance unreadable: ignored');
    this.stateProblems = problems.length;
    for (const e of entries) {
      const r = validateInstanceFor(e.raw, this.ctx, e.id);
      if (!r.ok) {
        this.stateProblems++;
        this.deps.log.error({ id: e.id, problems: r.problems }, 'stored instance invalid under this configuration: ignored');
        continue;
      }
      this.sources.put('api', r.instance);
    }
    const clash = this.fileProblems(fileInstances);
    if (clash.length > 0) throw new ConfigConflictError(clash);
    this.sources.replace('file', fileInstances);
    this.apply();
  }

  /** SIGHUP: the file's new instances; problems (and nothing changed) when they clash with the API's. */
  reloadFile(fileInstances: readonly Instance[]): Promise<{ problems: Problem[]; change?: RegistryChange }> {
    return this.serial(async () => {
      const problems = this.fileProblems(fileInstances);
      if (problems.length > 0) return { problems };
      this.sources.replace('file', fileInstances);
      const change = await this.applyAndSettle();
      return { problems, ...(change ? { change } : {}) };
    });
  }

  /** The etcd registry's current view for this host (already validated). */
  setEtcd(instances: Iterable<Instance>): Promise<void> {
    return this.serial(async () => {
      this.sources.replace('etcd', instances);
      await this.applyAndSettle();
    });
  }

  get(id: string): Instance | undefined {
    return this.deps.registry.get(id);
  }

  /** `PUT /v1/instances/{id}` */
  put(id: string, body: unknown): Promise<ApiResult> {
    return this.serial(() => this.write(id, body, 'put'));
  }

  /** `PATCH /v1/instances/{id}`: RFC 7396 merge patch over the stored instance. */
  patch(id: string, patch: unknown): Promise<ApiResult> {
    return this.serial(async () => {
      const current = this.sources.get('api', id);
      if (!current) return this.notOurs(id) ?? { status: 404, body: { error: `no instance ${id}` } };
      return this.write(id, mergePatch(current, patch), 'patch');
    });
  }

  /** `DELETE /v1/instances/{id}` */
  delete(id: string): Promise<ApiResult> {
    return this.serial(async () => {
      if (!this.sources.get('api', id)) return this.notOurs(id) ?? { status: 404, body: { error: `no instance ${id}` } };
      await this.deps.store.delete(id);
      this.sources.delete('api', id);
      await this.applyAndSettle();
      this.deps.log.info({ id }, 'instance deleted through the admin API');
      return { status: 200, body: { deleted: id } };
    });
  }

  /** Counts by source and what is left out, for /v1/health and /v1/stats. */
  summary(): Record<string, unknown> {
    return {
      file: this.sources.count('file'),
      api: this.sources.count('api'),
      etcd: this.sources.count('etcd'),
      served: this.deps.registry.size,
      shadowed: this.shadowedNow,
      state_problems: this.stateProblems,
    };
  }

  private async write(id: string, body: unknown, how: 'put' | 'patch'): Promise<ApiResult> {
    const other = this.notOurs(id);
    if (other) return other;
    const r = validateInstanceFor(body, this.ctx, id);
    if (!r.ok) return invalid(r.problems);
    // Against everything served now but itself: the new one is checked last, so it is the one named.
    const others = this.deps.registry.list().filter((i) => i.id !== id);
    const set = checkInstanceSet([...others, r.instance], (i) => (i < others.length ? `instance ${others[i]?.id ?? '?'}` : ''));
    if (set.length > 0) return invalid(set);
    const existed = this.sources.get('api', id) !== undefined;
    await this.deps.store.put(id, r.instance);
    this.sources.put('api', r.instance);
    await this.applyAndSettle();
    this.deps.log.info({ id, how }, existed ? 'instance replaced through the admin API' : 'instance created through the admin API');
    return { status: existed ? 200 : 201, body: r.instance };
  }

  /** 409 when `id` belongs to the file or etcd. */
  private notOurs(id: string): ApiResult | undefined {
    const owner = this.sources.holders(id).find((s) => s !== 'api') as SourceName | undefined;
    if (owner === undefined) return undefined;
    return {
      status: 409,
      body: {
        error: `instance ${id} is defined by ${LABEL[owner]}; change it there (the admin API manages only the instances it created)`,
      },
    };
  }

  /**
   * The file's instances against the API's: an id or a port the API holds is a problem at the
   * file's path. (The file's own instances are a checked set already: validateConfig.)
   */
  private fileProblems(fileInstances: readonly Instance[]): Problem[] {
    const api = this.sources.list('api');
    if (api.length === 0) return [];
    const problems: Problem[] = [];
    const apiIds = new Set(api.map((i) => i.id));
    fileInstances.forEach((inst, i) => {
      if (apiIds.has(inst.id)) {
        problems.push({
          path: `instances[${i}].id`,
          message: `instance ${inst.id} was created through the admin API (${this.deps.store.dir}); remove it from the file, or DELETE /v1/instances/${inst.id} first`,
        });
      }
    });
    // Indices into the file, of the instances the API does not hold (a map, not indexOf: O(n), not O(n²)).
    const fileAt: number[] = [];
    fileInstances.forEach((inst, i) => {
      if (!apiIds.has(inst.id)) fileAt.push(i);
    });
    const file = fileAt.map((i) => fileInstances[i] as Instance);
    // API instances go first: a file instance claiming one of their ports is the later claimant.
    const set = checkInstanceSet([...api, ...file], (k) =>
      k < api.length ? `admin API instance ${api[k]?.id ?? '?'}` : `instances[${fileAt[k - api.length] ?? '?'}]`,
    );
    return [...problems, ...set];
  }

  private apply(): RegistryChange | undefined {
    const { instances, shadowed } = this.sources.merged();
    const before = new Set(this.shadowedNow.map((s) => `${s.source} ${s.id}`));
    for (const s of shadowed) {
      if (!before.has(`${s.source} ${s.id}`)) this.deps.log.warn({ source: s.source, id: s.id, reason: s.reason }, 'instance left out');
    }
    this.shadowedNow = shadowed;
    try {
      return this.deps.registry.replaceAll(instances);
    } catch (err) {
      this.deps.log.error({ err: String(err) }, 'registry refused the instances');
      return undefined;
    }
  }

  private async applyAndSettle(): Promise<RegistryChange | undefined> {
    const change = this.apply();
    await this.deps.settle?.();
    return change;
  }

  /** One change at a time: validation sees the set the write lands in. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}

function invalid(problems: readonly Problem[]): ApiResult {
  return { status: 400, body: { error: 'invalid instance', problems } };
}
