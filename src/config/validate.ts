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

function portCheck(listenIpv4: string): Check<PortSpec> {
  const ipv4 = fmt((s) => (s === listenIpv4 ? { error: `${s} is the metadata listen address` } : checkGuestIPv4(s)));
  return refine(
    object({
      interface: ifname,
      mac: fmt(checkMac),
      ipv4,
      ipv6: opt(fmt(checkGuestIPv6)),
      bridge: opt(ifname),
      network: opt(
        str({ pattern: /^[a-z0-9][a-z0-9-]{0,31}$/, what: 'a network name (1 to 32 of a-z, 0-9 and "-", not starting with "-")' }),
      ),
    }),
    compact,
  );
}

function instanceCheck(listenIpv4: string): Check<Instance> {
  const spec = {
    id: str({
      pattern: /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/,
      what: 'a valid id (1 to 128 of A-Z a-z 0-9 . _ : -, starting with a letter or digit)',
    }),
    hostname: fmt(checkHostname),
    ports: arr(portCheck(listenIpv4), { min: 1 }),
    project: def(name, 'default'),
    region: def(name, 'region-1'),
    zone: opt(name),
    image: def(name, 'image-0'),
    type: def(name, 'm1.small'),
    ssh_keys: opt(arr(str({ min: 1, maxBytes: 16 * KiB, line: true }))),
    user_data: opt(str({ maxBytes: 64 * KiB })),
    tags: opt(record(tagKey, str({ max: 255 }))),
    role: opt(role),
    backend: opt(backendKind),
    ec2: opt(ec2Override),
    gce: opt(gceSpec),
    openstack: opt(openstackSpec),
    azure: opt(azureSpec),
  };
  return refine(object(spec), (r): Instance =>
    compact({ ...r, zone: r.zone ?? `${r.region}a`, ssh_keys: r.ssh_keys ?? [], tags: r.tags ?? {} }),
  );
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
  const problems: Problem[] = [];
  // Claims remember (instance, port) indices; paths are spelled only for a problem (at 100,000
  // instances, building every path up front cost more than the checks themselves).
  const seen = new Map<string, number>();
  const PORTS = 2 ** 21;
  const pathAt = (code: number): string => {
    const i = Math.floor(code / PORTS);
    const k = code % PORTS;
    return k === 0 ? pathOf(i) : join(join(pathOf(i), 'ports'), k - 1);
  };
  /** The earlier claimant of `key` (as { i, path }), or undefined (and `key` is now claimed by `code`). */
  const claim = (key: string, code: number): { i: number; path: string } | undefined => {
    const prev = seen.get(key);
    if (prev === undefined) {
      seen.set(key, code);
      return undefined;
    }
    return { i: Math.floor(prev / PORTS), path: pathAt(prev) };
  };
  const add = (path: string, message: string): void => void problems.push({ path, message });

  instances.forEach((inst, i) => {
    const dupId = claim(`id ${inst.id}`, i * PORTS);
    if (dupId) add(join(pathOf(i), 'id'), `duplicate id ${q(inst.id)}: ${dupId.path} has it too`);

    inst.ports.forEach((p, k) => {
      const code = i * PORTS + k + 1;
      const triple = claim(`triple ${p.interface} ${p.mac} ${p.ipv4}`, code);
      if (triple) return add(pathAt(code), `the same (interface, mac, ipv4) as ${triple.path}: ${p.interface}, ${p.mac}, ${p.ipv4}`);

      const nic = claim(`nic ${p.interface} ${p.mac}`, code);
      if (nic && nic.i !== i)
        add(
          join(pathAt(code), 'mac'),
          `interface ${p.interface} with MAC ${p.mac} is already claimed by ${nic.path}; one NIC cannot belong to two instances`,
        );

      for (const family of ['ipv4', 'ipv6'] as const) {
        const addr = p[family];
        if (addr === undefined) continue;
        const dup = claim(`${family} ${p.network ?? ''} ${addr}`, code);
        if (dup) {
          const where = p.network === undefined ? 'the default network (no `network` set)' : `network ${q(p.network)}`;
          const hint = 'if these guests are on separate tenant networks, set `network` on their ports to tell the networks apart';
          add(join(pathAt(code), family), `${addr} is already used by ${dup.path} in ${where}; ${hint}`);
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

/** The whole configuration (parsed YAML or JSON). Reports every problem; fills defaults. */
export function validateConfig(raw: unknown, opts: { hostname?: string } = {}): ConfigResult {
  const problems: Problem[] = [];
  if (raw === null || raw === undefined)
    return { ok: false, problems: [{ path: '', message: 'the configuration is empty; it needs at least `instances`' }] };
  const r = fields(topSpec(opts.hostname ?? machineHostname()), raw, '', problems);
  if (r === BAD) return { ok: false, problems };

  // Instances one by one (each knowing the listen address), then across the good ones.
  const listen = r.listen === BAD ? DEFAULT_LISTEN_IPV4 : r.listen.ipv4;
  const check = instanceCheck(listen);
  const good: { at: number; instance: Instance }[] = [];
  (r.instances === BAD ? [] : r.instances).forEach((x, at) => {
    const instance = check(x, `instances[${at}]`, problems);
    if (instance !== BAD) good.push({ at, instance });
  });
  problems.push(
    ...checkInstanceSet(
      good.map((g) => g.instance),
      (k) => `instances[${good[k]!.at}]`,
    ),
  );
  // An invalid instance is left out of the set checks, but its id still collides: say so too.
  const valid = new Set(good.map((g) => g.at));
  const firstWithId = new Map<string, number>();
  (r.instances === BAD ? [] : r.instances).forEach((x, at) => {
    const id = isObject(x) ? x['id'] : undefined;
    if (typeof id !== 'string') return;
    const first = firstWithId.get(id);
    if (first === undefined) firstWithId.set(id, at);
    else if ((!valid.has(first) || !valid.has(at)) && !problems.some((p) => p.path === `instances[${at}].id`)) {
      problems.push({ path: `instances[${at}].id`, message: `duplicate id ${q(id)}: instances[${first}] has it too` });
    }
  });

  // `upstream` anywhere needs backends.upstream (if it is there but invalid, that is reported already).
  const backends = (raw as Record<string, unknown>)['backends']; // an object: `fields` accepted it
  const upstreamGiven = isObject(backends) ? backends['upstream'] !== undefined : backends !== undefined;
  if (!upstreamGiven) {
    const why = "is 'upstream' but backends.upstream is not configured";
    if (r.default_backend === 'upstream') problems.push({ path: 'default_backend', message: why });
    (r.instances === BAD ? [] : r.instances).forEach((x, at) => {
      if (isObject(x) && x['backend'] === 'upstream') problems.push({ path: `instances[${at}].backend`, message: why });
    });
  }

  if (problems.length > 0 || !allGood(r)) return { ok: false, problems };
  return { ok: true, config: { ...r, instances: good.map((g) => g.instance) } };
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
  const names = instances.map((inst) => `instance ${inst.id}`);
  const indexOf = (path: string): number => {
    let best = -1;
    names.forEach((n, i) => {
      const next = path.charAt(n.length);
      if (path.startsWith(n) && (next === '' || next === '.' || next === '[') && (best < 0 || n.length > (names[best]?.length ?? 0)))
        best = i;
    });
    return best;
  };
  return checkInstanceSet(instances, (i) => names[i] ?? `instances[${i}]`).map((p) => ({
    index: indexOf(p.path),
    message: `${p.path}: ${p.message}`,
  }));
}
