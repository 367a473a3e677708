/**
 * The EC2 metadata tree, built from the instance model and walked by path.
 *
 * A node is a directory (named children, and the listing EC2 prints for it) or a leaf (a
 * content type and a body). The tree depends on the instance only, so it is built once per
 * instance object and cached; what depends on the request — the NIC it came in on (`mac`,
 * `local-ipv4`, the identity document's `privateIp`), the time (`LastUpdated`) and when the
 * instance was registered (`pendingTime`) — lives in leaves whose body is a function of a
 * RenderEnv, evaluated per request.
 */
import type { Instance, PortSpec } from '../../model/instance.js';
import { keyName, perInstance } from '../common.js';
import { instanceProfileId, interfaceId, isoSeconds, reservationId } from './ids.js';
import { VERSIONS } from './versions.js';

export const TEXT = 'text/plain';
export const JSON_TYPE = 'application/json';
export const OCTETS = 'application/octet-stream';

/** What a leaf may depend on besides the instance. */
export interface RenderEnv {
  readonly port: PortSpec;
  /** ms since the epoch. */
  readonly now: number;
  /** ms since the epoch: when the instance was registered. */
  readonly since: number;
}

export type Render = (env: RenderEnv) => string;

export interface Leaf {
  readonly kind: 'leaf';
  readonly type: string;
  readonly body: string | Render;
  /** The body reads the clock (`env.now`): never the same twice, never replayed. */
  readonly clocked?: boolean;
}

export interface Dir {
  readonly kind: 'dir';
  readonly children: ReadonlyMap<string, Node>;
  /** One entry a line, sub-directories with a trailing '/', no trailing newline. */
  readonly listing: string;
}

export type Node = Dir | Leaf;

type Entry = readonly [string, Node | undefined];

function leaf(body: string | Render, type: string = TEXT): Leaf {
  return { kind: 'leaf', type, body };
}

function json(render: (env: RenderEnv) => unknown, clocked = false): Leaf {
  const l = leaf((env) => JSON.stringify(render(env), null, 2), JSON_TYPE);
  return clocked ? { ...l, clocked } : l;
}

/** True for a name a path segment can reach and a listing line can carry. */
function addressable(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\r\n]/.test(name);
}

/**
 * A directory of `entries`, in the given order; undefined nodes (absent optional parts) and
 * names no path could reach are left out; on a repeated name the first wins.
 */
function dir(entries: readonly Entry[], listing?: string): Dir {
  const children = new Map<string, Node>();
  for (const [name, node] of entries) {
    if (node !== undefined && addressable(name) && !children.has(name)) children.set(name, node);
  }
  const lines = [...children].map(([name, node]) => (node.kind === 'dir' ? `${name}/` : name));
  return { kind: 'dir', children, listing: listing ?? lines.join('\n') };
}

export { keyName };

function publicKeys(keys: readonly string[]): Dir | undefined {
  if (keys.length === 0) return undefined;
  const entries: Entry[] = keys.map((key, i) => [String(i), dir([['openssh-key', leaf(key)]])]);
  const listing = keys.map((key, i) => `${i}=${keyName(key, i)}`).join('\n');
  return dir(entries, listing);
}

function interfaces(inst: Instance): Dir {
  const macs: Entry[] = inst.ports.map((port, i) => [
    port.mac,
    dir([
      ['device-number', leaf(String(i))],
      ['interface-id', leaf(interfaceId(inst.id, port.mac))],
      ['ipv6s', port.ipv6 === undefined ? undefined : leaf(port.ipv6)],
      ['local-hostname', leaf(inst.hostname)],
      ['local-ipv4s', leaf(port.ipv4)],
      ['mac', leaf(port.mac)],
      ['owner-id', leaf(inst.project)],
    ]),
  ]);
  return dir([['interfaces', dir([['macs', dir(macs)]])]]);
}

function iam(inst: Instance): Dir | undefined {
  const role = inst.role;
  if (role === undefined) return undefined;
  return dir([
    [
      'info',
      json(
        (env) => ({
          Code: 'Success',
          LastUpdated: isoSeconds(env.now),
          InstanceProfileArn: `arn:aws:iam::${inst.project}:instance-profile/${role.name}`,
          InstanceProfileId: instanceProfileId(inst.id, role.name),
        }),
        true,
      ),
    ],
    [
      'security-credentials',
      dir([
        [
          role.name,
          json(
            (env) => ({
              Code: 'Success',
              LastUpdated: isoSeconds(env.now),
              Type: 'AWS-HMAC',
              AccessKeyId: role.access_key_id,
              SecretAccessKey: role.secret_access_key,
              Token: role.token,
              Expiration: role.expiration,
            }),
            true,
          ),
        ],
      ]),
    ],
  ]);
}

