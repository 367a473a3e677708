/**
 * Admin API over the unix socket (mode 0600): health, instances (list, get, and — through
 * instances.ts — put, RFC 7396 patch, delete, crash-safe), counters, the signing keys.
 * Bodies are JSON, at most MAX_ADMIN_BODY bytes (413 beyond).
 */
import http from 'node:http';
import type { Dataplane } from '../dataplane/dataplane.js';
import type { Registry } from '../identity/registry.js';
import type { Logger } from '../model/log.js';
import type { PipelineStats } from '../pipeline/server.js';
import type { ApiResult, Instances } from './instances.js';

/** Largest admin request body, bytes. */
export const MAX_ADMIN_BODY = 1024 * 1024;
/** The most an oversized body is read (and discarded) before the connection is cut. */
const DRAIN_LIMIT = 8 * MAX_ADMIN_BODY;

export interface AdminDeps {
  readonly registry: Registry;
  readonly dataplane: Dataplane;
  readonly stats: PipelineStats;
  readonly log: Logger;
  /** The public signing keys (JWKs) to publish at /v1/keys. */
  readonly keys?: () => readonly object[];
  /** Instance writes; absent: PUT/PATCH/DELETE answer 501. */
  readonly instances?: Instances;
  /** More to report on /v1/health and /v1/stats (sources, backends, etcd). */
  readonly status?: () => Record<string, unknown>;
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function createAdminServer(deps: AdminDeps): http.Server {
  const { registry, dataplane, stats } = deps;
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (path === '/v1/health' && method === 'GET')
      return json(res, 200, { status: 'serving', instances: registry.size, ...(deps.status?.() ?? {}) });
    if (path === '/v1/stats' && method === 'GET') {
      void dataplane.counters().then(
        (counters) =>
          json(res, 200, {
            pipeline: stats,
            kernel: counters,
            served: dataplane.served().length,
            reconciles: dataplane.reconciles,
            ...(deps.status?.() ?? {}),
          }),
        (err: unknown) => json(res, 500, { error: String(err) }),
      );
      return;
    }
    if (path === '/v1/instances' && method === 'GET') return json(res, 200, registry.list());
    if (path === '/v1/keys' && method === 'GET') return keysHandler(res, deps);
    const m = /^\/v1\/instances\/([^/]+)$/.exec(path);
    if (m) {
      let id: string;
      try {
        id = decodeURIComponent(m[1] ?? '');
      } catch {
        return json(res, 400, { error: 'bad percent-encoding in the instance id' });
      }
      if (method === 'GET') {
        const inst = registry.get(id);
        return inst ? json(res, 200, inst) : json(res, 404, { error: `no instance ${id}` });
      }
      if (method === 'PUT' || method === 'PATCH' || method === 'DELETE') return writeHandler(req, res, method, id, deps);
      return json(res, 405, { error: `${method} not allowed` });
    }
    return json(res, 404, { error: `no such endpoint: ${method} ${path}` });
  });
}

/** `GET /v1/keys`: the daemon's public signing keys as a JWK set (verify GCE identity tokens with it). */
function keysHandler(res: http.ServerResponse, deps: AdminDeps): void {
  json(res, 200, { keys: deps.keys?.() ?? [] });
}

// ---- writes -----------------------------------------------------------------------------------

function writeHandler(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  method: 'PUT' | 'PATCH' | 'DELETE',
  id: string,
  deps: AdminDeps,
): void {
  const instances = deps.instances;
  if (!instances) return json(res, 501, { error: 'instance writes are not available' });
  const reply = (p: Promise<ApiResult>): void =>
    void p.then(
      (r) => json(res, r.status, r.body),
      (err: unknown) => {
        deps.log.error({ err: String(err), id, method }, 'admin write failed');
        json(res, 500, { error: `not written: ${String(err)}` });
      },
    );
  if (method === 'DELETE') {
    req.resume();
    return reply(instances.delete(id));
  }
  // An oversized body is read to its end (up to DRAIN_LIMIT, discarded) before the 413, so that the
  // client, still writing, reads the answer instead of a reset; beyond that the socket is cut.
  const tooLarge = (): void => {
    res.setHeader('Connection', 'close');
    json(res, 413, { error: `body larger than ${MAX_ADMIN_BODY} bytes` });
  };
  const declared = Number(req.headers['content-length'] ?? 0);
  if (!Number.isFinite(declared) || declared > DRAIN_LIMIT) {
    tooLarge();
    req.destroy();
    return;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  let over = declared > MAX_ADMIN_BODY;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > DRAIN_LIMIT) {
      tooLarge();
      req.destroy();
    } else if (size > MAX_ADMIN_BODY) over = true;
    else chunks.push(c);
  });
  req.once('error', () => undefined);
  req.once('end', () => {
    if (over) return tooLarge();
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      return json(res, 400, {
        error: 'invalid instance',
        problems: [{ path: '', message: `not JSON: ${err instanceof Error ? err.message : String(err)}` }],
      });
    }
    reply(method === 'PUT' ? instances.put(id, body) : instances.patch(id, body));
  });
}
