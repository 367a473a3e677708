/**
 * The JavaScript side of the native serving loop (native-bindings/src/fastpath.cc).
 *
 * The loop owns the listeners and answers, from its cache, every complete plain `GET` whose
 * (mark, header flags, target) JavaScript has answered before with a `fixed` answer
 * (DialectResponse.fixed). Everything else it hands over with the bytes it read; the pipeline
 * answers, and puts fixed answers into the cache. Requests must look the same to both sides:
 * `fastPathFlags` here and `ParseRequest` there accept the same headers (tests compare them).
 */
import type { LeanRequest } from './lean.js';

/** `Metadata-Flavor: Google` (GCE). */
export const FLAVOR_GOOGLE = 1;
/** `Metadata: true` (Azure), any case. */
export const METADATA_TRUE = 2;

/**
 * EC2's session token header. The loop answers a request carrying one only when JavaScript told it
 * the token is valid for the connection's binding (allowToken), and then as the request without it.
 */
export const TOKEN = 'x-aws-ec2-metadata-token';

/** The headers a replayable request may carry; anything else goes to JavaScript. */
const ALLOWED = new Set(['host', 'user-agent', 'accept', 'accept-encoding', 'connection', 'metadata-flavor', 'metadata', TOKEN]);

/**
 * The header flags of a lean request as the native loop computes them, or -1 when the loop would
 * not answer it (a method other than GET, a header outside ALLOWED, an unexpected value).
 */
export function fastPathFlags(req: LeanRequest): number {
  if (req.method !== 'GET') return -1;
  let flags = 0;
  for (const name in req.headers) {
    if (!ALLOWED.has(name)) return -1;
    const v = req.headers[name] ?? '';
    if (name === 'metadata-flavor') {
      if (v !== 'Google') return -1;
      flags |= FLAVOR_GOOGLE;
    } else if (name === 'metadata') {
      if (v.toLowerCase() !== 'true') return -1;
      flags |= METADATA_TRUE;
    } else if (name === TOKEN && v === '') return -1;
  }
  return flags;
}

/** The addon's FastPath (native-bindings/src/fastpath.cc): one thread, one epoll. */
export interface NativeLoop {
  /** The loop accepts on `fd` from now on (and closes it on removeListener/stop/close). */
  addListener(fd: number): void;
  removeListener(fd: number): void;
  /**
   * The answer to `GET target` with header flags `flags` on a connection marked `mark`: `head` is
   * the status line and headers up to Content-Length (the loop adds Date and Connection). Over
   * the cache budget, the loop forgets the marks cached longest ago. False when the answer alone
   * is over an eighth of the budget (or the loop is closed).
   */
  put(mark: number, flags: number, target: string, head: string, body: Buffer): boolean;
  /**
   * Forgets the answers of `unbound` and `drop` marks (every answer when `drop` is absent);
   * connections of `unbound` marks go to JavaScript (stale) on their next request.
   */
  change(unbound: readonly number[], drop?: readonly number[]): void;
  /** `token` is valid for the binding of `mark` until `expiresAt` (ms since the epoch); forgotten with the mark's answers. */
  allowToken(mark: number, token: string, expiresAt: number): void;
  /** Takes a duplicate of an idle keep-alive connection's fd (the caller closes its own); false if not taken. */
  adopt(fd: number, mark: number): boolean;
  /** Stops accepting; idle connections closed, those with bytes waiting handed over. */
  stop(): void;
  /** Ends the thread; every later call does nothing. */
  close(): void;
  stats(): NativeLoopStats;
}

export interface NativeLoopStats {
  /** Connections accepted by the loop. */
  accepted: number;
  /** Requests it answered from its cache. */
  answered: number;
  /** Connections it handed to JavaScript. */
  handedOff: number;
  /** Idle keep-alive connections JavaScript gave back. */
  adopted: number;
  /** Connections closed with 408 (nothing complete within the header timeout). */
  timedOut: number;
  /** Connections it holds now. */
  open: number;
  /** Cached answers, and their bytes. */
  entries: number;
  cacheBytes: number;
  /** Marks whose answers were forgotten to make room (the oldest first). */
  evicted: number;
  /** Times accepting paused: 1,024 connections handed over and not yet taken by JavaScript, or out of descriptors. */
  acceptPauses: number;
}

/** What the addon's constructor takes. */
export interface NativeLoopOptions {
  /**
   * Called on the JavaScript thread when the loop gives a connection up: JavaScript owns `fd`
   * from then on. `state`: HANDOFF_STALE (its mark was unbound since it was accepted),
   * HANDOFF_CLOSE_AFTER (close once `out` is written). `out`: bytes of an answer still to write,
   * before anything else; `rest`: bytes already read, to parse first.
   */
  handoff(fd: number, mark: number, state: number, out: Buffer | undefined, rest: Buffer | undefined): void;
  maxHeaderBytes: number;
  /** Nothing answered within this time of accepting: `timeoutResponse`, then closed (0: never). */
  headerTimeoutMs: number;
  /** Idle this long after an answer: closed (0: never). */
  keepAliveTimeoutMs: number;
  /** Appended after the Date header when the connection stays open / closes; each ends with the blank line. */
  keepAliveSuffix: string;
  closeSuffix: string;
  timeoutResponse: string;
  /** Bytes of answers the cache may hold. */
  cacheBytes: number;
}

export type NativeLoopFactory = (opts: NativeLoopOptions) => NativeLoop;

/** Handoff state bits. */
export const HANDOFF_STALE = 1;
export const HANDOFF_CLOSE_AFTER = 2;

/** Bytes of answers the loop's cache may hold. */
export const CACHE_BYTES = 64 * 1024 * 1024;