function tags(inst: Instance): Dir | undefined {
  const entries: Entry[] = Object.entries(inst.tags).map(([k, v]) => [k, leaf(v)]);
  if (entries.length === 0) return undefined;
  return dir([['instance', dir(entries)]]);
}

function metaData(inst: Instance): Dir {
  return dir([
    ['ami-id', leaf(inst.image)],
    ['ami-launch-index', leaf('0')],
    ['ami-manifest-path', leaf('(unknown)')],
    [
      'block-device-mapping',
      dir([
        ['ami', leaf('/dev/vda')],
        ['root', leaf('/dev/vda')],
      ]),
    ],
    ['hostname', leaf(inst.hostname)],
    ['iam', iam(inst)],
    ['instance-action', leaf('none')],
    ['instance-id', leaf(inst.id)],
    ['instance-life-cycle', leaf('on-demand')],
    ['instance-type', leaf(inst.type)],
    ['local-hostname', leaf(inst.hostname)],
    ['local-ipv4', leaf((env) => env.port.ipv4)],
    ['mac', leaf((env) => env.port.mac)],
    ['network', interfaces(inst)],
    [
      'placement',
      dir([
        ['availability-zone', leaf(inst.zone)],
        ['region', leaf(inst.region)],
      ]),
    ],
    ['profile', leaf('default-hvm')],
    ['public-keys', publicKeys(inst.ssh_keys)],
    ['reservation-id', leaf(reservationId(inst.id))],
    ['security-groups', leaf('default')],
    [
      'services',
      dir([
        ['domain', leaf('amazonaws.com')],
        ['partition', leaf('aws')],
      ]),
    ],
    ['tags', tags(inst)],
  ]);
}

function dynamic(inst: Instance): Dir {
  const document = json((env) => ({
    accountId: inst.project,
    architecture: 'x86_64',
    availabilityZone: inst.zone,
    billingProducts: null,
    devpayProductCodes: null,
    marketplaceProductCodes: null,
    imageId: inst.image,
    instanceId: inst.id,
    instanceType: inst.type,
    kernelId: null,
    pendingTime: isoSeconds(env.since),
    privateIp: env.port.ipv4,
    ramdiskId: null,
    region: inst.region,
    version: '2017-09-30',
  }));
  return dir([['instance-identity', dir([['document', document]])]]);
}

/**
 * The whole tree: `/` lists the versions, each of which is the same version directory. The two
 * top levels list their entries without a trailing '/', as EC2 does.
 */
export function buildTree(inst: Instance): Dir {
  const version = dir([
    ['dynamic', dynamic(inst)],
    ['meta-data', metaData(inst)],
    ['user-data', inst.user_data === undefined ? undefined : leaf(inst.user_data, OCTETS)],
  ]);
  // EC2 lists a version's entries bare, directories included: `dynamic\nmeta-data\nuser-data`.
  const versionDir = dir([...version.children], [...version.children.keys()].join('\n'));
  return dir(
    VERSIONS.map((v) => [v, versionDir]),
    VERSIONS.join('\n'),
  );
}

/** The tree of `inst`, built on first use, once per (immutable) instance object. */
export const treeFor: (inst: Instance) => Dir = perInstance(buildTree);

/**
 * The node at `path`, or undefined. Any node answers with or without one trailing '/' (EC2 does:
 * botocore reads its region from `.../placement/availability-zone/`). Empty, '.' and '..'
 * segments find nothing (no normalisation, no traversal).
 */
export function resolve(root: Dir, path: string): Node | undefined {
  if (!path.startsWith('/')) return undefined;
  if (path === '/') return root;
  const trailing = path.endsWith('/');
  const segments = path.slice(1, trailing ? -1 : undefined).split('/');
  let node: Node = root;
  for (const segment of segments) {
    if (node.kind !== 'dir' || segment === '.' || segment === '..') return undefined;
    const next: Node | undefined = node.children.get(segment);
    if (next === undefined) return undefined;
    node = next;
  }
  return node;
}

/**
 * The targets under `root` (a version directory, `/<version>/`) a crawler may ask for: every
 * node, directories with and without their trailing '/'; at most `max`.
 */
export function targetsUnder(tree: Dir, root: string, max: number): string[] {
  const start = resolve(tree, root);
  if (start === undefined || start.kind !== 'dir') return [];
  const out: string[] = [root];
  const walk = (d: Dir, prefix: string): void => {
    for (const [name, node] of d.children) {
      if (out.length >= max) return;
      const p = prefix + name;
      if (node.kind === 'dir') {
        out.push(p, `${p}/`);
        walk(node, `${p}/`);
      } else out.push(p);
    }
  };
  walk(start, root);
  return out.slice(0, max);
}

/** The body of a node for one request. */
export function render(node: Node, env: RenderEnv): { readonly type: string; readonly body: string } {
  if (node.kind === 'dir') return { type: TEXT, body: node.listing };
  return { type: node.type, body: typeof node.body === 'string' ? node.body : node.body(env) };
}
