/**
 * The upstream backend: proxies a guest's request to a metadata API such as nova's, the way
 * neutron's metadata agent does — with the instance's identity in headers the guest cannot set:
 *
 *   X-Instance-ID            the instance id
 *   X-Tenant-ID              the instance's project
 *   X-Instance-ID-Signature  hex(HMAC-SHA256(shared_secret, instance id))
 *   X-Forwarded-For          the guest's IP
 *
 * Only FORWARDED request headers of the guest go upstream (so its own X-Instance-ID*,
 * X-Tenant-ID and X-Forwarded-For never do). One undici Pool per backend: keep-alive, at most
 * `max_connections` connections, a bounded queue beyond them (503 past it), `timeout_ms` for
 * connecting and for the whole request (504). A circuit breaker refuses at once (503) after
 * repeated failures. GET/HEAD answers (200, 404) are cached per instance (cache.ts), concurrent
 * identical misses coalesce, and an expired answer is served when the backend fails
 * (stale_if_error_s). Answers larger than MAX_RESPONSE_BYTES are cut: 502, never cached.
 */
import { createHmac } from 'node:crypto';
import { Pool, type Dispatcher } from 'undici';
import type { UpstreamBackendSpec } from '../../model/instance.js';
import type { Logger } from '../../model/log.js';
import type { Backend, BackendRequest, BackendResponse } from '../types.js';
import { Breaker } from './breaker.js';
import { cacheKey, ResponseCache, type Fetched } from './cache.js';

/** Largest backend answer passed on (and cached); larger: 502. */
export const MAX_RESPONSE_BYTES = 1024 * 1024;
/** Bytes of cached answers, all instances together. */
export const CACHE_MAX_BYTES = 64 * 1024 * 1024;
/**
 * Requests in flight or waiting for a connection, per connection allowed; more get 503 at once.
 * A boot storm has one cold request per booting guest at the same instant: 16 connections × 64
 * lets 1,024 wait (each waits at most timeout_ms) rather than refusing a 200-guest storm.
 */
const QUEUE_PER_CONNECTION = 64;
/** Consecutive failures that open the circuit, and how long it stays open. */
export const BREAKER = { failures: 5, openMs: 2000 } as const;

/** Guest request headers passed upstream (and part of the cache key). Nothing else goes. */
export const FORWARDED = [
  'accept',
  'content-type',
  'metadata-flavor',
  'metadata',
  'x-aws-ec2-metadata-token',
  'x-aws-ec2-metadata-token-ttl-seconds',
] as const;
/** Backend response headers passed to the guest. */
const RETURNED = ['content-type', 'etag', 'last-modified'] as const;

export function signInstanceId(secret: string, instanceId: string): string {
  return createHmac('sha256', secret).update(instanceId).digest('hex');
}

/** The headers sent upstream for `req`: the forwarded ones of the guest, then the identity ones. */
export function upstreamHeaders(req: BackendRequest, secret: string): Record<string, string> {
  const h: Record<string, string> = {};
  for (const name of FORWARDED) {
    const v = req.headers[name];
    if (v !== undefined) h[name] = v;
  }
  h['user-agent'] = 'linkgate';
  h['x-instance-id'] = req.instance.id;
  h['x-tenant-id'] = req.instance.project;
  h['x-instance-id-signature'] = signInstanceId(secret, req.instance.id);
  h['x-forwarded-for'] = req.guestIp;
  return h;
}

class UpstreamError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const text = (status: number, body: string): BackendResponse => ({
  status,
  headers: { 'content-type': 'text/plain' },
  body: Buffer.from(body),
});

export interface UpstreamOptions {
  readonly log: Logger;
  readonly clock?: () => number;
  /** For tests: where requests go instead of a Pool to `spec.url`. */
  readonly dispatcher?: Dispatcher;
}

export class UpstreamBackend implements Backend {
  private readonly dispatcher: Dispatcher;
  private readonly basePath: string;
  private readonly cache: ResponseCache;
  readonly breaker: Breaker;
  private pending = 0;
  private readonly counts = { requests: 0, backendCalls: 0, failures: 0, timeouts: 0, tooLarge: 0, refused: 0 };

