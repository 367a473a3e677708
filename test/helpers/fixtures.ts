// Sample data for the unit tests: the instances the dialects render, the context and request a
// dialect is called with, the raw config objects the validator reads. A test that needs other data
// passes overrides; each builder returns a new object (the EC2 tree is cached per instance object).
import { formatProblems } from '../../src/config/load.js';
import { validateConfig, type Problem } from '../../src/config/validate.js';
import type { DialectContext, DialectRequest } from '../../src/dialects/types.js';
import type { Instance, PortSpec } from '../../src/model/instance.js';

/** The time requests are answered at: 2024-05-06T07:08:09.500Z. */
export const NOW = Date.UTC(2024, 4, 6, 7, 8, 9, 500);
/** When the sample instances were first registered: 2024-01-02T03:04:05Z. */
export const SINCE = Date.UTC(2024, 0, 2, 3, 4, 5);
/** A session-token key (EC2 IMDSv2). */
export const TOKEN_KEY = Buffer.from('0123456789abcdef0123456789abcdef');

/** The sample instance's NICs: a routed IPv4-only one, then one with IPv6 too. */
export const PORTS: readonly [PortSpec, PortSpec] = [
  { interface: 'lgtap1', mac: '52:54:00:0a:00:0b', ipv4: '10.10.0.11' },
  { interface: 'lgtap2', mac: '52:54:00:0a:00:0c', ipv4: '10.20.0.11', ipv6: 'fd00:20::11' },
];

/** A fully described instance (web-1 in proj-alpha, two NICs, two SSH keys, user-data, tags). */
export function sampleInstance(over: Partial<Instance> = {}): Instance {
  return {
    id: 'i-0a1b2c3d4e5f60718',
    hostname: 'web-1',
    ports: PORTS,
    project: 'proj-alpha',
    region: 'region-1',
    zone: 'region-1a',
    image: 'img-debian-12',
    type: 'm1.small',
    ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA alice@laptop', 'ssh-rsa AAAAB3NzaC1yc2E'],
    user_data: '#cloud-config\nhostname: web-1\n',
    tags: { env: 'prod', team: 'web' },
    ...over,
  };
}

/** An instance with only what is required: one NIC, no keys, no user-data, no tags. */
export function bareInstance(over: Partial<Instance> = {}): Instance {
  return {
    id: 'i-bare',
    hostname: 'bare',
    ports: [{ interface: 'lgtap9', mac: '52:54:00:00:00:09', ipv4: '10.9.0.9' }],
    project: 'p',
    region: 'r',
    zone: 'r-a',
    image: 'img',
    type: 't',
    ssh_keys: [],
    tags: {},
    ...over,
  };
}

export type ContextOverrides = Partial<Omit<DialectContext, 'instance' | 'port'>> & {
  /** The NIC the request arrives on (default 0). */
  readonly portIndex?: number;
};

/** What a dialect is called with for `instance`: optional EC2 tokens, hop limit 1, a zero key, since 0. */
export function dialectContext(instance: Instance, over: ContextOverrides = {}): DialectContext {
  const { portIndex = 0, ...rest } = over;
  const port = instance.ports[portIndex];
  if (port === undefined) throw new Error('no such port');
  return { instance, port, ec2: { tokens: 'optional', hop_limit: 1 }, tokenKey: Buffer.alloc(32), since: 0, ...rest };
}

/** A request for `path`: GET, no query, no headers, at NOW. */
export function dialectRequest(path: string, over: Partial<DialectRequest> = {}): DialectRequest {
  return { method: 'GET', path, query: '', headers: {}, now: NOW, ...over };
}

type Obj = Record<string, unknown>;

/** A port as written in a config file (the sample instance's first NIC). */
export const rawPort = (over: Obj = {}): Obj => ({ ...PORTS[0], ...over });
/** An instance as written in a config file: only the required fields. */
export const rawInstance = (over: Obj = {}): Obj => ({ id: 'i-1', hostname: 'web-1', ports: [rawPort()], ...over });

/** The machine's host name the config tests validate with. */
export const HOST = { hostname: 'hv-test' };

/** The problems `validateConfig` finds in `raw` (none: []). */
export function problemsOf(raw: unknown): Problem[] {
  const r = validateConfig(raw, HOST);
  return r.ok ? [] : r.problems;
}

/** The validated config; throws with the problems when `raw` is not valid. */
export function okConfig(raw: unknown) {
  const r = validateConfig(raw, HOST);
  if (!r.ok) throw new Error(`expected valid, got:\n${formatProblems(r.problems)}`);
  return r.config;
}
