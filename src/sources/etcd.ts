/**
 * The etcd fleet registry: this host's instances are the keys `<prefix>hosts/<host>/instances/<id>`
 * (JSON, the same fields as the config file). Read with a range request, then followed with a
 * watch from the next revision, through etcd's v3 JSON gateway (HTTP, undici).
 *
 * etcd unreachable: the last known instances keep being served; the source reports itself
 * disconnected (status(), logged once per transition) and retries with exponential backoff
 * (100 ms doubling to 5 s, jittered), trying the endpoints in turn. On reconnect the watch resumes
 * at the revision after the last one seen, so nothing missed is lost; when that revision was
 * compacted meanwhile, the whole prefix is read again (a full resync) and watched from there.
 * A key whose value is not valid (JSON, fields, its id) is logged, counted and left out; a key
 * moved to another host is a delete here.
 */
import { Agent, type Dispatcher } from 'undici';
import type { Instance } from '../model/instance.js';
import type { Logger } from '../model/log.js';

export interface EtcdSourceOptions {
  readonly endpoints: readonly string[];
  readonly prefix: string;
  readonly host: string;
  /** The instance in a key's value, or its problems (validateInstanceFor with the key's id). */
  readonly validate: (
    raw: unknown,
    id: string,
  ) => { ok: true; instance: Instance } | { ok: false; problems: { path: string; message: string }[] };
  /** Called with every key of this host after each change; the first read waits for it. */
  readonly onChange: (instances: Instance[]) => void | Promise<void>;
  readonly log: Logger;
  readonly backoffMinMs?: number;
  readonly backoffMaxMs?: number;
  /** Timeout of a range request and of connecting, ms. */
  readonly timeoutMs?: number;
}

export interface EtcdStatus {
  connected: boolean;
  endpoint: string | undefined;
  /** The etcd revision the served state is at. */
  revision: string;
  /** When the connection was last lost (ISO), while disconnected. */
  disconnectedSince: string | undefined;
  lastError: string | undefined;
  reconnects: number;
  fullSyncs: number;
  compactions: number;
  /** Keys whose value was refused (counted at each refusal). */
  invalid: number;
  /** Keys currently refused, with the first problem. */
  invalidKeys: Record<string, string>;
  instances: number;
}

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const unb64 = (s: unknown): string => (typeof s === 'string' ? Buffer.from(s, 'base64').toString('utf8') : '');

