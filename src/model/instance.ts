/**
 * The instance model: the one description of a guest that every dialect renders from.
 * Config files, the admin API and the etcd registry all land here, through `config/validate`.
 * This module imports nothing of ours.
 */

/** One virtual NIC: the host-side interface its frames arrive on, and what the guest must send from. */
export interface PortSpec {
  /** Host-side interface name (TAP device, veth end, or bridge port). */
  readonly interface: string;
  /** Lower-case, colon-separated: 52:54:00:0a:00:0b */
  readonly mac: string;
  /** Dotted quad. */
  readonly ipv4: string;
  readonly ipv6?: string;
  readonly bridge?: string;
  readonly network?: string;
}

/** Credentials the guest may fetch (EC2 iam/security-credentials/<name>). */
export interface RoleSpec {
  readonly name: string;
  readonly access_key_id: string;
  readonly secret_access_key: string;
  readonly token: string;
  /** ISO 8601, UTC. */
  readonly expiration: string;
}

export type TokenMode = 'optional' | 'required';

/** EC2 instance metadata options (as AWS's HttpTokens / HttpPutResponseHopLimit). */
export interface Ec2Options {
  readonly tokens: TokenMode;
  /** IP TTL of the token PUT response, 1..64. */
  readonly hop_limit: number;
}

export type BackendKind = 'embedded' | 'upstream';

export interface Instance {
  readonly id: string;
  readonly hostname: string;
  readonly ports: readonly PortSpec[];
  readonly project: string;
  readonly region: string;
  readonly zone: string;
  readonly image: string;
  readonly type: string;
  readonly ssh_keys: readonly string[];
  /** Absent: the guest has no user-data (EC2 answers 404). */
  readonly user_data?: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly role?: RoleSpec;
  readonly backend?: BackendKind;
  /** Per-instance override of the top-level `ec2` options. */
  readonly ec2?: Partial<Ec2Options>;
}

export interface ListenSpec {
  readonly ipv4: string;
  readonly port: number;
}

export interface UpstreamBackendSpec {
  readonly url: string;
  readonly shared_secret: string;
  readonly cache_ttl_s: number;
}

export interface EtcdRegistrySpec {
  readonly endpoints: readonly string[];
  readonly prefix: string;
}

export interface Limits {
  /** Largest request head (request line + headers) accepted, bytes; larger gets 431. */
  readonly max_header_bytes: number;
  /** Time a client has to send its request head, ms. */
  readonly header_timeout_ms: number;
  /** Idle keep-alive connections are closed after this, ms. */
  readonly keepalive_timeout_ms: number;
  /** On SIGTERM, in-flight requests get this long to finish, ms. */
  readonly shutdown_grace_ms: number;
}

export interface Config {
  readonly listen: ListenSpec;
  readonly admin: { readonly socket: string };
  /** This hypervisor's name. */
  readonly host: string;
  readonly state_dir: string;
  readonly ec2: Ec2Options;
  readonly limits: Limits;
  readonly default_backend: BackendKind;
  readonly backends: { readonly upstream?: UpstreamBackendSpec };
  readonly registry: { readonly etcd?: EtcdRegistrySpec };
  readonly instances: readonly Instance[];
}

/** The effective EC2 options for one instance. */
export function ec2OptionsFor(config: Pick<Config, 'ec2'>, instance: Instance): Ec2Options {
  return {
    tokens: instance.ec2?.tokens ?? config.ec2.tokens,
    hop_limit: instance.ec2?.hop_limit ?? config.ec2.hop_limit,
  };
}
