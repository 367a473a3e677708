/**
 * The GCE metadata tree (`/computeMetadata/v1/...`) and its renderings: plain text (the default),
 * `alt=json`, and `recursive=true` (one JSON document, keys in camelCase as GCE writes them,
 * except attribute names and service-account names, which are data and stay verbatim).
 */
import type { Instance, PortSpec } from '../../model/instance.js';
import { perInstance } from '../common.js';
import { DEFAULT_SCOPES, DEFAULT_SSH_USER, instanceName, instanceNumericId, projectNumber, serviceAccountEmail } from './ids.js';

/** A node of the tree. */
export type Node =
  | { readonly kind: 'text'; readonly value: string }
  /** A number too large for a double, written as its digits in JSON. */
  | { readonly kind: 'num'; readonly digits: string }
  /** A list of strings: one a line in text, an array in JSON. */
  | { readonly kind: 'list'; readonly items: readonly string[] }
  /** Always JSON (GCE's `tags`). */
  | { readonly kind: 'json'; readonly value: unknown }
  | { readonly kind: 'dir'; readonly entries: ReadonlyMap<string, Node>; readonly verbatimKeys: boolean }
  /** Rendered per request by the dialect (token, identity); left out of recursive documents. */
  | { readonly kind: 'special'; readonly name: 'token' | 'identity' };

export type Dir = Extract<Node, { kind: 'dir' }>;

const text = (value: string): Node => ({ kind: 'text', value });

function dir(entries: ReadonlyArray<readonly [string, Node | undefined]>, verbatimKeys = false): Dir {
  const m = new Map<string, Node>();
  for (const [k, v] of entries) if (v !== undefined && !m.has(k)) m.set(k, v);
  return { kind: 'dir', entries: m, verbatimKeys };
}

function attributes(inst: Instance): Dir {
  const user = inst.gce?.ssh_user ?? DEFAULT_SSH_USER;
  const base: Array<[string, Node]> = [];
  if (inst.ssh_keys.length > 0) base.push(['ssh-keys', text(inst.ssh_keys.map((k) => `${user}:${k}`).join('\n'))]);
  if (inst.user_data !== undefined) base.push(['user-data', text(inst.user_data)]);
  const custom = Object.entries(inst.gce?.attributes ?? {}).map(([k, v]): [string, Node] => [k, text(v)]);
  // Custom attributes win over the derived ones; listed in name order, as GCE does.
  return dir(
    [...custom, ...base].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    true,
  );
}

function nic(inst: Instance, port: PortSpec): Dir {
  return dir([
    ['ip', text(port.ipv4)],
    ['ipv6s', port.ipv6 === undefined ? undefined : { kind: 'list', items: [port.ipv6] }],
    ['mac', text(port.mac)],
    ['network', text(`projects/${projectNumber(inst)}/networks/${port.network ?? 'default'}`)],
  ]);
}

function serviceAccount(inst: Instance): Dir {
  return dir([
    ['aliases', { kind: 'list', items: ['default'] }],
    ['email', text(serviceAccountEmail(inst))],
    ['identity', { kind: 'special', name: 'identity' }],
    ['scopes', { kind: 'list', items: inst.gce?.scopes ?? DEFAULT_SCOPES }],
    ['token', { kind: 'special', name: 'token' }],
  ]);
}

export function buildTree(inst: Instance): Dir {
  const num = projectNumber(inst);
  const sa = serviceAccount(inst);
  const instance = dir([
    ['attributes', attributes(inst)],
    ['description', text('')],
    ['hostname', text(inst.hostname)],
    ['id', { kind: 'num', digits: instanceNumericId(inst) }],
    ['image', text(`projects/${inst.project}/global/images/${inst.image}`)],
    ['machine-type', text(`projects/${num}/machineTypes/${inst.type}`)],
    ['name', text(instanceName(inst))],
    ['network-interfaces', dir(inst.ports.map((p, i) => [String(i), nic(inst, p)]))],
    ['preempted', text('FALSE')],
    [
      'service-accounts',
      dir(
        [
          ['default', sa],
          [serviceAccountEmail(inst), sa],
        ],
        true,
      ),
    ],
    ['tags', { kind: 'json', value: Object.keys(inst.tags).sort() }],
    ['zone', text(`projects/${num}/zones/${inst.zone}`)],
  ]);
  const project = dir([
    [
      'attributes',
      dir(
        Object.entries(inst.gce?.project_attributes ?? {}).map(([k, v]) => [k, text(v)]),
        true,
      ),
    ],
    ['numeric-project-id', { kind: 'num', digits: num }],
    ['project-id', text(inst.project)],
  ]);
  const v1 = dir([
    ['instance', instance],
    ['project', project],
  ]);
  return dir([['v1', v1]]);
}

/** The tree of `inst`, built once per (immutable) instance object. */
export const treeFor: (inst: Instance) => Dir = perInstance(buildTree);

/**
 * The node at `segments` under the root (`computeMetadata/`), or undefined. Empty segments
 * (from a trailing '/') are ignored only at the end; '.', '..' and inner empty segments find nothing.
 */
export function resolve(root: Dir, path: string): Node | undefined {
  const trimmed = path.endsWith('/') ? path.slice(0, -1) : path;
  if (trimmed === '') return root;
  let node: Node = root;
  for (const seg of trimmed.split('/')) {
    if (node.kind !== 'dir' || seg === '' || seg === '.' || seg === '..') return undefined;
    const next: Node | undefined = node.entries.get(seg);
    if (next === undefined) return undefined;
    node = next;
  }
  return node;
}

export function camel(key: string): string {
  return key.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The JSON document of a node (specials left out); numbers too large for a double stay exact. */
export function toJson(node: Node, verbatim = false): string | undefined {
  switch (node.kind) {
    case 'text':
      return JSON.stringify(node.value);
    case 'num':
      return node.digits;
    case 'list':
      return JSON.stringify(node.items);
    case 'json':
      return JSON.stringify(node.value);
    case 'special':
      return undefined;
    case 'dir': {
      const parts: string[] = [];
      for (const [k, v] of node.entries) {
        const body = toJson(v);
        if (body !== undefined) parts.push(`${JSON.stringify(node.verbatimKeys || verbatim ? k : camel(k))}:${body}`);
      }
      return `{${parts.join(',')}}`;
    }
  }
}

/** A leaf's text form. */
export function leafText(node: Exclude<Node, Dir | { kind: 'special' }>): string {
  switch (node.kind) {
    case 'text':
      return node.value;
    case 'num':
      return node.digits;
    case 'list':
      return node.items.map((x) => `${x}\n`).join('');
    case 'json':
      return JSON.stringify(node.value);
  }
}

/** A directory's listing: one name a line, sub-directories with a trailing '/'. */
export function listing(node: Dir): string {
  return [...node.entries].map(([k, v]) => `${k}${v.kind === 'dir' ? '/' : ''}\n`).join('');
}

/** `recursive=true&alt=text`: one `path value` line per leaf (values on one line). */
export function flatText(node: Node, prefix = ''): string {
  if (node.kind === 'special') return '';
  if (node.kind !== 'dir') {
    const v = node.kind === 'list' ? node.items.join(' ') : leafText(node).replace(/\n/g, '\\n');
    return `${prefix === '' ? '' : `${prefix} `}${v}\n`;
  }
  let out = '';
  for (const [k, v] of node.entries) out += flatText(v, prefix === '' ? k : `${prefix}/${k}`);
  return out;
}
