/**
 * The request pipeline on the kernel path: accepted connection → SO_MARK → binding → dialect →
 * response. A connection whose mark names no registered binding gets 403 and no data; so does a
 * connection whose binding was removed or rebound since it was accepted.
 */
import { closeSync } from 'node:fs';
import http from 'node:http';
import net, { type Socket } from 'node:net';
import { DateHeader, leanHead, leanPrefix, leanSuffix, parseLean, unsafeHeaderValue, type LeanRequest } from './lean.js';
import {
  TOKEN,
  CACHE_BYTES,
  HANDOFF_CLOSE_AFTER,
  HANDOFF_STALE,
  fastPathFlags,
  type NativeLoop,
  type NativeLoopFactory,
  type NativeLoopStats,
} from './fastpath.js';
import type { DialectContext, DialectRequest, DialectResponse, SigningKey } from '../dialects/types.js';
import type { Registry, Bound, RegistryChange } from '../identity/registry.js';
import { ec2OptionsFor, type Config } from '../model/instance.js';
import { DIALECTS, dialectFor, type DialectEntry } from './router.js';
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
  /** Makes the native serving loop (fastpath.ts); absent: JavaScript accepts and answers everything. */
  readonly nativeLoop?: NativeLoopFactory;
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
  /** The native serving loop's own counts (its answers are not in `requests`, its accepts not in `connections`). */
  readonly fastPath?: NativeLoopStats;
}

/** What the native loop said when it handed a connection over. */
interface HandedOver {
  readonly mark: number;
  readonly state: number;
  readonly out: Buffer | undefined;
  readonly rest: Buffer | undefined;
}

const handedOver = new WeakMap<Socket, HandedOver>();

const TIMEOUT_BODY = 'Request Timeout\n';
/** What a connection that sent nothing complete within header_timeout_ms gets (both paths). */
const TIMEOUT_RESPONSE = `HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: ${TIMEOUT_BODY.length}\r\nConnection: close\r\n\r\n${TIMEOUT_BODY}`;

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

/** Where one response goes: Node's ServerResponse (general path) or the socket itself (lean path). */
interface Sink {
  readonly method: string;
  /** Sends `out`; `close` forces `Connection: close`. */
  send(out: DialectResponse, close: boolean): void;
  /** True once answered or once the client is gone. */
  finished(): boolean;
  /** Calls `cb` when the client goes away (or the response is done). */
  onClose(cb: () => void): void;
}

/** What answering one request may do with the native loop's cache. */
interface Replay {
  /** The binding's EC2 tokens are optional: an answer to a read with a checked token is the token-less one. */
  readonly tokensOptional: boolean;
  /** Pre-renders what a crawler of the request's tree asks next. */
  warm(flags: number, headers: Readonly<Record<string, string>>): void;
}

/** A connection on the lean path (lean.ts): answered here until a request needs the general parser. */
interface LeanConn {
  readonly socket: Socket;
  readonly ident: ConnIdentity;
  /** Last activity (ms): for the header and keep-alive timeouts. */
  at: number;
  /** A request was answered on it (idle: keep-alive timeout) or not yet (header timeout). */
  served: boolean;
  /** A request is being answered (a long poll is held, or a write is pending). */
  busy: boolean;
  /** The client half-closed: close once the current response is out. */
  ended: boolean;
  /** Set while a request whose answer may go into the native loop's cache is answered (its dialect has no rate limit). */
  replay: Replay | undefined;
  /** Bytes that arrived while a request was being answered: the general path takes them after the answer. */
  queued: Buffer[] | undefined;
  /** Hands the connection to Node's http server with `chunk` as its first bytes. */
  toGeneral(chunk: Buffer): void;
}

export interface Pipeline {
  readonly server: http.Server;
  readonly stats: PipelineStats;
  readonly longPolls: LongPolls;
  /** Closes idle connections, the lean path's included (server.closeIdleConnections covers only the general path). */
  closeIdle(): void;
  /** Closes every connection. */
  closeAll(): void;
  /** Connections open now on the lean path. */
  leanConnections(): number;
  /** The native serving loop, when there is one: the listeners give it their sockets. */
  readonly native: NativeLoop | undefined;
  /** Ends the native loop's thread (after stopping). */
  dispose(): void;
}

