/**
 * Admin API over the unix socket: health, the registry (read side), counters.
 * Writes (PUT/PATCH/DELETE of instances, with crash-safe state) are not built yet: they answer
 * 501 and change nothing.
 */
import http from 'node:http';
import type { Dataplane } from '../dataplane/dataplane.js';
import type { Registry } from '../identity/registry.js';
import type { Logger } from '../model/log.js';
import type { PipelineStats } from '../pipeline/server.js';

export interface AdminDeps {
  readonly registry: Registry;
  readonly dataplane: Dataplane;
  readonly stats: PipelineStats;
  readonly log: Logger;
  /** The public signing keys (JWKs) to publish at /v1/keys. */
  readonly keys?: () => readonly object[];
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
    if (path === '/v1/health' && method === 'GET') return json(res, 200, { status: 'serving', instances: registry.size });
    if (path === '/v1/stats' && method === 'GET') {
      void dataplane.counters().then(
        (counters) =>
          json(res, 200, { pipeline: stats, kernel: counters, served: dataplane.served().length, reconciles: dataplane.reconciles }),
        (err: unknown) => json(res, 500, { error: String(err) }),
      );
      return;
    }
    if (path === '/v1/instances' && method === 'GET') return json(res, 200, registry.list());
    if (path === '/v1/keys' && method === 'GET') return keysHandler(res, deps);
    const m = /^\/v1\/instances\/([^/]+)$/.exec(path);
    if (m) {
      const id = decodeURIComponent(m[1] ?? '');
      if (method === 'GET') {
        const inst = registry.get(id);
        return inst ? json(res, 200, inst) : json(res, 404, { error: `no instance ${id}` });
      }
      if (method === 'PUT' || method === 'PATCH' || method === 'DELETE') {
        return json(res, 501, {
          error: 'changing instances through the admin API is not available yet; edit the config file and send SIGHUP',
        });
      }
      return json(res, 405, { error: `${method} not allowed` });
    }
    return json(res, 404, { error: `no such endpoint: ${method} ${path}` });
  });
}

/** `GET /v1/keys`: the daemon's public signing keys as a JWK set (verify GCE identity tokens with it). */
function keysHandler(res: http.ServerResponse, deps: AdminDeps): void {
  json(res, 200, { keys: deps.keys?.() ?? [] });
}
