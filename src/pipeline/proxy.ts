/**
 * The pipeline's side of the upstream backend: instances whose answers come from upstream
 * (`backend: upstream`, or `default_backend`) have every request proxied there instead of
 * rendered by a dialect. The caller (server.ts) has identified the guest and applied the limits;
 * this reads the body (bounded), asks the backend, and answers — unless the guest's binding went
 * away meanwhile (403, never another instance's data).
 */
import type http from 'node:http';
import type { Backend, BackendResponse } from '../backends/types.js';
import type { Bound, Registry, RegistryChange } from '../identity/registry.js';
import type { BackendKind, Instance } from '../model/instance.js';
import type { Logger } from '../model/log.js';

export interface ProxyOptions {
  readonly upstream?: Backend;
  readonly defaultBackend?: BackendKind;
}

export class Proxy {
  constructor(
    private readonly opts: ProxyOptions,
    registry: Registry,
    private readonly log: Logger,
  ) {
    // A changed or removed instance's cached answers go at once.
    registry.on('change', (c: RegistryChange) => {
      for (const id of [...c.removed, ...c.changed]) opts.upstream?.forget(id);
    });
  }

  /** Is `instance` answered by the upstream backend? */
  takes(instance: Instance): boolean {
    return this.opts.upstream !== undefined && (instance.backend ?? this.opts.defaultBackend ?? 'embedded') === 'upstream';
  }

  /**
   * Proxies the request; `stillBound()` is asked before answering. `maxBody` bounds the request body
   * (413 beyond).
   */
  handle(req: http.IncomingMessage, res: http.ServerResponse, bound: Bound, stillBound: () => boolean, maxBody: number): void {
    const backend = this.opts.upstream;
    if (!backend) return;
    const raw = req.url ?? '/';
    const pathAndQuery = raw.startsWith('/')
      ? raw
      : (() => {
          const u = new URL(raw);
          return u.pathname + u.search;
        })();
    const q = pathAndQuery.indexOf('?');
    const headers: Record<string, string | undefined> = {};
    for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
    readBody(req, maxBody)
      .then(
        async (body) => {
          if (body === undefined)
            return reply(
              req,
              res,
              { status: 413, headers: { 'content-type': 'text/plain' }, body: Buffer.from('Payload Too Large\n') },
              true,
            );
          const out = await backend.handle({
            instance: bound.instance,
            guestIp: bound.port.ipv4,
            method: req.method ?? 'GET',
            rawPath: q < 0 ? pathAndQuery : pathAndQuery.slice(0, q),
            query: q < 0 ? '' : pathAndQuery.slice(q + 1),
            headers,
            ...(body.length > 0 ? { body } : {}),
          });
          if (!stillBound())
            return reply(req, res, { status: 403, headers: { 'content-type': 'text/plain' }, body: Buffer.from('Forbidden\n') }, true);
          reply(req, res, out, false);
        },
        () => req.socket.destroy(),
      )
      .catch((err: unknown) => {
        this.log.error({ err: String(err), instance: bound.instance.id }, 'proxying failed');
        if (!res.headersSent)
          reply(req, res, { status: 502, headers: { 'content-type': 'text/plain' }, body: Buffer.from('Bad Gateway\n') }, true);
      });
  }
}

function reply(req: http.IncomingMessage, res: http.ServerResponse, out: BackendResponse, close: boolean): void {
  if (res.writableEnded || req.socket.destroyed) return;
  const headers: Record<string, string | number> = { ...out.headers, 'content-length': out.body.length };
  if (close) headers['connection'] = 'close';
  res.writeHead(out.status, headers);
  res.end(req.method === 'HEAD' ? undefined : out.body);
}

/** The body, or undefined when longer than `max` bytes. */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= max) chunks.push(c);
    });
    req.once('end', () => resolve(size > max ? undefined : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}
