/**
 * Configuration validation: raw data (parsed YAML/JSON, an admin API body, an etcd value) in,
 * the model out, with every problem found (field path and reason), defaults filled and
 * addresses normalized.
 */
import { hostname as machineHostname } from 'node:os';
import type { Config, Instance, PortSpec } from '../model/instance.js';
import { checkDateTime, checkGuestIPv4, checkGuestIPv6, checkHostname, checkIfname, checkMac, parseIPv4 } from './addr.js';
import {
  allGood,
  arr,
  BAD,
  compact,
  def,
  describe,
  fail,
  fields,
  fmt,
  int,
  isObject,
  join,
  object,
  oneOf,
  opt,
  orEmpty,
  q,
  record,
  refine,
  str,
  wrongType,
  type Check,
  type Problem,
} from './checks.js';

export type { Problem } from './checks.js';

export const DEFAULT_LISTEN_IPV4 = '169.254.169.254';
export const DEFAULT_LISTEN_IPV6 = 'fd00:ec2::254';

export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: Problem[] };
export type InstanceResult = { ok: true; instance: Instance } | { ok: false; problems: Problem[] };

// ---- field checkers ---------------------------------------------------------------------------

const KiB = 1024;
/** Names shown to guests and sent upstream (project, region, image...): one printable line. */
const name = str({ min: 1, max: 255, printable: true });
const ifname = fmt(checkIfname);
const absPath = (maxBytes = 4096): Check<string> => str({ min: 1, maxBytes, printable: true, pattern: /^\//, what: 'an absolute path' });
const httpUrl = fmt((s) => {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return { error: `${q(s)} is not a URL` };
  }
  return u.protocol === 'http:' || u.protocol === 'https:' ? s : { error: `${q(s)} is not an http:// or https:// URL` };
});
const tokenMode = oneOf('optional', 'required');
const backendKind = oneOf('embedded', 'upstream');

const expiration: Check<string> = (v, path, out) => {
  if (typeof v !== 'string' && !(v instanceof Date)) return wrongType(out, path, 'a string (ISO-8601 date-time)', v);
  const r = checkDateTime(v);
  return typeof r === 'string' ? r : fail(out, path, r.error);
};

const role = object({
  name: str({ pattern: /^[\w+=,.@-]{1,64}$/, what: 'a role name (1 to 64 of letters, digits and _+=,.@-)' }),
  access_key_id: str({ min: 1, max: 128, printable: true }),
  secret_access_key: str({ min: 1, max: 1024, printable: true }),
  token: str({ min: 1, maxBytes: 16 * KiB, printable: true }),
  expiration,
});

const tagKey = (k: string): string | undefined =>
  k.length < 1 || k.length > 127
    ? 'tag key must be 1 to 127 characters long'
    : /[/\u0000-\u001f\u007f]/.test(k) || k === '.' || k === '..'
      ? 'tag key must not contain "/" or control characters, nor be "." or ".." (keys are metadata path segments)'
      : undefined;

const ec2Override = refine(object({ tokens: opt(tokenMode), hop_limit: opt(int(1, 64)) }), compact);

// ---- per-dialect instance sections (all optional; the dialects derive what is left out) ------

const digits = (max: number): Check<string> =>
  str({ pattern: new RegExp(`^[1-9][0-9]{0,${max - 1}}$`), what: `a decimal number of 1 to ${max} digits (as a string), no leading zero` });
const uuid = fmt(
  (s) => s.toLowerCase(),
  str({ pattern: /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/, what: 'a UUID (8-4-4-4-12 hex digits)' }),
);
const email = str({ max: 254, pattern: /^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/, what: 'an email address' });
const bearer = object({ access_token: str({ min: 1, maxBytes: 16 * KiB, printable: true }), expiration });
/** Metadata keys (GCE attribute names): path segments, so no '/' and no control characters. */
const metaKey = (k: string): string | undefined =>
  /^[A-Za-z0-9_-]{1,128}$/.test(k) ? undefined : 'key must be 1 to 128 of A-Z a-z 0-9 _ -';
const metaMap = record(metaKey, str({ maxBytes: 64 * KiB }));
/** Any JSON object (vendor data), at most 64 KiB once serialized. */
const jsonObject: Check<Record<string, unknown>> = (v, path, out) => {
  if (!isObject(v)) return wrongType(out, path, 'an object', v);
  let text: string | undefined;
  try {
    text = JSON.stringify(v);
  } catch {
    return fail(out, path, 'must be plain JSON data');
  }
  if (text === undefined || Buffer.byteLength(text) > 64 * KiB) return fail(out, path, 'must be at most 64 KiB as JSON');
  return JSON.parse(text) as Record<string, unknown>;
};

const gceSpec = refine(
  object({
    instance_id: opt(fmt((s) => (BigInt(s) < 2n ** 64n ? s : { error: `${s} does not fit 64 bits` }), digits(20))),
    project_number: opt(digits(19)),
    service_account: opt(email),
    scopes: opt(arr(str({ min: 1, max: 1024, printable: true }))),
    token: opt(bearer),
    attributes: opt(metaMap),
    project_attributes: opt(metaMap),
    ssh_user: opt(
      str({ pattern: /^[a-z_][a-z0-9_.-]{0,31}$/, what: 'a user name (1 to 32 of a-z 0-9 _ . -, not starting with a digit, "." or "-")' }),
    ),
  }),
  compact,
);
const openstackSpec = refine(
  object({ uuid: opt(uuid), meta: opt(record(tagKey, str({ max: 255 }))), vendor_data: opt(jsonObject), vendor_data2: opt(jsonObject) }),
  compact,
);
const azureSpec = refine(
  object({
    vm_id: opt(uuid),
    subscription_id: opt(uuid),
    resource_group: opt(str({ pattern: /^[\w.()-]{1,90}$/, what: 'a resource group name (1 to 90 of letters, digits and _.()-)' })),
    admin_username: opt(
      str({ pattern: /^[a-z_][a-z0-9_.-]{0,31}$/, what: 'a user name (1 to 32 of a-z 0-9 _ . -, not starting with a digit, "." or "-")' }),
    ),
    client_id: opt(uuid),
    token: opt(bearer),
  }),
  compact,
);

/** A model object while it is built. */
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** What instances without keys or tags share (frozen: nobody writes to a validated instance). */
const NO_KEYS: readonly string[] = Object.freeze([]);
const NO_TAGS: Readonly<Record<string, string>> = Object.freeze({});

/**
 * One copy of each distinct value: a fleet's instances repeat their project, region, zone, image,
 * type, tag values, bridge and network names, often their SSH keys and user-data. Parsers hand
 * out a fresh string for every occurrence; at 100,000 instances the copies add up.
 */
type Intern = (s: string) => string;

function interner(): Intern {
  const seen = new Map<string, string>();
  return (s) => {
    const had = seen.get(s);
    if (had !== undefined) return had;
    seen.set(s, s);
    return s;
  };
}

const interned =
  (intern: Intern, c: Check<string>): Check<string> =>
  (v, path, out) => {
    const r = c(v, path, out);
    return r === BAD ? BAD : intern(r);
  };

function portCheck(listenIpv4: string, intern: Intern): Check<PortSpec> {
  const ipv4 = fmt((s) => (s === listenIpv4 ? { error: `${s} is the metadata listen address` } : checkGuestIPv4(s)));
  return refine(
    object({
      interface: ifname,
      mac: fmt(checkMac),
      ipv4,
      ipv6: opt(fmt(checkGuestIPv6)),
      bridge: opt(interned(intern, ifname)),
      network: opt(
        interned(
          intern,
          str({ pattern: /^[a-z0-9][a-z0-9-]{0,31}$/, what: 'a network name (1 to 32 of a-z, 0-9 and "-", not starting with "-")' }),
        ),
      ),
    }),
    (r): PortSpec => {
      const p: Mutable<PortSpec> = { interface: r.interface, mac: r.mac, ipv4: r.ipv4 };
      if (r.ipv6 !== undefined) p.ipv6 = r.ipv6;
      if (r.bridge !== undefined) p.bridge = r.bridge;
      if (r.network !== undefined) p.network = r.network;
      return p;
    },
  );
}

/**
 * The instance checker. Strings it keeps are interned per checker: `validateConfig` uses one for
 * the whole file, so identical values of different instances are one string.
 */
function instanceCheck(listenIpv4: string): Check<Instance> {
  const intern = interner();
  const shared = (c: Check<string>): Check<string> => interned(intern, c);
  const spec = {
    id: str({
      pattern: /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/,
      what: 'a valid id (1 to 128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit)',
    }),
    hostname: fmt(checkHostname),
    ports: arr(portCheck(listenIpv4, intern), { min: 1 }),
    project: def(shared(name), 'default'),
    region: def(shared(name), 'region-1'),
    zone: opt(shared(name)),
    image: def(shared(name), 'image-0'),
    type: def(shared(name), 'm1.small'),
    ssh_keys: opt(arr(shared(str({ min: 1, maxBytes: 16 * KiB, line: true })))),
    user_data: opt(shared(str({ maxBytes: 64 * KiB }))),
    tags: opt(record(tagKey, shared(str({ max: 255 })))),
    role: opt(role),
    backend: opt(backendKind),
    ec2: opt(ec2Override),
    gce: opt(gceSpec),
    openstack: opt(openstackSpec),
    azure: opt(azureSpec),
  };
  return refine(object(spec), (r): Instance => {
    // The fields every instance has (and user_data, which most have) in one literal, in the
    // model's order, so V8 keeps them inside the object; the rarer sections after them, in order
    // (an absent field stays absent).
    const zone = r.zone ?? intern(`${r.region}a`);
    const ssh_keys = r.ssh_keys ?? NO_KEYS;
    const tags = r.tags ?? NO_TAGS;
    const { id, hostname, ports, project, region, image, type } = r;
    const inst: Mutable<Instance> =
      r.user_data === undefined
        ? { id, hostname, ports, project, region, zone, image, type, ssh_keys, tags }
        : { id, hostname, ports, project, region, zone, image, type, ssh_keys, user_data: r.user_data, tags };
    if (r.role !== undefined) inst.role = r.role;
    if (r.backend !== undefined) inst.backend = r.backend;
    if (r.ec2 !== undefined) inst.ec2 = r.ec2;
    if (r.gce !== undefined) inst.gce = r.gce;
    if (r.openstack !== undefined) inst.openstack = r.openstack;
    if (r.azure !== undefined) inst.azure = r.azure;
    return inst;
  });
}

// ---- instances --------------------------------------------------------------------------------

/**
 * One instance, as in the configuration file. `path` prefixes problem paths (default: none).
 * A port may not use `listenIpv4` (default 169.254.169.254): pass the configured listen address.
 */
export function validateInstance(raw: unknown, path = '', opts: { listenIpv4?: string } = {}): InstanceResult {
  const problems: Problem[] = [];
  const instance = instanceCheck(opts.listenIpv4 ?? DEFAULT_LISTEN_IPV4)(raw, path, problems);
  return instance === BAD ? { ok: false, problems } : { ok: true, instance };
}

/**
 * Checks across instances: unique ids; no (interface, mac, ipv4) triple twice; no address twice
 * in one network; no interface+MAC in two instances. `pathOf(i)` names instances[i] in problems.
 */
export function checkInstanceSet(instances: readonly Instance[], pathOf: (i: number) => string = (i) => `instances[${i}]`): Problem[] {
  return setProblems(instances, pathOf).map(({ path, message }) => ({ path, message }));
}

/** One claim per instance (its id) and per port: its instance's index, and its port's index + 1 (0 for the instance). */
interface Claims {
  readonly instance: number[];
  readonly port: number[];
}

/** Claims under one key string (a value the instances hold anyway): the first, or all when they differ in the other fields. */
type ClaimTable = Map<string, number | number[]>;

/** The earlier claim under `key` that `same` says is the same thing, or undefined (and then claim `c` is recorded). */
function claim(table: ClaimTable, key: string, c: number, same: (earlier: number) => boolean): number | undefined {
  const had = table.get(key);
  if (had === undefined) {
    table.set(key, c);
    return undefined;
  }
  if (typeof had === 'number') {
    if (same(had)) return had;
    table.set(key, [had, c]);
    return undefined;
  }
  for (const e of had) if (same(e)) return e;
  had.push(c);
  return undefined;
}

/**
 * `checkInstanceSet`, each problem with the index of the instance it is about (the later
 * claimant). Claims are looked up by a string the instance already holds (id, address, MAC) and
 * compared field by field, and paths are spelled only for a problem: at 100,000 instances, keys
 * built by concatenation (and paths built up front) cost more time and garbage than the checks.
 */
function setProblems(instances: readonly Instance[], pathOf: (i: number) => string): (Problem & { index: number })[] {
  const problems: (Problem & { index: number })[] = [];
  const claims: Claims = { instance: [], port: [] };
  const newClaim = (i: number, k: number): number => {
    claims.port.push(k);
    return claims.instance.push(i) - 1;
  };
  const pathAt = (c: number): string => {
    const i = claims.instance[c]!;
    const k = claims.port[c]!;
    return k === 0 ? pathOf(i) : join(join(pathOf(i), 'ports'), k - 1);
  };
  const portAt = (c: number): PortSpec => instances[claims.instance[c]!]!.ports[claims.port[c]! - 1]!;
  const ids = new Map<string, number>();
  const triples: ClaimTable = new Map(); // by ipv4; the same interface and MAC
  const nics: ClaimTable = new Map(); // by MAC; the same interface
  const addresses: Record<'ipv4' | 'ipv6', ClaimTable> = { ipv4: new Map(), ipv6: new Map() }; // the same network

  instances.forEach((inst, i) => {
    const add = (path: string, message: string): void => void problems.push({ index: i, path, message });
    const self = newClaim(i, 0);
    const dupId = ids.get(inst.id);
    if (dupId === undefined) ids.set(inst.id, self);
    else add(join(pathOf(i), 'id'), `duplicate id ${q(inst.id)}: ${pathAt(dupId)} has it too`);

    inst.ports.forEach((p, k) => {
      const c = newClaim(i, k + 1);
      const triple = claim(triples, p.ipv4, c, (e) => {
        const o = portAt(e);
        return o.interface === p.interface && o.mac === p.mac;
      });
      if (triple !== undefined)
        return add(pathAt(c), `the same (interface, mac, ipv4) as ${pathAt(triple)}: ${p.interface}, ${p.mac}, ${p.ipv4}`);

      const nic = claim(nics, p.mac, c, (e) => portAt(e).interface === p.interface);
      if (nic !== undefined && claims.instance[nic] !== i)
        add(
          join(pathAt(c), 'mac'),
          `interface ${p.interface} with MAC ${p.mac} is already claimed by ${pathAt(nic)}; one NIC cannot belong to two instances`,
        );

      const network = p.network ?? '';
      for (const family of ['ipv4', 'ipv6'] as const) {
        const addr = p[family];
        if (addr === undefined) continue;
        const dup = claim(addresses[family], addr, c, (e) => (portAt(e).network ?? '') === network);
        if (dup !== undefined) {
          const where = p.network === undefined ? 'the default network (no `network` set)' : `network ${q(p.network)}`;
          const hint = 'if these guests are on separate tenant networks, set `network` on their ports to tell the networks apart';
          add(join(pathAt(c), family), `${addr} is already used by ${pathAt(dup)} in ${where}; ${hint}`);
        }
      }
    });
  });
  return problems;
}

// ---- the whole file ---------------------------------------------------------------------------

const listenIpv4 = fmt((s) => {
  const o = parseIPv4(s);
  if (!o) return { error: `${q(s)} is not a dotted-quad IPv4 address (no leading zeros)` };
  return o[0] === 0 || o[0] >= 224 ? { error: `${s} cannot be a listen address` } : s;
});

/** `false` turns IPv6 metadata off. */
const flag: Check<boolean> = (v, path, out) => (typeof v === 'boolean' ? v : wrongType(out, path, 'true or false', v));
const listenIpv6: Check<string | false> = (v, path, out) => (v === false ? false : fmt(checkGuestIPv6)(v, path, out));

const upstream = object({
  url: httpUrl,
  shared_secret: str({ min: 1, printable: true }),
  cache_ttl_s: def(int(0, 86_400), 15),
  timeout_ms: def(int(50, 60_000), 2000),
  max_connections: def(int(1, 1024), 16),
  stale_if_error_s: def(int(0, 86_400), 300),
});

const etcd = object({
  endpoints: arr(httpUrl, { min: 1 }),
  prefix: def(str({ max: 255, printable: true, pattern: /^\/(.*\/)?$/, what: 'a key prefix starting and ending with "/"' }), '/linkgate/'),
});

function topSpec(defaultHost: string) {
  const host = fmt(checkHostname);
  return {
    listen: orEmpty(
      object({
        ipv4: def(listenIpv4, DEFAULT_LISTEN_IPV4),
        ipv6: def(listenIpv6, DEFAULT_LISTEN_IPV6),
        port: def(int(1, 65_535), 80),
        fast_path: def(flag, true),
      }),
    ),
    admin: orEmpty(object({ socket: def(absPath(107), '/run/linkgate/admin.sock') })),
    host: ((v, path, out) => {
      if (v !== undefined) return host(v, path, out);
      const mine: Problem[] = [];
      const r = host(defaultHost, path, mine);
      for (const p of mine) out.push({ path, message: `${p.message} (this is the machine's host name; set \`host\`)` });
      return r;
    }) satisfies Check<string>,
    state_dir: def(absPath(), '/var/lib/linkgate'),
    ec2: orEmpty(object({ tokens: def(tokenMode, 'optional'), hop_limit: def(int(1, 64), 1) })),
    limits: orEmpty(
      object({
        max_header_bytes: def(int(1024, 65_536), 8192),
        header_timeout_ms: def(int(1, 300_000), 5000),
        keepalive_timeout_ms: def(int(1, 3_600_000), 5000),
        shutdown_grace_ms: def(int(1, 600_000), 5000),
        held_per_instance: def(int(1, 1024), 16),
        rate_per_s: orEmpty(
          object({
            ec2: def(int(0, 100_000), 0),
            gce: def(int(0, 100_000), 0),
            openstack: def(int(0, 100_000), 0),
            azure: def(int(0, 100_000), 5),
          }),
        ),
      }),
    ),
    default_backend: def(backendKind, 'embedded'),
    backends: orEmpty(refine(object({ upstream: opt(upstream) }), compact)),
    registry: orEmpty(refine(object({ etcd: opt(etcd) }), compact)),
    instances: arr((v): unknown => v),
  };
}

/**
 * The elements of `instances`, handed over one at a time (config/load.ts parses a big JSON file's
 * instances one by one this way, so no instance's parsed form outlives its validation). Each is
 * asked for once, in order.
 */
export interface RawInstances {
  readonly length: number;
  get(index: number): unknown;
}

/**
 * The whole configuration (parsed YAML or JSON). Reports every problem; fills defaults.
 * `opts.instances`, when given, are the elements of `instances` (which `raw` must still have, as
 * an array, e.g. empty).
 */
export function validateConfig(raw: unknown, opts: { hostname?: string; instances?: RawInstances } = {}): ConfigResult {
  const problems: Problem[] = [];
  if (raw === null || raw === undefined)
    return { ok: false, problems: [{ path: '', message: 'the configuration is empty; it needs at least `instances`' }] };
  const r = fields(topSpec(opts.hostname ?? machineHostname()), raw, '', problems);
  if (r === BAD) return { ok: false, problems };

  // Instances one by one (each knowing the listen address), then across the good ones. What the
  // checks after the set checks need of the raw elements (id, backend) is kept from this one pass.
  const listen = r.listen === BAD ? DEFAULT_LISTEN_IPV4 : r.listen.ipv4;
  const check = instanceCheck(listen);
  const good: Instance[] = [];
  const goodAt: number[] = [];
  // Each raw instance's id where it has one (two arrays: no object per instance outlives this call).
  const idAt: number[] = [];
  const ids: string[] = [];
  const upstreamAt: number[] = [];
  const one = (x: unknown, at: number): void => {
    const instance = check(x, `instances[${at}]`, problems);
    if (instance !== BAD) {
      good.push(instance);
      goodAt.push(at);
    }
    const id = isObject(x) ? x['id'] : undefined;
    if (typeof id === 'string') {
      idAt.push(at);
      ids.push(id);
    }
    if (isObject(x) && x['backend'] === 'upstream') upstreamAt.push(at);
  };
  if (r.instances === BAD) {
    /* reported */
  } else if (opts.instances === undefined) r.instances.forEach(one);
  else for (let at = 0; at < opts.instances.length; at++) one(opts.instances.get(at), at);
  const total = r.instances === BAD ? 0 : (opts.instances?.length ?? r.instances.length);

  problems.push(...checkInstanceSet(good, (k) => `instances[${goodAt[k]!}]`));
  // An invalid instance is left out of the set checks, but its id still collides: say so too.
  if (good.length < total) {
    const valid = new Set(goodAt);
    const firstWithId = new Map<string, number>();
    for (let k = 0; k < ids.length; k++) {
      const at = idAt[k]!;
      const id = ids[k]!;
      const first = firstWithId.get(id);
      if (first === undefined) firstWithId.set(id, at);
      else if ((!valid.has(first) || !valid.has(at)) && !problems.some((p) => p.path === `instances[${at}].id`)) {
        problems.push({ path: `instances[${at}].id`, message: `duplicate id ${q(id)}: instances[${first}] has it too` });
      }
    }
  }

  // `upstream` anywhere needs backends.upstream (if it is there but invalid, that is reported already).
  const backends = (raw as Record<string, unknown>)['backends']; // an object: `fields` accepted it
  const upstreamGiven = isObject(backends) ? backends['upstream'] !== undefined : backends !== undefined;
  if (!upstreamGiven) {
    const why = "is 'upstream' but backends.upstream is not configured";
    if (r.default_backend === 'upstream') problems.push({ path: 'default_backend', message: why });
    for (const at of upstreamAt) problems.push({ path: `instances[${at}].backend`, message: why });
  }

  if (problems.length > 0 || !allGood(r)) return { ok: false, problems };
  return { ok: true, config: { ...r, instances: good } };
}

// ---- one instance from the admin API or the etcd registry -------------------------------------

/** What an instance from outside the file is checked against: the running configuration. */
export interface InstanceContext {
  readonly listenIpv4: string;
  /** backends.upstream is configured (an instance may then say `backend: upstream`). */
  readonly upstream: boolean;
}

export function instanceContext(config: Pick<Config, 'listen' | 'backends'>): InstanceContext {
  return { listenIpv4: config.listen.ipv4, upstream: config.backends.upstream !== undefined };
}

/**
 * One instance as the admin API and the etcd registry take it: `validateInstance`, plus what the
 * file checks across sections (`backend: upstream` needs backends.upstream), plus the id the
 * caller expects (the API path's, the etcd key's): a body without `id` gets `expectId`, a body
 * with another id is a problem at `id`.
 */
export function validateInstanceFor(raw: unknown, ctx: InstanceContext, expectId?: string, path = ''): InstanceResult {
  let body = raw;
  if (expectId !== undefined && isObject(raw)) {
    if (raw['id'] === undefined) body = { ...raw, id: expectId };
    else if (raw['id'] !== expectId) {
      return { ok: false, problems: [{ path: join(path, 'id'), message: `is ${describe(raw['id'])} but the instance is ${q(expectId)}` }] };
    }
  }
  const r = validateInstance(body, path, { listenIpv4: ctx.listenIpv4 });
  if (r.ok && r.instance.backend === 'upstream' && !ctx.upstream) {
    return { ok: false, problems: [{ path: join(path, 'backend'), message: "is 'upstream' but backends.upstream is not configured" }] };
  }
  return r;
}

/**
 * `checkInstanceSet` for instances of several sources: each problem with the index of the
 * instance it is about (the later claimant) and a message naming instances by id.
 */
export function instanceSetConflicts(instances: readonly Instance[]): { index: number; message: string }[] {
  return setProblems(instances, (i) => `instance ${instances[i]?.id ?? `instances[${i}]`}`).map((p) => ({
    index: p.index,
    message: `${p.path}: ${p.message}`,
  }));
}
