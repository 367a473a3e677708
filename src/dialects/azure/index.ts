/**
 * The Azure Instance Metadata Service dialect (`/metadata/...`), as @azure/identity (MSAL) and
 * Azure's own agents speak it. A pure function of (request, context).
 *
 * Order of checks: path known (404) · X-Forwarded-For (400) · `Metadata: true` (400) · method
 * (405) · query: duplicates, unknown names (400) · api-version (400 with the newest versions,
 * except on /metadata/versions) · the endpoint's own rules. The per-instance rate limit (429) is
 * the pipeline's (limits.rate_per_s.azure); `azureRefusal` gives its answer.
 */
import type { Instance } from '../../model/instance.js';
import type { DialectContext, DialectRequest, DialectResponse } from '../types.js';
import { epochSeconds, parseQuery, stableUuid, unknownParams } from '../common.js';

export const PREFIX = '/metadata';
export const API_VERSIONS: readonly string[] = [
  '2017-03-01',
  '2017-04-02',
  '2017-08-01',
  '2017-10-01',
  '2017-12-01',
  '2018-02-01',
  '2018-04-02',
  '2018-10-01',
  '2019-02-01',
  '2019-03-11',
  '2019-04-30',
  '2019-06-01',
  '2019-06-04',
  '2019-08-01',
  '2019-08-15',
  '2019-11-01',
  '2020-06-01',
  '2020-07-15',
  '2020-09-01',
  '2020-10-01',
  '2020-12-01',
  '2021-01-01',
  '2021-02-01',
  '2021-03-01',
  '2021-05-01',
  '2021-10-01',
  '2021-11-01',
  '2021-11-15',
  '2021-12-13',
  '2022-02-01',
  '2022-03-01',
  '2022-07-01',
  '2022-08-01',
  '2023-07-01',
];
const NEWEST = API_VERSIONS.slice(-3).reverse();
const JSON_TYPE = 'application/json; charset=utf-8';
const TEXT = 'text/plain; charset=utf-8';

type Endpoint = 'versions' | 'instance' | 'token';
const PARAMS: Record<Endpoint, ReadonlySet<string>> = {
  versions: new Set(['format', 'api-version']),
  instance: new Set(['api-version', 'format']),
  token: new Set(['api-version', 'resource', 'client_id', 'object_id', 'msi_res_id', 'mi_res_id', 'bypass_cache']),
};

export function isAzurePath(path: string): boolean {
  return path === PREFIX || path.startsWith(`${PREFIX}/`);
}

export function vmId(inst: Instance): string {
  return inst.azure?.vm_id ?? stableUuid('azure-vm', inst.id);
}
export function subscriptionId(inst: Instance): string {
  return inst.azure?.subscription_id ?? stableUuid('azure-subscription', inst.project);
}
export function clientId(inst: Instance): string {
  return inst.azure?.client_id ?? stableUuid('azure-client', inst.id);
}

const SERVER = 'IMDS/150.870.65.1325';

function json(status: number, body: unknown, extra: Record<string, string> = {}): DialectResponse {
  return { status, headers: { 'Content-Type': JSON_TYPE, Server: SERVER, ...extra }, body: JSON.stringify(body) };
}
function text(body: string): DialectResponse {
  return { status: 200, headers: { 'Content-Type': TEXT, Server: SERVER }, body };
}
const err = (status: number, error: string, extra: Record<string, unknown> = {}): DialectResponse => json(status, { error, ...extra });
const oauthErr = (error_description: string): DialectResponse => json(400, { error: 'invalid_request', error_description });

/** 429 for the pipeline's rate limit, 503 for anything it cannot hold. */
export function azureRefusal(status: 429 | 503): DialectResponse {
  return err(status, status === 429 ? 'Too many requests' : 'Service unavailable');
}

/** The `/metadata/instance` document: Azure's shape, every leaf a string. */
export function instanceDocument(inst: Instance): Record<string, unknown> {
  const name = inst.hostname.split('.')[0] ?? inst.hostname;
  const rg = inst.azure?.resource_group ?? inst.project;
  const sub = subscriptionId(inst);
  const admin = inst.azure?.admin_username ?? 'azureuser';
  const tagsList = Object.entries(inst.tags).map(([k, v]) => ({ name: k, value: v }));
  return {
    compute: {
      azEnvironment: 'AzurePublicCloud',
      customData: '',
      isHostCompatibilityLayerVm: 'false',
      licenseType: '',
      location: inst.region,
      name,
      offer: '',
      osProfile: { adminUsername: admin, computerName: inst.hostname, disablePasswordAuthentication: 'true' },
      osType: 'Linux',
      placementGroupId: '',
      plan: { name: '', product: '', publisher: '' },
      platformFaultDomain: '0',
      platformUpdateDomain: '0',
      priority: '',
      provider: 'Microsoft.Compute',
      publicKeys: inst.ssh_keys.map((k) => ({ keyData: k, path: `/home/${admin}/.ssh/authorized_keys` })),
      publisher: '',
      resourceGroupName: rg,
      resourceId: `/subscriptions/${sub}/resourceGroups/${rg}/providers/Microsoft.Compute/virtualMachines/${name}`,
      securityProfile: { secureBootEnabled: 'false', virtualTpmEnabled: 'false' },
      sku: '',
      storageProfile: {
        imageReference: { id: '', offer: '', publisher: '', sku: inst.image, version: '' },
        osDisk: {
          caching: 'ReadWrite',
          createOption: 'FromImage',
          diskSizeGB: '',
          name: `${name}_OsDisk`,
          osType: 'Linux',
          writeAcceleratorEnabled: 'false',
        },
        dataDisks: [],
      },
      subscriptionId: sub,
      tags: Object.entries(inst.tags)
        .map(([k, v]) => `${k}:${v}`)
        .join(';'),
      tagsList,
      userData: inst.user_data === undefined ? '' : Buffer.from(inst.user_data, 'utf8').toString('base64'),
      version: '',
      vmId: vmId(inst),
      vmScaleSetName: '',
      vmSize: inst.type,
      zone: inst.zone,
    },
    network: {
      interface: inst.ports.map((p) => ({
        ipv4: { ipAddress: [{ privateIpAddress: p.ipv4, publicIpAddress: '' }], subnet: [] },
        ipv6: { ipAddress: p.ipv6 === undefined ? [] : [{ privateIpAddress: p.ipv6 }] },
        macAddress: p.mac.replace(/:/g, '').toUpperCase(),
      })),
    },
  };
}

