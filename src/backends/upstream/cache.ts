/**
 * The response cache of the upstream backend: per key (which always starts with the instance id,
 * see `cacheKey`), bounded in bytes (lru-cache), fresh for `ttlMs`, then kept `staleMs` more to
 * answer when the backend fails (stale-if-error). Concurrent misses of one key share one backend
 * request (coalescing). Pure apart from the fetch it is given; the clock is injected.
 */
import { LRUCache } from 'lru-cache';
import type { BackendResponse } from '../types.js';

export type CacheOutcome = 'hit' | 'miss' | 'coalesced' | 'stale';

interface Entry {
  readonly instanceId: string;
  readonly res: BackendResponse;
  readonly fetchedAt: number;
  readonly size: number;
}

export interface CacheOptions {
  /** Total bytes of cached responses (bodies, headers, keys), at most. */
  readonly maxBytes: number;
  /** Fresh for this long; 0: never stored (requests still coalesce). */
  readonly ttlMs: number;
  /** After expiry, still served this long when the backend fails. */
  readonly staleMs: number;
  readonly clock?: () => number;
}

/** The cache key: the instance id first, then what the answer depends on. */
export function cacheKey(instanceId: string, parts: readonly (string | null)[]): string {
  return JSON.stringify([instanceId, ...parts]);
}

export interface Fetched {
  readonly res: BackendResponse;
  /** May be stored (a complete, cacheable answer). */
  readonly cacheable: boolean;
  /** The backend failed (a 5xx of its own, or no answer): a stale entry is better. */
  readonly failed: boolean;
}

export class ResponseCache {
  private readonly lru: LRUCache<string, Entry>;
  private readonly inflight = new Map<string, Promise<{ res: BackendResponse; stale: boolean }>>();
  private readonly byInstance = new Map<string, Set<string>>();
  private readonly clock: () => number;
  readonly counts = { hit: 0, miss: 0, coalesced: 0, stale: 0, stored: 0, tooBig: 0 };

  constructor(private readonly opts: CacheOptions) {
    this.clock = opts.clock ?? Date.now;
    this.lru = new LRUCache<string, Entry>({
      maxSize: Math.max(1, opts.maxBytes),
      sizeCalculation: (e) => Math.max(1, e.size),
      dispose: (e, key) => {
        const keys = this.byInstance.get(e.instanceId);
        keys?.delete(key);
        if (keys?.size === 0) this.byInstance.delete(e.instanceId);
      },
    });
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  get entries(): number {
    return this.lru.size;
  }

  /**
   * The answer for `key`: fresh from the cache, or shared with a request already under way, or
   * fetched (and stored when cacheable). When the fetch fails (throws, or `failed`) and a stale
   * entry within the window exists, that entry answers instead.
   */
  async get(instanceId: string, key: string, fetch: () => Promise<Fetched>): Promise<{ res: BackendResponse; outcome: CacheOutcome }> {
    if (!key.startsWith(JSON.stringify([instanceId]).slice(0, -1))) throw new Error('cache key does not start with the instance id');
    const now = this.clock();
    const e = this.lru.get(key, { updateAgeOnGet: false });
    if (e && now - e.fetchedAt < this.opts.ttlMs) {
      this.counts.hit++;
      return { res: e.res, outcome: 'hit' };
    }
    const running = this.inflight.get(key);
    if (running) {
      this.counts.coalesced++;
      const r = await running;
      return { res: r.res, outcome: r.stale ? 'stale' : 'coalesced' };
    }
    this.counts.miss++;
    const p = this.fetchOnce(instanceId, key, fetch);
    this.inflight.set(key, p);
    try {
      const r = await p;
      return { res: r.res, outcome: r.stale ? 'stale' : 'miss' };
    } finally {
      this.inflight.delete(key);
    }
  }

  private async fetchOnce(
    instanceId: string,
    key: string,
    fetch: () => Promise<Fetched>,
  ): Promise<{ res: BackendResponse; stale: boolean }> {
    let f: Fetched;
    try {
      f = await fetch();
    } catch (err) {
      const s = this.staleFor(key);
      if (s) return { res: s, stale: true };
      throw err;
    }
    if (f.failed) {
      const s = this.staleFor(key);
      if (s) return { res: s, stale: true };
      return { res: f.res, stale: false };
    }
    if (f.cacheable && this.opts.ttlMs > 0) this.store(instanceId, key, f.res);
    return { res: f.res, stale: false };
  }

  private staleFor(key: string): BackendResponse | undefined {
    const e = this.lru.get(key, { updateAgeOnGet: false });
    if (!e || this.clock() - e.fetchedAt >= this.opts.ttlMs + this.opts.staleMs) return undefined;
    this.counts.stale++;
    return e.res;
  }

  private store(instanceId: string, key: string, res: BackendResponse): void {
    let size = key.length + res.body.length;
    for (const [k, v] of Object.entries(res.headers)) size += k.length + v.length;
    if (size > this.opts.maxBytes) {
      this.counts.tooBig++;
      return;
    }
    this.lru.set(key, { instanceId, res, fetchedAt: this.clock(), size }, { ttl: this.opts.ttlMs + this.opts.staleMs });
    this.counts.stored++;
    let keys = this.byInstance.get(instanceId);
    if (!keys) this.byInstance.set(instanceId, (keys = new Set()));
    keys.add(key);
  }

  /** Drops every entry of the instance. */
  forget(instanceId: string): void {
    for (const key of [...(this.byInstance.get(instanceId) ?? [])]) this.lru.delete(key);
    this.byInstance.delete(instanceId);
  }
}