/** The key just past every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: string): string {
  const b = Buffer.from(prefix, 'utf8');
  for (let i = b.length - 1; i >= 0; i--) {
    if ((b[i] as number) < 0xff) {
      const out = b.subarray(0, i + 1);
      out[i] = (out[i] as number) + 1;
      return out.toString('latin1');
    }
  }
  return '\0';
}

class Compacted extends Error {}

export class EtcdSource {
  private readonly agent: Agent;
  private readonly keyPrefix: string;
  private readonly byKey = new Map<string, Instance>();
  private revision = 0n;
  private stopped = false;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private endpointIndex = 0;
  private wake: (() => void) | undefined;
  private readonly st: EtcdStatus = {
    connected: false,
    endpoint: undefined,
    revision: '0',
    disconnectedSince: undefined,
    lastError: undefined,
    reconnects: 0,
    fullSyncs: 0,
    compactions: 0,
    invalid: 0,
    invalidKeys: {},
    instances: 0,
  };

  constructor(private readonly opts: EtcdSourceOptions) {
    this.keyPrefix = `${opts.prefix}hosts/${opts.host}/instances/`;
    this.agent = new Agent({ connectTimeout: opts.timeoutMs ?? 2000, keepAliveTimeout: 10_000 });
  }

  status(): EtcdStatus {
    return { ...this.st, invalidKeys: { ...this.st.invalidKeys }, instances: this.byKey.size };
  }

  /** Starts reading and watching; resolves after the first attempt (connected or not). */
  start(): Promise<void> {
    let first!: () => void;
    const attempted = new Promise<void>((r) => (first = r));
    this.loop = this.run(first);
    return attempted;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    await this.loop;
    await this.agent.close().catch(() => undefined);
  }

  private async run(firstAttemptDone: () => void): Promise<void> {
    let backoff = this.opts.backoffMinMs ?? 100;
    let needFull = true;
    while (!this.stopped) {
      const endpoint = this.opts.endpoints[this.endpointIndex % this.opts.endpoints.length] as string;
      try {
        if (needFull) {
          await this.fullSync(endpoint);
          needFull = false;
        }
        this.connected(endpoint);
        firstAttemptDone();
        backoff = this.opts.backoffMinMs ?? 100;
        await this.watch(endpoint); // returns when the stream ends
        if (!this.stopped) throw new Error('watch stream ended');
      } catch (err) {
        firstAttemptDone();
        if (this.stopped) break;
        if (err instanceof Compacted) {
          this.st.compactions++;
          this.opts.log.warn({ revision: this.revision.toString() }, 'etcd: watch revision compacted; reading the whole prefix again');
          needFull = true;
          continue;
        }
        this.disconnected(endpoint, err);
        this.endpointIndex++;
        const wait = Math.min(backoff, this.opts.backoffMaxMs ?? 5000);
        backoff = Math.min(backoff * 2, this.opts.backoffMaxMs ?? 5000);
        await this.sleep(wait / 2 + Math.random() * (wait / 2));
        this.st.reconnects++;
      }
    }
  }

  private connected(endpoint: string): void {
    if (!this.st.connected) {
      this.opts.log.info({ endpoint, revision: this.revision.toString(), instances: this.byKey.size }, 'etcd: connected');
    }
    this.st.connected = true;
    this.st.endpoint = endpoint;
    this.st.disconnectedSince = undefined;
    this.st.lastError = undefined;
  }

  private disconnected(endpoint: string, err: unknown): void {
    const msg = err instanceof Error ? err.message : String(err);
    if (this.st.connected || this.st.disconnectedSince === undefined) {
      this.opts.log.error(
        { endpoint, err: msg, instances: this.byKey.size },
        'etcd: unreachable; serving the last known instances, reconnecting with backoff',
      );
      this.st.disconnectedSince = new Date().toISOString();
    }
    this.st.connected = false;
    this.st.lastError = msg;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private async post(endpoint: string, path: string, body: unknown, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const url = new URL(path, endpoint);
    return this.agent.request({
      origin: url.origin,
      path: url.pathname,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
  }

  /** Reads every key of this host; replaces what is known. */
  private async fullSync(endpoint: string): Promise<void> {
    const r = await this.post(
      endpoint,
      '/v3/kv/range',
      { key: b64(this.keyPrefix), range_end: b64(prefixEnd(this.keyPrefix)) },
      AbortSignal.timeout(this.opts.timeoutMs ?? 2000),
    );
    const doc = (await r.body.json()) as { header?: { revision?: string }; kvs?: { key?: string; value?: string }[]; error?: string };
    if (r.statusCode !== 200) throw new Error(`etcd range: HTTP ${r.statusCode} ${JSON.stringify(doc).slice(0, 200)}`);
    this.byKey.clear();
    this.st.invalidKeys = {};
    for (const kv of doc.kvs ?? []) this.putKey(unb64(kv.key), unb64(kv.value));
    this.revision = BigInt(doc.header?.revision ?? '0');
    this.st.revision = this.revision.toString();
    this.st.fullSyncs++;
    await this.opts.onChange([...this.byKey.values()]);
  }

  /** Follows changes from the revision after the last one seen, until the stream ends. */
  private async watch(endpoint: string): Promise<void> {
    this.abort = new AbortController();
    const r = await this.post(
      endpoint,
      '/v3/watch',
      {
        create_request: {
          key: b64(this.keyPrefix),
          range_end: b64(prefixEnd(this.keyPrefix)),
          start_revision: (this.revision + 1n).toString(),
          progress_notify: true,
        },
      },
      this.abort.signal,
    );
    if (r.statusCode !== 200) throw new Error(`etcd watch: HTTP ${r.statusCode}`);
    let buf = '';
    for await (const chunk of r.body as AsyncIterable<Buffer>) {
      buf += chunk.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line !== '') this.onWatchMessage(line);
      }
      // The gateway may send objects without a newline after the last one: try what is buffered.
      const rest = buf.trim();
      if (rest.startsWith('{') && rest.endsWith('}')) {
        try {
          JSON.parse(rest);
          buf = '';
          this.onWatchMessage(rest);
        } catch {
          /* incomplete: wait for more */
        }
      }
    }
  }

  private onWatchMessage(line: string): void {
    let msg: {
      result?: {
        header?: { revision?: string };
        events?: { type?: string; kv?: { key?: string; value?: string; mod_revision?: string } }[];
        compact_revision?: string;
        created?: boolean;
        canceled?: boolean;
        cancel_reason?: string;
      };
      error?: unknown;
    };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      throw new Error(`etcd watch: not JSON: ${line.slice(0, 100)}`);
    }
    if (msg.error !== undefined) throw new Error(`etcd watch: ${JSON.stringify(msg.error).slice(0, 200)}`);
    const res = msg.result;
    if (!res) return;
    if (res.compact_revision !== undefined && res.compact_revision !== '0') throw new Compacted();
    if (res.canceled) throw new Error(`etcd watch canceled: ${res.cancel_reason ?? ''}`);
    const events = res.events ?? [];
    for (const ev of events) {
      const key = unb64(ev.kv?.key);
      if (ev.type === 'DELETE') {
        this.byKey.delete(key);
        delete this.st.invalidKeys[key];
      } else this.putKey(key, unb64(ev.kv?.value));
      const rev = BigInt(ev.kv?.mod_revision ?? '0');
      if (rev > this.revision) this.revision = rev;
    }
    // A progress notification (not the created response: replayed events may follow it) says the
    // watch has seen everything up to its header's revision.
    if (events.length === 0 && !res.created && res.header?.revision !== undefined) {
      const rev = BigInt(res.header.revision);
      if (rev > this.revision) this.revision = rev;
    }
    this.st.revision = this.revision.toString();
    if (events.length > 0) this.emit();
  }

  private putKey(key: string, value: string): void {
    const id = key.slice(this.keyPrefix.length);
    const refuse = (why: string): void => {
      this.st.invalid++;
      this.st.invalidKeys[key] = why;
      this.byKey.delete(key);
      this.opts.log.error({ key, problem: why }, 'etcd: invalid instance; key ignored');
    };
    if (!key.startsWith(this.keyPrefix) || id === '' || id.includes('/'))
      return refuse('not an instance key (<prefix>hosts/<host>/instances/<id>)');
    let raw: unknown;
    try {
      raw = JSON.parse(value);
    } catch (err) {
      return refuse(`not JSON: ${err instanceof Error ? err.message : String(err)}`);
    }
    const r = this.opts.validate(raw, id);
    if (!r.ok) return refuse(r.problems.map((p) => `${p.path || '(root)'}: ${p.message}`).join('; '));
    delete this.st.invalidKeys[key];
    this.byKey.set(key, r.instance);
  }

  private emit(): void {
    void Promise.resolve(this.opts.onChange([...this.byKey.values()])).catch((err: unknown) =>
      this.opts.log.error({ err: String(err) }, 'etcd: applying a change failed'),
    );
  }
}