/** Walks `segments` (object keys, array indices) into `doc`. */
function walk(doc: unknown, segments: readonly string[]): unknown {
  let node = doc;
  for (const s of segments) {
    if (Array.isArray(node)) {
      if (!/^(0|[1-9][0-9]{0,5})$/.test(s)) return undefined;
      node = node[Number(s)];
    } else if (typeof node === 'object' && node !== null && Object.hasOwn(node, s)) {
      node = (node as Record<string, unknown>)[s];
    } else return undefined;
  }
  return node;
}

function instance(ctx: DialectContext, sub: string, format: string): DialectResponse {
  const segments = sub === '' ? [] : sub.replace(/\/$/, '').split('/');
  if (segments.some((s) => s === '')) return err(404, 'Not found');
  const node = walk(instanceDocument(ctx.instance), segments);
  if (node === undefined) return err(404, 'Not found');
  if (typeof node === 'string') {
    if (format !== 'text') return err(400, 'Bad request. Leaf nodes require format=text. For more information refer to aka.ms/azureimds');
    return text(node);
  }
  if (format === 'text') {
    const keys = Array.isArray(node) ? node.map((_, i) => String(i)) : Object.keys(node as object);
    const isDir = (k: string): boolean => typeof walk(node, [k]) !== 'string';
    return text(keys.map((k) => (isDir(k) ? `${k}/` : k)).join('\n'));
  }
  return json(200, node);
}

function token(ctx: DialectContext, req: DialectRequest, p: ReadonlyMap<string, string>): DialectResponse {
  const resource = p.get('resource');
  if (resource === undefined || resource === '') return oauthErr('Required audience parameter not specified');
  if (resource.length > 2048 || /[\u0000-\u001f\u007f]/.test(resource)) return oauthErr('Invalid audience parameter');
  const tok = ctx.instance.azure?.token;
  const cid = clientId(ctx.instance);
  const asked = p.get('client_id');
  // Only the system-assigned identity (or this instance's own client id) exists here.
  if (
    tok === undefined ||
    (asked !== undefined && asked.toLowerCase() !== cid) ||
    p.has('object_id') ||
    p.has('msi_res_id') ||
    p.has('mi_res_id')
  ) {
    return oauthErr('Identity not found');
  }
  const now = Math.floor(req.now / 1000);
  const exp = epochSeconds(tok.expiration) ?? 0;
  const left = String(Math.max(0, exp - now));
  return json(200, {
    access_token: tok.access_token,
    client_id: cid,
    expires_in: left,
    expires_on: String(exp),
    ext_expires_in: left,
    not_before: String(Math.min(now, exp)),
    resource,
    token_type: 'Bearer',
  });
}

export function azure(req: DialectRequest, ctx: DialectContext): DialectResponse {
  const rest = req.path.slice(PREFIX.length);
  let endpoint: Endpoint;
  let sub = '';
  if (rest === '/versions') endpoint = 'versions';
  else if (rest === '/instance' || rest === '/instance/') endpoint = 'instance';
  else if (rest.startsWith('/instance/')) {
    endpoint = 'instance';
    sub = rest.slice('/instance/'.length);
  } else if (rest === '/identity/oauth2/token' || rest === '/identity/oauth2/token/') endpoint = 'token';
  else return err(404, 'Not found');

  if (req.headers['x-forwarded-for'] !== undefined)
    return err(400, 'Bad request. Request contains the header X-Forwarded-For, which is not allowed');
  if (req.headers['metadata']?.toLowerCase() !== 'true') {
    return endpoint === 'token'
      ? oauthErr('Required metadata header not specified')
      : err(400, 'Bad request. Required metadata header not specified');
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(405, { error: 'Method not allowed' }, { Allow: 'GET, HEAD' });

  const q = parseQuery(req.query);
  if (!q.ok)
    return err(
      400,
      q.reason === 'duplicate' ? `Bad request. Query parameter '${q.name}' is duplicated` : 'Bad request. Malformed query string',
    );
  const unknown = unknownParams(q.params, PARAMS[endpoint]);
  if (unknown.length > 0) return err(400, `Bad request. Query parameter '${(unknown[0] ?? '').slice(0, 64)}' is not supported`);
  const format = q.params.get('format') ?? 'json';
  if (format !== 'json' && format !== 'text') return err(400, 'Bad request. format must be json or text');
  if (endpoint === 'versions') return json(200, { apiVersions: API_VERSIONS });

  const version = q.params.get('api-version');
  if (version === undefined || version === '') {
    return err(400, 'Bad request. api-version was not specified in the request. For more information refer to aka.ms/azureimds', {
      'newest-versions': NEWEST,
    });
  }
  if (!API_VERSIONS.includes(version)) {
    return err(
      400,
      'Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds',
      { 'newest-versions': NEWEST },
    );
  }
  return endpoint === 'instance' ? instance(ctx, sub, format) : token(ctx, req, q.params);
}
