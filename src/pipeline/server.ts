/**
 * The request pipeline on the kernel path: accepted connection → SO_MARK → binding → dialect →
 * response. A connection whose mark names no registered binding gets 403 and no data; so does a
 * connection whose binding was removed or rebound since it was accepted.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { DialectContext, DialectRequest, DialectResponse, SigningKey } from '../dialects/types.js';
import type { Registry, Bound, RegistryChange } from '../identity/registry.js';
import { ec2OptionsFor, type Config } from '../model/instance.js';
import { dialectFor, type DialectEntry } from './router.js';
import type { Logger } from '../model/log.js';
import { GuestData } from './guestdata.js';
import { final, LongPolls } from './longpoll.js';
import { RateLimiter } from './ratelimit.js';
import { Proxy, type ProxyOptions } from './proxy.js';

/** The syscalls Node lacks (native-bindings/). */
export interface SockOpts {
  getMark(fd: number): number;
  setIpTtl(fd: number, ttl: number): void;
  getIpTtl(fd: number): number;
}

export interface PipelineOptions {
  readonly config: Pick<Config, 'ec2' | 'limits'>;
  readonly registry: Registry;
  readonly sockopts: SockOpts;
  readonly tokenKey: Buffer;
  /** The daemon's signing key (GCE identity tokens); absent: signed documents are unavailable. */
  readonly signingKey?: SigningKey;
  readonly log: Logger;
  /** Where answers of `backend: upstream` instances come from (proxy.ts). */
  readonly backends?: ProxyOptions;
}

export interface PipelineStats {
  connections: number;
  refusedConnections: number;
  requests: number;
  forbidden: number;
  badRequests: number;
  /** Refused by the per-instance rate limit (429). */
  rateLimited: number;
  /** Long polls refused because the instance already had limits.held_per_instance held (503). */
  heldRefused: number;
}

/** What a connection was identified as when it was accepted. */
interface ConnIdentity {
  readonly fd: number;
  readonly mark: number;
  readonly key: string | undefined;
}

const identities = new WeakMap<Socket, ConnIdentity>();

/** Body limit for guest requests: no dialect reads more than a few bytes. */
const MAX_BODY = 16 * 1024;

function fdOf(socket: Socket): number {
  // Node keeps the descriptor on the private libuv handle; there is no public accessor.
  const handle = (socket as unknown as { _handle?: { fd?: number } })._handle;
  return typeof handle?.fd === 'number' ? handle.fd : -1;
}

const text = (status: number, body: string, extra: Record<string, string> = {}): DialectResponse => ({
  status,
  headers: { 'Content-Type': 'text/plain', ...extra },
  body,
});

