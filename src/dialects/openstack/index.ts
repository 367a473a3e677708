/**
 * The OpenStack metadata dialect (`/openstack/...`), as nova's metadata API serves it and
 * cloud-init's MetadataReader reads it. A pure function of (request, context); the one write
 * (POST password) is handed to the pipeline as `store`. The EC2 tree stays served beside it by
 * the EC2 dialect, as nova does.
 *
 * Order of checks: query (400: no OpenStack path takes one) · path (404) · method (405) ·
 * the file's own rules (user_data 404 when none; password POST 400/409).
 */
import type { Instance, PortSpec } from '../../model/instance.js';
import type { DialectContext, DialectRequest, DialectResponse } from '../types.js';
import { keyName, parseQuery, stableUuid } from '../common.js';

export const PREFIX = '/openstack';
/** Chronological; `latest` is listed last. */
export const VERSIONS: readonly string[] = [
  '2012-08-10',
  '2013-04-04',
  '2013-10-17',
  '2015-10-15',
  '2016-06-30',
  '2016-10-06',
  '2017-02-22',
  '2018-08-27',
];
const LATEST = 'latest';
/** nova's limit for a posted password (4 chunks of 255 bytes). */
export const MAX_PASSWORD_BYTES = 1020;
/** The `guestData` key the password is stored under. */
export const PASSWORD_KEY = 'openstack.password';

const TEXT = 'text/plain; charset=UTF-8';
const JSON_TYPE = 'application/json';

export function isOpenStackPath(path: string): boolean {
  return path === PREFIX || path.startsWith(`${PREFIX}/`);
}

/** The instance's UUID: configured, or derived from its id. */
export function instanceUuid(inst: Instance): string {
  return inst.openstack?.uuid ?? stableUuid('openstack-instance', inst.id);
}

/** When `ver` (a date or `latest`) has the feature that appeared in `since`. */
function atLeast(ver: string, since: string): boolean {
  return ver === LATEST || ver >= since;
}

function reply(status: number, type: string, body: string, extra: Record<string, string> = {}): DialectResponse {
  return { status, headers: { 'Content-Type': type, ...extra }, body };
}

const webobTitles: Record<number, [string, string]> = {
  400: ['400 Bad Request', 'The server could not comply with the request since it is either malformed or otherwise incorrect.'],
  404: ['404 Not Found', 'The resource could not be found.'],
  405: ['405 Method Not Allowed', 'The method is not allowed for this resource.'],
  409: ['409 Conflict', 'There was a conflict when trying to complete your request.'],
  429: ['429 Too Many Requests', 'Too many requests; try again later.'],
  503: ['503 Service Unavailable', 'The server is currently unavailable. Please try again at a later time.'],
};

/** webob's HTML error page, as nova answers. */
export function openstackError(status: number, extra: Record<string, string> = {}): DialectResponse {
  const [title, text] = webobTitles[status] ?? [`${status} Error`, ''];
  const body = `<html>\n <head>\n  <title>${title}</title>\n </head>\n <body>\n  <h1>${title}</h1>\n  ${text}<br /><br />\n\n\n\n </body>\n</html>`;
  return reply(status, 'text/html; charset=UTF-8', body, extra);
}

function uniqueNames(keys: readonly string[]): string[] {
  const seen = new Set<string>();
  return keys.map((k, i) => {
    let name = keyName(k, i);
    if (seen.has(name)) name = `${name}-${i}`;
    seen.add(name);
    return name;
  });
}

export function metaData(inst: Instance, ver: string): Record<string, unknown> {
  const names = uniqueNames(inst.ssh_keys);
  const md: Record<string, unknown> = {
    uuid: instanceUuid(inst),
    meta: inst.openstack?.meta ?? inst.tags,
    public_keys: Object.fromEntries(inst.ssh_keys.map((k, i) => [names[i] ?? `key-${i}`, k])),
    keys: inst.ssh_keys.map((k, i) => ({ name: names[i] ?? `key-${i}`, type: 'ssh', data: k })),
    hostname: inst.hostname,
    name: inst.hostname.split('.')[0] ?? inst.hostname,
    launch_index: 0,
    availability_zone: inst.zone,
    project_id: inst.project,
  };
  if (atLeast(ver, '2016-06-30')) md['devices'] = [];
  return md;
}

function portId(inst: Instance, port: PortSpec): string {
  return stableUuid('openstack-port', `${inst.id}\0${port.mac}`);
}

