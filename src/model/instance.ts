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

/** An OAuth2 bearer token handed to the guest as is (GCE service-account token, Azure managed identity). */
export interface BearerToken {
  readonly access_token: string;
  /** ISO 8601, UTC: the guest is told the seconds left until then. */
  readonly expiration: string;
}

/** What the GCE dialect needs beyond the common fields; every field has a derived default. */
export interface GceSpec {
  /** Numeric instance id (decimal digits); default: 19 digits derived from `id`. */
  readonly instance_id?: string;
  /** Numeric project id; default: 12 digits derived from `project`. */
  readonly project_number?: string;
  /** Default service account's email; default `<project_number>-compute@developer.gserviceaccount.com`. */
  readonly service_account?: string;
  /** OAuth scopes of the default service account; default cloud-platform. */
  readonly scopes?: readonly string[];
  /** `service-accounts/default/token`; absent: 404. */
  readonly token?: BearerToken;
  /** Custom instance attributes (beside ssh-keys and user-data, which they override). */
  readonly attributes?: Readonly<Record<string, string>>;
  /** `project/attributes/`. */
  readonly project_attributes?: Readonly<Record<string, string>>;
  /** User the `ssh-keys` attribute names for each of `ssh_keys`; default `cloudinit` (the default user). */
  readonly ssh_user?: string;
}

/** What the OpenStack dialect needs beyond the common fields. */
export interface OpenStackSpec {
  /** The instance UUID; default: derived from `id`. */
  readonly uuid?: string;
  /** `meta` of meta_data.json; default: `tags`. */
  readonly meta?: Readonly<Record<string, string>>;
  /** vendor_data.json; default `{}`. */
  readonly vendor_data?: Readonly<Record<string, unknown>>;
  /** vendor_data2.json; default `{}`. */
  readonly vendor_data2?: Readonly<Record<string, unknown>>;
}

/** What the Azure dialect needs beyond the common fields. */
export interface AzureSpec {
  /** compute.vmId; default: a UUID derived from `id`. */
  readonly vm_id?: string;
  /** compute.subscriptionId; default: a UUID derived from `project`. */
  readonly subscription_id?: string;
  /** compute.resourceGroupName; default: `project`. */
  readonly resource_group?: string;
  /** compute.osProfile.adminUsername; default `azureuser`. */
  readonly admin_username?: string;
  /** The managed identity's client id; default: a UUID derived from `id`. */
  readonly client_id?: string;
  /** `identity/oauth2/token`; absent: 400 "Identity not found". */
  readonly token?: BearerToken;
}

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
  readonly gce?: GceSpec;
  readonly openstack?: OpenStackSpec;
  readonly azure?: AzureSpec;
}

export interface ListenSpec {
  readonly ipv4: string;
  /** The IPv6 metadata address (EC2's fd00:ec2::254 by default); false: no IPv6. */
  readonly ipv6: string | false;
  readonly port: number;
  /** Answer repeated plain GETs from the native serving loop (native-bindings/src/fastpath.cc); false: JavaScript answers everything. */
  readonly fast_path: boolean;
}

export interface UpstreamBackendSpec {
  readonly url: string;
  readonly shared_secret: string;
  /** Proxied answers are cached this long, per instance (0: not cached, still coalesced). */
  readonly cache_ttl_s: number;
  /** Connect and read timeout of one backend request, ms. */
  readonly timeout_ms: number;
  /** Concurrent connections to the backend, at most. */
  readonly max_connections: number;
  /** An expired cached answer is still served this long when the backend fails. */
  readonly stale_if_error_s: number;
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
  /** Long polls (GCE wait_for_change) held at once per instance; more get 503. */
  readonly held_per_instance: number;
  /** Requests per second per instance, by dialect; more get 429; 0 = unlimited. */
  readonly rate_per_s: Readonly<Record<DialectName, number>>;
}

export type DialectName = 'ec2' | 'gce' | 'openstack' | 'azure';

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
