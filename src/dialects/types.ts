/**
 * What a dialect sees and returns. A dialect is a pure function of (instance, request):
 * it knows nothing of sockets, kernels or where the instance came from.
 */
import type { KeyObject } from 'node:crypto';
import type { Ec2Options, Instance, PortSpec } from '../model/instance.js';

export interface DialectRequest {
  /** Upper-case HTTP method. */
  readonly method: string;
  /** The path, percent-decoded, without the query string; always starts with '/'. */
  readonly path: string;
  /** The raw query string without '?', or ''. */
  readonly query: string;
  /** Header names lower-case; repeated headers joined with ', '. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Milliseconds since the epoch, the time the request is answered at. */
  readonly now: number;
  /** The request body (UTF-8), when the client sent one (bounded by the pipeline). */
  readonly body?: string;
}

/** The daemon's key for signed documents (GCE identity tokens): RS256, published on the admin API. */
export interface SigningKey {
  /** Key id (JWK thumbprint), the JWT header's `kid`. */
  readonly kid: string;
  readonly privateKey: KeyObject;
}

export interface DialectContext {
  readonly instance: Instance;
  /** The NIC the request arrived on (one of instance.ports). */
  readonly port: PortSpec;
  readonly ec2: Ec2Options;
  /** Secret for the dialect's session tokens (IMDSv2); the same for the daemon's lifetime. */
  readonly tokenKey: Buffer;
  /** When this daemon first registered the instance (ms since the epoch): EC2's pendingTime. */
  readonly since: number;
  /** The daemon's signing key; absent when it has none (signed documents are then unavailable). */
  readonly signingKey?: SigningKey;
  /** Values this instance's guest stored earlier through a dialect (`DialectResponse.store`). */
  readonly guestData?: Readonly<Record<string, string>>;
}

/**
 * Hold this response until the instance's data changes (a long poll): the pipeline re-renders the
 * same request whenever the registry reports a change for the instance, answers as soon as a
 * re-render has another `etag` (or no `wait`), and answers with a fresh render after `timeoutMs`.
 */
export interface WaitSpec {
  /** The version the client already has: while a re-render carries the same etag, keep waiting. */
  readonly etag: string;
  readonly timeoutMs: number;
}

export interface DialectResponse {
  readonly status: number;
  /** Content-Type and the dialect's own headers; Content-Length is the pipeline's job. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** When set, the IP TTL (hop limit) of the packets carrying this response. */
  readonly ipTtl?: number;
  /** When set, the pipeline may hold the request (see WaitSpec); `status`/`body` are the current answer. */
  readonly wait?: WaitSpec;
  /**
   * The answer depends on nothing but the instance (and when it was registered), the port, the
   * method, path and query, and the presence of the headers the dialect requires: the pipeline
   * may replay it, byte for byte, until the instance changes (the native serving loop's cache).
   * Never set on answers that depend on the clock, a token, guest data or a rate limit.
   */
  readonly fixed?: boolean;
  /**
   * The request minted, or proved it holds, this session token for the instance, valid until
   * `expiresAt` (ms since the epoch): the pipeline may accept it on the same binding without
   * asking the dialect again (the native loop's token table).
   */
  readonly grant?: { readonly token: string; readonly expiresAt: number };
  /** When set, the pipeline stores this for the instance; later requests see it in `guestData`. */
  readonly store?: { readonly key: string; readonly value: string };
}
