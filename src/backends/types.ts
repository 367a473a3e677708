/**
 * The backend contract: where an answer comes from when it is not rendered by a dialect from the
 * instance model. The pipeline identifies the guest, then hands the request over with the
 * instance; a backend never knows a dialect's paths (it forwards whatever the guest asked).
 *
 * The embedded backend is the dialects themselves (the pipeline's router renders from the model),
 * so it has no module here.
 */
import type { Instance } from '../model/instance.js';

export interface BackendRequest {
  /** The instance the kernel identified; answers are per instance. */
  readonly instance: Instance;
  /** The guest's address (the NIC the request arrived on). */
  readonly guestIp: string;
  /** Upper-case. */
  readonly method: string;
  /** As the guest sent it (still percent-encoded), starting with '/'; no query. */
  readonly rawPath: string;
  /** Without '?', or ''. */
  readonly query: string;
  /** Lower-case names; repeated headers joined with ', '. */
  readonly headers: Readonly<Record<string, string | undefined>>;
  readonly body?: Buffer;
}

export interface BackendResponse {
  readonly status: number;
  /** Lower-case names; what the guest gets besides Content-Length. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export interface Backend {
  handle(req: BackendRequest): Promise<BackendResponse>;
  /** Drops whatever is kept for the instance (it changed or went away). */
  forget(instanceId: string): void;
  /** Counters for /v1/stats. */
  stats(): Record<string, unknown>;
  close(): Promise<void>;
}