export function networkData(inst: Instance): Record<string, unknown> {
  const links = inst.ports.map((p) => ({
    id: `tap${portId(inst, p).slice(0, 11)}`,
    vif_id: portId(inst, p),
    type: p.bridge === undefined ? 'tap' : 'bridge',
    mtu: 1500,
    ethernet_mac_address: p.mac,
  }));
  const networks: Array<Record<string, unknown>> = [];
  inst.ports.forEach((p, i) => {
    const link = links[i]?.id ?? '';
    const network_id = stableUuid('openstack-network', `${inst.project}\0${p.network ?? 'default'}`);
    networks.push({ id: `network${networks.length}`, link, type: 'ipv4_dhcp', ip_address: p.ipv4, network_id });
    if (p.ipv6 !== undefined) networks.push({ id: `network${networks.length}`, link, type: 'ipv6_dhcp', ip_address: p.ipv6, network_id });
  });
  return { links, networks, services: [] };
}

/** The files of version `ver`, in nova's listing order; undefined ones are absent. */
function files(inst: Instance, ver: string): Array<[string, (() => DialectResponse) | undefined]> {
  const json = (v: unknown) => () => reply(200, JSON_TYPE, JSON.stringify(v));
  return [
    ['meta_data.json', json(metaData(inst, ver))],
    ['user_data', inst.user_data === undefined ? undefined : () => reply(200, TEXT, inst.user_data ?? '')],
    ['password', atLeast(ver, '2013-04-04') ? () => reply(200, TEXT, '') : undefined],
    ['vendor_data.json', atLeast(ver, '2013-10-17') ? json(inst.openstack?.vendor_data ?? {}) : undefined],
    ['network_data.json', atLeast(ver, '2015-10-15') ? json(networkData(inst)) : undefined],
    ['vendor_data2.json', atLeast(ver, '2016-10-06') ? json(inst.openstack?.vendor_data2 ?? {}) : undefined],
  ];
}

function password(req: DialectRequest, ctx: DialectContext): DialectResponse {
  const current = ctx.guestData?.[PASSWORD_KEY] ?? '';
  if (req.method === 'GET' || req.method === 'HEAD') return reply(200, TEXT, current);
  if (req.method !== 'POST') return openstackError(405, { Allow: 'GET, HEAD, POST' });
  // Set once: a guest cannot overwrite it (an operator resets it).
  if (current !== '') return openstackError(409);
  const body = req.body ?? '';
  if (Buffer.byteLength(body, 'utf8') > MAX_PASSWORD_BYTES) return openstackError(400);
  return { ...reply(200, TEXT, ''), store: { key: PASSWORD_KEY, value: body } };
}

/** The tree a crawler of any OpenStack path walks. */
export const openstackCrawlRoot = (): string => `${PREFIX}/`;

/** Every target under /openstack a crawler may ask for (the pipeline pre-renders them); at most `max`. */
export function openstackTargets(_root: string, ctx: DialectContext, max: number): string[] {
  const out = [PREFIX, `${PREFIX}/`];
  for (const ver of [...VERSIONS, LATEST]) {
    out.push(`${PREFIX}/${ver}`, `${PREFIX}/${ver}/`);
    for (const [name, r] of files(ctx.instance, ver)) if (r !== undefined) out.push(`${PREFIX}/${ver}/${name}`);
  }
  return out.slice(0, max);
}

export function openstack(req: DialectRequest, ctx: DialectContext): DialectResponse {
  const q = parseQuery(req.query);
  if (!q.ok || q.params.size > 0) return openstackError(400);
  const inst = ctx.instance;
  const rest = req.path.slice(PREFIX.length).replace(/^\//, '');
  const parts = rest === '' ? [] : rest.replace(/\/$/, '').split('/');
  const [ver, file, ...more] = parts;
  // Every file but the password is the instance's alone: replayable (`fixed`).
  const readOnly = (r: () => DialectResponse): DialectResponse =>
    req.method === 'GET' || req.method === 'HEAD' ? { ...r(), fixed: true } : openstackError(405, { Allow: 'GET, HEAD' });

  if (ver === undefined) return readOnly(() => reply(200, TEXT, [...VERSIONS, LATEST].join('\n')));
  if (ver !== LATEST && !VERSIONS.includes(ver)) return openstackError(404);
  const available = files(inst, ver).filter((e): e is [string, () => DialectResponse] => e[1] !== undefined);
  if (file === undefined) return readOnly(() => reply(200, TEXT, available.map(([n]) => n).join('\n')));
  if (more.length > 0 || rest.endsWith('/')) return openstackError(404);
  if (file === 'password' && atLeast(ver, '2013-04-04')) return password(req, ctx);
  const hit = available.find(([n]) => n === file);
  return hit === undefined ? openstackError(404) : readOnly(hit[1]);
}