  constructor(
    private readonly spec: UpstreamBackendSpec,
    private readonly opts: UpstreamOptions,
  ) {
    const url = new URL(spec.url);
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.dispatcher =
      opts.dispatcher ??
      new Pool(url.origin, {
        connections: spec.max_connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connectTimeout: spec.timeout_ms,
        headersTimeout: spec.timeout_ms,
        bodyTimeout: spec.timeout_ms,
      });
    const clock = opts.clock ?? Date.now;
    this.breaker = new Breaker(BREAKER, clock);
    this.cache = new ResponseCache({
      maxBytes: CACHE_MAX_BYTES,
      ttlMs: spec.cache_ttl_s * 1000,
      staleMs: spec.stale_if_error_s * 1000,
      clock,
    });
  }

  async handle(req: BackendRequest): Promise<BackendResponse> {
    this.counts.requests++;
    const fetch = (): Promise<Fetched> => this.fetch(req);
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return (await fetch()).res;
      const key = cacheKey(req.instance.id, [req.method, req.rawPath, req.query, ...FORWARDED.map((h) => req.headers[h] ?? null)]);
      return (await this.cache.get(req.instance.id, key, fetch)).res;
    } catch (err) {
      if (err instanceof UpstreamError) return text(err.status, `${err.message}\n`);
      this.opts.log.error({ err: String(err), instance: req.instance.id }, 'upstream backend failed');
      return text(502, 'Bad Gateway\n');
    }
  }

  private async fetch(req: BackendRequest): Promise<Fetched> {
    if (this.pending >= this.spec.max_connections * QUEUE_PER_CONNECTION) {
      this.counts.refused++;
      throw new UpstreamError(503, 'metadata backend busy');
    }
    if (!this.breaker.allow()) {
      this.counts.refused++;
      throw new UpstreamError(503, 'metadata backend unavailable (circuit open)');
    }
    this.pending++;
    this.counts.backendCalls++;
    const deadline = AbortSignal.timeout(this.spec.timeout_ms);
    try {
      const r = await this.dispatcher.request({
        origin: new URL(this.spec.url).origin,
        path: `${this.basePath}${req.rawPath}${req.query ? `?${req.query}` : ''}`,
        method: req.method,
        headers: upstreamHeaders(req, this.spec.shared_secret),
        ...(req.body !== undefined && req.body.length > 0 ? { body: req.body } : {}),
        signal: deadline,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of r.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_RESPONSE_BYTES) {
          r.body.destroy();
          this.counts.tooLarge++;
          this.breaker.success();
          this.opts.log.warn({ instance: req.instance.id, path: req.rawPath }, `backend answer over ${MAX_RESPONSE_BYTES} bytes: 502`);
          return { res: text(502, 'Bad Gateway: backend answer too large\n'), cacheable: false, failed: false };
        }
        chunks.push(chunk);
      }
      this.breaker.success();
      const headers: Record<string, string> = {};
      for (const name of RETURNED) {
        const v = r.headers[name];
        if (typeof v === 'string') headers[name] = v;
      }
      const res = { status: r.statusCode, headers, body: Buffer.concat(chunks) };
      return { res, cacheable: r.statusCode === 200 || r.statusCode === 404, failed: r.statusCode >= 500 };
    } catch (err) {
      this.counts.failures++;
      this.breaker.failure();
      const code = (err as { code?: string; name?: string }).code ?? (err as { name?: string }).name ?? '';
      const timeout = /TIMEOUT|TimeoutError|AbortError/i.test(code) || deadline.aborted;
      if (timeout) this.counts.timeouts++;
      throw new UpstreamError(timeout ? 504 : 503, timeout ? 'metadata backend timed out' : 'metadata backend unreachable');
    } finally {
      this.pending--;
    }
  }

  forget(instanceId: string): void {
    this.cache.forget(instanceId);
  }

  stats(): Record<string, unknown> {
    return {
      ...this.counts,
      pending: this.pending,
      breaker: this.breaker.state,
      breakerOpened: this.breaker.opened,
      cache: { ...this.cache.counts, entries: this.cache.entries, bytes: this.cache.bytes },
    };
  }

  async close(): Promise<void> {
    if (!this.opts.dispatcher) await this.dispatcher.close();
  }
}
