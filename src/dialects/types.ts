/**
 * What a dialect sees and returns. A dialect is a pure function of (instance, request):
 * it knows nothing of sockets, kernels or where the instance came from.
 */
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
}

export interface DialectResponse {
  readonly status: number;
  /** Content-Type and the dialect's own headers; Content-Length is the pipeline's job. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** When set, the IP TTL (hop limit) of the packets carrying this response. */
  readonly ipTtl?: number;
}
