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

/** The headers a replayable request may carry; anything else goes to JavaScript. */
const ALLOWED = new Set(['host', 'user-agent', 'accept', 'accept-encoding', 'connection', 'metadata-flavor', 'metadata']);

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
    }
  }
  return flags;
}

/** The addon's FastPath (see native-bindings/index.d.ts), as the pipeline uses it. */
export interface NativeLoop {
  addListener(fd: number): void;
  removeListener(fd: number): void;
  put(mark: number, flags: number, target: string, head: string, body: Buffer): boolean;
  change(unbound: readonly number[], drop?: readonly number[]): void;
  adopt(fd: number, mark: number): boolean;
  stop(): void;
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
}

/** What the addon's constructor takes (native-bindings/index.d.ts FastPathOptions). */
export interface NativeLoopOptions {
  handoff(fd: number, mark: number, state: number, out: Buffer | undefined, rest: Buffer | undefined): void;
  maxHeaderBytes: number;
  headerTimeoutMs: number;
  keepAliveTimeoutMs: number;
  keepAliveSuffix: string;
  closeSuffix: string;
  timeoutResponse: string;
  cacheBytes: number;
}

export type NativeLoopFactory = (opts: NativeLoopOptions) => NativeLoop;

/** Handoff state bits. */
export const HANDOFF_STALE = 1;
export const HANDOFF_CLOSE_AFTER = 2;

/** Bytes of answers the loop's cache may hold. */
export const CACHE_BYTES = 64 * 1024 * 1024;