export function createPipeline(opts: PipelineOptions): Pipeline {
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
    if (native) {
      // The answers of changed instances go (their marks stay); unbound marks' go, and connections
      // accepted under them are refused from now on.
      const drop: number[] = [];
      for (const id of change.changed) {
        for (const p of registry.get(id)?.ports ?? []) {
          const m = registry.byTriple(p.interface, p.mac, p.ipv4, p.network)?.mark;
          if (m !== undefined) drop.push(m);
        }
      }
      native.change(change.unbound, drop);
      for (const m of change.unbound) warmed.delete(m);
      for (const m of drop) warmed.delete(m);
      prewarm([...change.added, ...change.changed]);
    }
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

  // Node's own connection listener (the general HTTP parser) runs only for connections the lean
  // path hands over: every connection starts lean (see lean.ts).
  const general = server.listeners('connection');
  if (general.length !== 1) throw new Error('unexpected http.Server connection listeners');
  const httpConnection = general[0] as (socket: Socket) => void;
  server.removeListener('connection', httpConnection);

  const dateHeader = new DateHeader();
  const keepAliveS = limits.keepalive_timeout_ms > 0 ? Math.floor(limits.keepalive_timeout_ms / 1000) : undefined;
  const native = opts.nativeLoop?.({
    handoff: fromNative,
    maxHeaderBytes: limits.max_header_bytes,
    headerTimeoutMs: limits.header_timeout_ms,
    keepAliveTimeoutMs: limits.keepalive_timeout_ms,
    keepAliveSuffix: leanSuffix(false, keepAliveS),
    closeSuffix: leanSuffix(true, keepAliveS),
    timeoutResponse: TIMEOUT_RESPONSE,
    cacheBytes: CACHE_BYTES,
  });
  if (native) Object.defineProperty(stats, 'fastPath', { get: () => native.stats(), enumerable: true });

  /** A connection the native loop gives up (a miss, an unusual request): it goes the way of an accepted one. */
  function fromNative(fd: number, mark: number, state: number, out: Buffer | undefined, rest: Buffer | undefined): void {
    let socket: Socket;
    try {
      socket = new net.Socket({ fd, readable: true, writable: true });
    } catch (err) {
      log.warn({ err: String(err) }, 'cannot take a connection from the native loop');
      try {
        closeSync(fd);
      } catch {
        /* already gone */
      }
      return;
    }
    try {
      handedOver.set(socket, { mark, state, out, rest });
      server.emit('connection', socket);
    } catch (err) {
      log.error({ err: String(err) }, 'a connection from the native loop failed');
      socket.destroy();
    }
  }
  const leanConns = new Set<LeanConn>();
  let sweeper: NodeJS.Timeout | undefined;

  server.on('connection', (socket: Socket) => {
    const fd = fdOf(socket);
    const handed = handedOver.get(socket);
    let mark = handed?.mark ?? 0;
    if (handed === undefined) {
      stats.connections++;
      try {
        mark = fd >= 0 ? sockopts.getMark(fd) : 0;
      } catch (err) {
        log.warn({ err: String(err) }, 'cannot read SO_MARK of an accepted socket');
      }
    }
    const bound = registry.byMark(mark);
    if (!bound) stats.refusedConnections++;
    // Stale: accepted under a binding that has gone since; its requests get 403.
    const stale = handed !== undefined && (handed.state & HANDOFF_STALE) !== 0;
    const ident: ConnIdentity = { fd, mark, key: stale ? undefined : bound?.key };
    identities.set(socket, ident);
    if (handed?.out !== undefined) {
      // The rest of an answer the loop could not write at once.
      if ((handed.state & HANDOFF_CLOSE_AFTER) !== 0) {
        socket.end(handed.out);
        return;
      }
      socket.write(handed.out);
    }
    startLean(socket, ident, handed?.rest);
  });

  /** Serves `socket` on the lean path; `first`: bytes already read from it (by the native loop). */
  function startLean(socket: Socket, ident: ConnIdentity, first?: Buffer): void {
    const onData = (chunk: Buffer): void => {
      if (conn.busy) {
        // A request behind one still being answered (a held long poll): kept for the general path.
        (conn.queued ??= []).push(chunk);
        return;
      }
      conn.at = Date.now();
      const lreq = parseLean(chunk.toString('latin1'), limits.max_header_bytes);
      if (lreq === undefined || !leanRequest(conn, lreq, conn.at)) toGeneral(chunk);
    };
    const onEnd = (): void => {
      conn.ended = true;
      if (!conn.busy && !socket.writableEnded) socket.end();
    };
    const onError = (): void => void socket.destroy();
    const onClose = (): void => void leanConns.delete(conn);
    const toGeneral = (chunk: Buffer): void => {
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.removeListener('error', onError);
      socket.removeListener('close', onClose);
      leanConns.delete(conn);
      socket.setNoDelay(true);
      httpConnection.call(server, socket);
      // The bytes already read go to the general parser first, before anything read later.
      socket.emit('data', chunk);
    };
    const conn: LeanConn = {
      socket,
      ident,
      at: Date.now(),
      served: false,
      busy: false,
      ended: false,
      replay: undefined,
      queued: undefined,
      toGeneral,
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', onError);
    socket.on('close', onClose);
    leanConns.add(conn);
    sweeper ??= setInterval(sweep, sweepEvery).unref();
    if (first !== undefined) onData(first);
  }

  // Timeouts of lean connections, checked in one sweep rather than a timer per socket: nothing
  // received within header_timeout_ms of accepting: 408 (as the general path); idle for
  // keepalive_timeout_ms after a response: closed.
  const sweepEvery = Math.max(50, Math.min(1000, Math.floor(Math.min(limits.header_timeout_ms, limits.keepalive_timeout_ms) / 4)));
  function sweep(): void {
    if (leanConns.size === 0) {
      clearInterval(sweeper);
      sweeper = undefined;
      return;
    }
    const now = Date.now();
    for (const c of leanConns) {
      if (c.busy) continue;
      if (!c.served && limits.header_timeout_ms > 0 && now - c.at >= limits.header_timeout_ms) {
        stats.badRequests++;
        leanConns.delete(c);
        c.socket.end(TIMEOUT_RESPONSE);
      } else if (c.served && limits.keepalive_timeout_ms > 0 && now - c.at >= limits.keepalive_timeout_ms) {
        leanConns.delete(c);
        c.socket.destroy();
      }
    }
  }

  /**
   * Answers a lean request; false (nothing done, nothing counted) when it needs the general path:
   * an instance answered by the upstream backend.
   */
  function leanRequest(conn: LeanConn, lreq: LeanRequest, now: number): boolean {
    const { ident } = conn;
    const bound = ident.key !== undefined ? registry.byMark(ident.mark) : undefined;
    if (bound !== undefined && bound.key === ident.key && proxy.takes(bound.instance)) return false;
    stats.requests++;
    const sink = leanSink(conn, lreq);
    if (!bound || bound.key !== ident.key) {
      stats.forbidden++;
      sink.send(text(403, 'Forbidden\n'), true);
      return true;
    }
    const dreq: DialectRequest = { method: lreq.method, path: lreq.path, query: lreq.query, headers: lreq.headers, now };
    const dialect = admit(sink, dreq, bound);
    if (dialect !== undefined) {
      // Answers of rate-limited dialects are never replayed by the native loop (it counts nothing).
      conn.replay =
        native !== undefined && (limits.rate_per_s?.[dialect.name] ?? 0) === 0
          ? {
              tokensOptional: ec2OptionsFor(opts.config, bound.instance).tokens === 'optional',
              warm: (flags, headers) => warm(ident, dialect, lreq.path, flags, headers),
            }
          : undefined;
      answer(sink, dreq, dialect, ident);
      conn.replay = undefined;
    }
    // Held (a long poll): what arrives meanwhile waits in `queued` (leanSink's send hands it on).
    if (!sink.finished()) conn.busy = true;
    return true;
  }

  /** Per mark, the roots already pre-rendered (forgotten when the mark's instance changes). */
  const warmed = new Map<number, Set<string>>();
  const WARM_MAX = 512;
  const WARM_MARKS = 4096;
  /** A target whose raw form is its path: plain printable ASCII, nothing to decode, no query. */
  const PLAIN_TARGET = /^\/[\x21-\x7e]*$/;

  /**
   * Renders, once per (mark, root), every target of the tree the client asked into (the dialect's
   * `targets`) and puts the fixed answers into the native loop's cache: a crawl (cloud-init's, an
   * SDK's) then runs there after its first request. Rendered as requests with the asking request's
   * headers, so each answer is what that request would get.
   */
  function warm(ident: ConnIdentity, dialect: DialectEntry, path: string, flags: number, headers: Readonly<Record<string, string>>): void {
    if (native === undefined || dialect.crawlRoot === undefined || dialect.targets === undefined) return;
    const root = dialect.crawlRoot(path);
    let roots = warmed.get(ident.mark);
    if (root === undefined || roots?.has(root)) return;
    const b = registry.byMark(ident.mark);
    if (!b || b.key !== ident.key) return;
    if (roots === undefined) {
      warmed.set(ident.mark, (roots = new Set()));
      // About as many marks as the loop's cache holds trees of (it forgets the oldest when full):
      // past that, the oldest may be warmed again.
      if (warmed.size > WARM_MARKS) warmed.delete(warmed.keys().next().value as number);
    }
    roots.add(root);
    const ctx = ctxFor(b);
    const now = Date.now();
    for (const target of dialect.targets(root, ctx, WARM_MAX)) {
      if (!PLAIN_TARGET.test(target) || target.includes('%') || dialectFor(target) !== dialect) continue;
      let out: DialectResponse;
      try {
        out = dialect.handle({ method: 'GET', path: target, query: '', headers, now }, ctx);
      } catch {
        continue;
      }
      if (!replayable(out) || Object.values(out.headers).some(unsafeHeaderValue)) continue;
      if (!putAnswer(ident.mark, flags, target, out)) return;
    }
  }

  /** Puts `out` into the native loop's cache as the answer to `GET target` with `flags` on `mark`. */
  function putAnswer(mark: number, flags: number, target: string, out: DialectResponse): boolean {
    const bytes = Buffer.from(out.body, 'utf8');
    return native?.put(mark, flags, target, leanPrefix(out.status, out.headers, bytes.length), bytes) ?? false;
  }

  /**
   * Instances registered or changed at run time are about to boot (or to be read again): their
   * dialects' `prewarm` trees are rendered into the loop's cache in the background, a few
   * instances per turn of the event loop, so the guest's first requests are answered there too.
   * A bulk change (a reload of many instances) is left to the first request of each guest. So is
   * start-up, unless the host has at most PREWARM_AT_START instances: a hypervisor that boots
   * with its daemon has a boot storm right after start (≈ 24 KB per instance pre-rendered).
   */
  const PREWARM_MAX_PER_CHANGE = 256;
  const PREWARM_AT_START = 1024;
  const PREWARM_HEADERS: Readonly<Record<string, string>> = { host: '169.254.169.254' };
  const prewarmQueue: string[] = [];
  let prewarming = false;
  function prewarm(ids: readonly string[], max = PREWARM_MAX_PER_CHANGE): void {
    if (native === undefined || ids.length === 0 || ids.length > max) return;
    prewarmQueue.push(...ids);
    if (prewarming) return;
    prewarming = true;
    const step = (): void => {
      for (let n = 0; n < 8 && prewarmQueue.length > 0; n++) {
        const inst = registry.get(prewarmQueue.shift() as string);
        if (inst === undefined || proxy.takes(inst)) continue;
        for (const p of inst.ports) {
          const b = registry.byTriple(p.interface, p.mac, p.ipv4, p.network);
          if (b === undefined) continue;
          const ident: ConnIdentity = { fd: -1, mark: b.mark, key: b.key };
          for (const d of DIALECTS) {
            if ((limits.rate_per_s?.[d.name] ?? 0) !== 0) continue;
            for (const path of d.prewarm ?? []) warm(ident, d, path, 0, PREWARM_HEADERS);
          }
        }
      }
      if (prewarmQueue.length > 0) setImmediate(step);
      else prewarming = false;
    };
    setImmediate(step);
  }

  /** Bytes that came in while a response was pending go, in order, to the general path. */
  function flushQueued(conn: LeanConn): void {
    const q = conn.queued;
    if (q === undefined || conn.socket.destroyed) return;
    conn.queued = undefined;
    conn.toGeneral(q.length === 1 ? (q[0] as Buffer) : Buffer.concat(q));
  }

  function leanSink(conn: LeanConn, lreq: LeanRequest): Sink {
    const { socket, ident } = conn;
    let done = false;
    return {
      method: lreq.method,
      finished: () => done || socket.destroyed,
      onClose: (cb) => void socket.once('close', cb),
      send(out: DialectResponse, forced: boolean): void {
        if (done || socket.destroyed) return;
        done = true;
        const close = forced || lreq.close;
        const body = out.body;
        let head: string;
        try {
          for (const name in out.headers) if (unsafeHeaderValue(out.headers[name] ?? '')) throw new Error(`header ${name}`);
          head = leanHead({
            status: out.status,
            headers: out.headers,
            contentLength: Buffer.byteLength(body, 'utf8'),
            date: dateHeader.at(Date.now()),
            close,
            forced,
            keepAliveS,
          });
        } catch (err) {
          log.error({ err: String(err) }, 'cannot send a response');
          socket.destroy();
          return;
        }
        const payload = lreq.method === 'HEAD' ? head : head + body;
        // A fixed answer to a plain GET goes into the native loop's cache: the next such request
        // on this mark is answered there. The connection itself follows when idle (adopt, below).
        let cached = false;
        const replay = conn.replay;
        if (native && replay !== undefined && !forced && replayable(out)) {
          // With a token, only an answer the token was checked for (grant) and that a token-less
          // request would get too (tokens optional) goes in, under the token-less key.
          const flags = lreq.headers[TOKEN] === undefined || (out.grant !== undefined && replay.tokensOptional) ? fastPathFlags(lreq) : -1;
          if (flags >= 0) {
            cached = putAnswer(ident.mark, flags, lreq.target, out);
            // Before the answer leaves: the client's next requests find the rest of its tree ready
            // (rendered as token-less requests: the same answers, as above).
            if (cached) replay.warm(flags, withoutToken(lreq.headers));
          }
        }
        conn.served = true;
        conn.at = Date.now();
        const restoreTtl = hopLimit(out, ident.fd, socket);
        if (close || conn.ended) {
          leanConns.delete(conn);
          socket.write(payload, restoreTtl === undefined ? undefined : () => restoreTtl?.());
          // Written out at once (the usual case): close now, the kernel sends the FIN after the data
          // (nothing unread is left: the request was all there was). Otherwise end after the write.
          if (socket.writableLength === 0 && restoreTtl === undefined) socket.destroy();
          else socket.end();
          return;
        }
        if (restoreTtl !== undefined) {
          conn.busy = true;
          socket.write(payload, () => {
            restoreTtl?.();
            conn.busy = false;
            if (conn.ended && !socket.writableEnded) socket.end();
            else flushQueued(conn);
          });
        } else {
          conn.busy = false;
          socket.write(payload);
          // Written out, nothing else pending: the native loop takes the connection over (a dup of
          // its fd; ours is closed, the connection lives on there).
          if (cached && conn.queued === undefined && socket.writableLength === 0 && native?.adopt(ident.fd, ident.mark) === true) {
            leanConns.delete(conn);
            socket.destroy();
            return;
          }
          flushQueued(conn);
        }
      },
    };
  }

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
    const sink = httpSink(req, res, ident?.fd);
    const bound: Bound | undefined = ident?.key !== undefined ? registry.byMark(ident.mark) : undefined;
    if (!ident || !bound || bound.key !== ident.key) {
      stats.forbidden++;
      sink.send(text(403, 'Forbidden\n'), true);
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (!Number.isFinite(declared) || declared > MAX_BODY) {
      stats.badRequests++;
      sink.send(text(413, 'Payload Too Large\n'), true);
      return;
    }
    let dreq: DialectRequest;
    try {
      dreq = toDialectRequest(req);
    } catch {
      stats.badRequests++;
      sink.send(text(400, 'Bad Request\n'), false);
      return;
    }
    // ---- upstream backend: proxied instead of rendered (proxy.ts); the dialect only names the rate limit ----
    if (proxy.takes(bound.instance)) {
      const dialect = dialectFor(dreq.path);
      if (dialect && !limiter.take(dialect.name, bound.instance.id, limits.rate_per_s?.[dialect.name] ?? 0, dreq.now)) {
        stats.rateLimited++;
        sink.send(refusal(dialect, 429), false);
        return;
      }
      const stillBound = (): boolean => registry.byMark(ident.mark)?.key === ident.key;
      proxy.handle(req, res, bound, stillBound, MAX_BODY);
      return;
    }
    // ---- end upstream ----
    const dialect = admit(sink, dreq, bound);
    if (dialect === undefined) return;
    const hasBody = req.headers['transfer-encoding'] !== undefined || declared > 0;
    if (!hasBody) {
      answer(sink, dreq, dialect, ident);
      return;
    }
    readBody(req, MAX_BODY).then(
      (body) => {
        if (body === undefined) {
          stats.badRequests++;
          sink.send(text(413, 'Payload Too Large\n'), true);
        } else answer(sink, { ...dreq, body }, dialect, ident);
      },
      () => req.socket.destroy(),
    );
  });

  /** The dialect that answers `dreq` for `bound`, after the rate limit; undefined when refused (404, 429: sent). */
  function admit(sink: Sink, dreq: DialectRequest, bound: Bound): DialectEntry | undefined {
    const dialect = dialectFor(dreq.path);
    if (!dialect) {
      sink.send(text(404, 'Not Found\n'), false);
      return undefined;
    }
    if (!limiter.take(dialect.name, bound.instance.id, limits.rate_per_s?.[dialect.name] ?? 0, dreq.now)) {
      stats.rateLimited++;
      sink.send(refusal(dialect, 429), false);
      return undefined;
    }
    return dialect;
  }

  function httpSink(req: http.IncomingMessage, res: http.ServerResponse, fd: number | undefined): Sink {
    return {
      method: req.method ?? 'GET',
      finished: () => res.writableEnded || req.socket.destroyed,
      onClose: (cb) => void res.once('close', cb),
      send: (out, close) => send(req, res, out, fd, close),
    };
  }

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
      // A token minted or proved here: the loop accepts it on this binding from now on.
      if (out.grant !== undefined) native?.allowToken(ident.mark, out.grant.token, out.grant.expiresAt);
      return out;
    } catch (err) {
      log.error({ err: String(err), path: dreq.path, instance: b.instance.id }, 'dialect failed');
      return text(500, 'Internal Server Error\n');
    }
  }

  function answer(sink: Sink, dreq: DialectRequest, dialect: DialectEntry, ident: ConnIdentity): void {
    const out = render(dreq, dialect, ident);
    if (out.wait === undefined) {
      sink.send(out, false);
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
          if (!sink.finished()) sink.send(r, false);
        },
      },
      out.wait.timeoutMs,
    );
    if (!held.ok) {
      stats.heldRefused++;
      sink.send(refusal(dialect, 503), false);
      return;
    }
    sink.onClose(held.cancel);
  }

  /**
   * Sets the response's hop limit (IP TTL) on the socket when it asks for one; returns what puts
   * the previous value back once the response is written: this response alone leaves with the
   * hop limit, later ones on the connection do not.
   */
  function hopLimit(out: DialectResponse, fd: number | undefined, socket: Socket): (() => void) | undefined {
    if (out.ipTtl === undefined || fd === undefined || fd < 0) return undefined;
    try {
      const before = sockopts.getIpTtl(fd);
      sockopts.setIpTtl(fd, out.ipTtl);
      return () => {
        try {
          if (!socket.destroyed) sockopts.setIpTtl(fd, before);
        } catch {
          /* the connection is gone */
        }
      };
    } catch (err) {
      log.warn({ err: String(err) }, 'cannot set IP_TTL');
      return undefined;
    }
  }

  function send(req: http.IncomingMessage, res: http.ServerResponse, out: DialectResponse, fd: number | undefined, close: boolean): void {
    const restoreTtl = hopLimit(out, fd, req.socket);
    if (restoreTtl !== undefined) res.once('finish', restoreTtl);
    const body = Buffer.from(out.body, 'utf8');
    const headers: Record<string, string | number> = { ...out.headers, 'Content-Length': body.length };
    if (close) headers.Connection = 'close';
    res.writeHead(out.status, headers);
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  function closeLean(all: boolean): void {
    for (const c of [...leanConns]) {
      if (all || !c.busy) {
        leanConns.delete(c);
        c.socket.destroy();
      }
    }
  }

  if (registry.size <= PREWARM_AT_START)
    prewarm(
      registry.list().map((i) => i.id),
      PREWARM_AT_START,
    );

  return {
    server,
    stats,
    longPolls,
    closeIdle: () => {
      native?.stop();
      server.closeIdleConnections();
      closeLean(false);
    },
    closeAll: () => {
      native?.stop();
      server.closeAllConnections();
      closeLean(true);
    },
    leanConnections: () => leanConns.size,
    native,
    dispose: () => native?.close(),
  };
}

/** An answer the native loop may replay: fixed (the dialect's word), and nothing to do but send it. */
function replayable(out: DialectResponse): boolean {
  return out.fixed === true && out.ipTtl === undefined && out.wait === undefined && out.store === undefined;
}

function withoutToken(headers: Readonly<Record<string, string>>): Record<string, string> {
  const { [TOKEN]: _token, ...rest } = headers;
  void _token;
  return rest;
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