export function createPipeline(opts: PipelineOptions): { server: http.Server; stats: PipelineStats; longPolls: LongPolls } {
  const { registry, sockopts, log } = opts;
  const limits = opts.config.limits;
  const stats: PipelineStats = {
    connections: 0,
    refusedConnections: 0,
    requests: 0,
    forbidden: 0,
    badRequests: 0,
    rateLimited: 0,
    heldRefused: 0,
  };
  const limiter = new RateLimiter();
  const guestData = new GuestData();
  const longPolls = new LongPolls(limits.held_per_instance ?? 16);
  const proxy = new Proxy(opts.backends ?? {}, registry, log);
  registry.on('change', (change: RegistryChange) => {
    for (const id of change.removed) {
      guestData.forget(id);
      limiter.forget(id);
    }
    longPolls.onChange(change);
  });

  const server = http.createServer({
    maxHeaderSize: limits.max_header_bytes,
    headersTimeout: limits.header_timeout_ms,
    requestTimeout: limits.header_timeout_ms * 2,
    keepAliveTimeout: limits.keepalive_timeout_ms,
    insecureHTTPParser: false,
  });
  server.maxHeadersCount = 100;

  server.on('connection', (socket: Socket) => {
    stats.connections++;
    const fd = fdOf(socket);
    let mark = 0;
    try {
      mark = fd >= 0 ? sockopts.getMark(fd) : 0;
    } catch (err) {
      log.warn({ err: String(err) }, 'cannot read SO_MARK of an accepted socket');
    }
    const bound = registry.byMark(mark);
    if (!bound) stats.refusedConnections++;
    identities.set(socket, { fd, mark, key: bound?.key });
    socket.setNoDelay(true);
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    stats.badRequests++;
    if (!socket.writable || (err.code === 'ECONNRESET' && !socket.bytesWritten)) {
      socket.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? '431 Request Header Fields Too Large'
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
    const body = `${status.slice(4)}\n`;
    socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
  });

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    stats.requests++;
    const ident = identities.get(req.socket);
    const bound: Bound | undefined = ident?.key !== undefined ? registry.byMark(ident.mark) : undefined;
    if (!ident || !bound || bound.key !== ident.key) {
      stats.forbidden++;
      send(req, res, text(403, 'Forbidden\n'), undefined, true);
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (!Number.isFinite(declared) || declared > MAX_BODY) {
      stats.badRequests++;
      send(req, res, text(413, 'Payload Too Large\n'), undefined, true);
      return;
    }
    let dreq: DialectRequest;
    try {
      dreq = toDialectRequest(req);
    } catch {
      stats.badRequests++;
      send(req, res, text(400, 'Bad Request\n'), undefined, false);
      return;
    }
    const dialect = dialectFor(dreq.path);
    // ---- upstream backend: proxied instead of rendered (proxy.ts); the dialect only names the rate limit ----
    if (proxy.takes(bound.instance)) {
      if (dialect && !limiter.take(dialect.name, bound.instance.id, limits.rate_per_s?.[dialect.name] ?? 0, dreq.now)) {
        stats.rateLimited++;
        send(req, res, refusal(dialect, 429), ident.fd, false);
        return;
      }
      const stillBound = (): boolean => registry.byMark(ident.mark)?.key === ident.key;
      proxy.handle(req, res, bound, stillBound, MAX_BODY);
      return;
    }
    // ---- end upstream ----
    if (!dialect) {
      send(req, res, text(404, 'Not Found\n'), ident.fd, false);
      return;
    }
    const rate = limits.rate_per_s?.[dialect.name] ?? 0;
    if (!limiter.take(dialect.name, bound.instance.id, rate, dreq.now)) {
      stats.rateLimited++;
      send(req, res, refusal(dialect, 429), ident.fd, false);
      return;
    }
    const hasBody = req.headers['transfer-encoding'] !== undefined || declared > 0;
    if (!hasBody) {
      answer(req, res, dreq, dialect, ident);
      return;
    }
    readBody(req, MAX_BODY).then(
      (body) => {
        if (body === undefined) {
          stats.badRequests++;
          send(req, res, text(413, 'Payload Too Large\n'), undefined, true);
        } else answer(req, res, { ...dreq, body }, dialect, ident);
      },
      () => req.socket.destroy(),
    );
  });

  function ctxFor(b: Bound): DialectContext {
    const guest = guestData.get(b.instance.id);
    return {
      instance: b.instance,
      port: b.port,
      ec2: ec2OptionsFor(opts.config, b.instance),
      tokenKey: opts.tokenKey,
      since: registry.since(b.instance.id) ?? 0,
      ...(opts.signingKey !== undefined ? { signingKey: opts.signingKey } : {}),
      ...(guest !== undefined ? { guestData: guest } : {}),
    };
  }

  /**
   * Renders `dreq` for the connection's binding as registered now (403 when it is gone or was
   * rebound since the connection was accepted), applying what the dialect asks to store.
   */
  function render(dreq: DialectRequest, dialect: DialectEntry, ident: ConnIdentity): DialectResponse {
    const b = registry.byMark(ident.mark);
    if (!b || b.key !== ident.key) return text(403, 'Forbidden\n');
    try {
      const out = dialect.handle(dreq, ctxFor(b));
      if (out.store !== undefined) guestData.set(b.instance.id, out.store.key, out.store.value);
      return out;
    } catch (err) {
      log.error({ err: String(err), path: dreq.path, instance: b.instance.id }, 'dialect failed');
      return text(500, 'Internal Server Error\n');
    }
  }

  function answer(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    dreq: DialectRequest,
    dialect: DialectEntry,
    ident: ConnIdentity,
  ): void {
    const out = render(dreq, dialect, ident);
    if (out.wait === undefined) {
      send(req, res, out, ident.fd, false);
      return;
    }
    // A long poll: held until the instance changes or the wait times out (longpoll.ts).
    const instanceId = registry.byMark(ident.mark)?.instance.id ?? '';
    const held = longPolls.hold(
      {
        instanceId,
        etag: out.wait.etag,
        rerender: () => render({ ...dreq, now: Date.now() }, dialect, ident),
        finish: (r) => {
          if (!res.writableEnded && !req.socket.destroyed) send(req, res, r, ident.fd, false);
        },
      },
      out.wait.timeoutMs,
    );
    if (!held.ok) {
      stats.heldRefused++;
      send(req, res, refusal(dialect, 503), ident.fd, false);
      return;
    }
    res.once('close', held.cancel);
  }

  function send(req: http.IncomingMessage, res: http.ServerResponse, out: DialectResponse, fd: number | undefined, close: boolean): void {
    if (out.ipTtl !== undefined && fd !== undefined && fd >= 0) {
      // This response alone leaves with the hop limit; later ones on the connection do not.
      try {
        const before = sockopts.getIpTtl(fd);
        sockopts.setIpTtl(fd, out.ipTtl);
        res.once('finish', () => {
          try {
            if (!req.socket.destroyed) sockopts.setIpTtl(fd, before);
          } catch {
            /* the connection is gone */
          }
        });
      } catch (err) {
        log.warn({ err: String(err) }, 'cannot set IP_TTL');
      }
    }
    const body = Buffer.from(out.body, 'utf8');
    const headers: Record<string, string | number> = { ...out.headers, 'Content-Length': body.length };
    if (close) headers.Connection = 'close';
    res.writeHead(out.status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  return { server, stats, longPolls };
}

function refusal(dialect: DialectEntry, status: 429 | 503): DialectResponse {
  return final(dialect.refuse?.(status) ?? text(status, status === 429 ? 'Too Many Requests\n' : 'Service Unavailable\n'));
}

/** The body as UTF-8, or undefined when it is longer than `max` bytes. */
function readBody(req: http.IncomingMessage, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) over = true;
      else chunks.push(c);
    });
    req.once('end', () => resolve(over ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

function toDialectRequest(req: http.IncomingMessage): DialectRequest {
  const raw = req.url ?? '/';
  // Origin-form only ("/path?query"); absolute-form is parsed for its path.
  const pathAndQuery = raw.startsWith('/') ? raw : new URL(raw).pathname + (new URL(raw).search || '');
  const q = pathAndQuery.indexOf('?');
  const rawPath = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const path = decodeURIComponent(rawPath);
  if (!path.startsWith('/') || path.includes('\0')) throw new Error('bad path');
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  return { method: req.method ?? 'GET', path, query: q < 0 ? '' : pathAndQuery.slice(q + 1), headers, now: Date.now() };
}
