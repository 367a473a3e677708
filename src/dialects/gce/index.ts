/**
 * The GCE metadata dialect (`/computeMetadata/...`), as gcp-metadata, google-auth and cloud-init's
 * GCE datasource speak it. A pure function of (request, context).
 *
 * Order of checks: X-Forwarded-For (403) · Metadata-Flavor (403) · method (405) · query (400) ·
 * path (404) · the node's own rules (token: 404 when none configured; identity: 400 without
 * audience). Every answer carries `Metadata-Flavor: Google`; every 200 an `ETag`.
 * `wait_for_change=true` answers at once when `last_etag` differs from the current ETag, and
 * otherwise returns a `wait` for the pipeline to hold (see WaitSpec).
 */
import type { DialectContext, DialectRequest, DialectResponse } from '../types.js';
import { epochSeconds, parseBool, parseQuery, shortHash, unknownParams } from '../common.js';
import { identityClaims, signJwt } from './jwt.js';
import { flatText, leafText, listing, resolve, toJson, treeFor, type Node } from './tree.js';

export { buildTree, camel, resolve, toJson, treeFor } from './tree.js';
export { instanceName, instanceNumericId, projectNumber, serviceAccountEmail, serviceAccountUniqueId } from './ids.js';
export { ISSUER, identityClaims, signJwt } from './jwt.js';

export const PREFIX = '/computeMetadata';
export const TEXT = 'application/text';
export const JSON_TYPE = 'application/json';
/** Longest wait_for_change a guest may ask for, and the wait when it names none, in seconds. */
export const MAX_TIMEOUT_S = 3600;
export const DEFAULT_TIMEOUT_S = 300;

const KNOWN = new Set(['alt', 'recursive', 'wait_for_change', 'last_etag', 'timeout_sec', 'audience', 'format', 'licenses', 'scopes']);

export function isGcePath(path: string): boolean {
  return path === PREFIX || path.startsWith(`${PREFIX}/`);
}

function base(status: number, type: string, body: string, extra: Record<string, string> = {}): DialectResponse {
  return {
    status,
    headers: {
      'Content-Type': type,
      'Metadata-Flavor': 'Google',
      Server: 'Metadata Server for VM',
      'X-XSS-Protection': '0',
      'X-Frame-Options': 'SAMEORIGIN',
      ...extra,
    },
    body,
  };
}

function ok(type: string, body: string): DialectResponse {
  return base(200, type, body, { ETag: shortHash(`${type}\n${body}`) });
}

const escapeHtml = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** GCE's error page style. */
function error(status: number, reason: string, detail: string, extra: Record<string, string> = {}): DialectResponse {
  const body =
    `<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error ${status} (${reason})!!1</title>\n` +
    `  <p><b>${status}.</b> <ins>That\u2019s an error.</ins>\n  <p>${escapeHtml(detail)}  <ins>That\u2019s all we know.</ins>\n`;
  return base(status, 'text/html; charset=UTF-8', body, extra);
}

function badRequest(detail: string): DialectResponse {
  return error(400, 'Bad Request', detail);
}

/** 503 for a long poll over the per-instance bound; 429 when rate limited. */
export function gceRefusal(status: 429 | 503): DialectResponse {
  return error(
    status,
    status === 429 ? 'Too Many Requests' : 'Service Unavailable',
    'Too many pending requests for this instance; try again later.',
  );
}

interface Opts {
  readonly alt: 'json' | 'text' | undefined;
  readonly recursive: boolean;
  readonly wait: boolean;
  readonly lastEtag: string | undefined;
  readonly timeoutS: number;
  readonly params: ReadonlyMap<string, string>;
}

function options(query: string): Opts | DialectResponse {
  const q = parseQuery(query);
  if (!q.ok) return badRequest(q.reason === 'duplicate' ? `Query parameter ${q.name} given more than once.` : 'Malformed query string.');
  const p = q.params;
  const unknown = unknownParams(p, KNOWN);
  if (unknown.length > 0) return badRequest(`Unknown query parameter ${unknown[0] ?? ''}.`);
  const flag = (name: string): boolean | DialectResponse => {
    const v = p.get(name);
    if (v === undefined) return false;
    const b = parseBool(v);
    return b === undefined ? badRequest(`Invalid value for ${name}: must be true or false.`) : b;
  };
  const recursive = flag('recursive');
  if (typeof recursive !== 'boolean') return recursive;
  const wait = flag('wait_for_change');
  if (typeof wait !== 'boolean') return wait;
  const altRaw = p.get('alt');
  if (altRaw !== undefined && altRaw !== 'json' && altRaw !== 'text') return badRequest('Invalid value for alt: must be json or text.');
  const lastEtag = p.get('last_etag');
  if (lastEtag !== undefined && !/^[0-9A-Za-z]{1,64}$/.test(lastEtag)) return badRequest('Invalid value for last_etag.');
  const t = p.get('timeout_sec');
  if (t !== undefined && (!/^[0-9]{1,7}$/.test(t) || Number(t) < 1 || Number(t) > MAX_TIMEOUT_S)) {
    return badRequest(`Invalid value for timeout_sec: must be an integer from 1 to ${MAX_TIMEOUT_S}.`);
  }
  return { alt: altRaw, recursive, wait, lastEtag, timeoutS: t === undefined ? DEFAULT_TIMEOUT_S : Number(t), params: p };
}

function token(ctx: DialectContext, now: number): DialectResponse {
  const tok = ctx.instance.gce?.token;
  if (tok === undefined) return error(404, 'Not Found', 'No token is configured for this service account.');
  const exp = epochSeconds(tok.expiration) ?? 0;
  const body = JSON.stringify({
    access_token: tok.access_token,
    expires_in: Math.max(0, exp - Math.floor(now / 1000)),
    token_type: 'Bearer',
  });
  return ok(JSON_TYPE, body);
}

function identity(req: DialectRequest, ctx: DialectContext, o: Opts): DialectResponse {
  const audience = o.params.get('audience');
  if (audience === undefined || audience === '') return badRequest('non-empty audience parameter required');
  if (audience.length > 2048 || /[\u0000-\u001f\u007f]/.test(audience)) return badRequest('Invalid value for audience.');
  const format = o.params.get('format') ?? 'standard';
  if (format !== 'standard' && format !== 'full') return badRequest('Invalid value for format: must be standard or full.');
  const licenses = o.params.get('licenses');
  const lic = licenses === undefined ? false : parseBool(licenses);
  if (lic === undefined) return badRequest('Invalid value for licenses: must be TRUE or FALSE.');
  if (ctx.signingKey === undefined) return error(503, 'Service Unavailable', 'Identity tokens are not available on this host.');
  const claims = identityClaims(ctx.instance, { audience, full: format === 'full', licenses: lic, now: req.now, since: ctx.since });
  return ok(TEXT, signJwt(ctx.signingKey, claims));
}

function renderNode(node: Exclude<Node, { kind: 'special' }>, o: Opts): DialectResponse {
  if (node.kind === 'dir') {
    if (o.recursive) return o.alt === 'text' ? ok(TEXT, flatText(node)) : ok(JSON_TYPE, toJson(node) ?? '{}');
    return o.alt === 'json'
      ? ok(JSON_TYPE, JSON.stringify([...node.entries].map(([k, v]) => (v.kind === 'dir' ? `${k}/` : k))))
      : ok(TEXT, listing(node));
  }
  if (node.kind === 'json') return ok(JSON_TYPE, leafText(node));
  return o.alt === 'json' ? ok(JSON_TYPE, toJson(node) ?? 'null') : ok(TEXT, leafText(node));
}

export function gce(req: DialectRequest, ctx: DialectContext): DialectResponse {
  if (req.headers['x-forwarded-for'] !== undefined)
    return error(403, 'Forbidden', 'Request had an X-Forwarded-For header and was rejected.');
  const flavor = req.headers['metadata-flavor'];
  const legacy = req.headers['x-google-metadata-request'];
  if (flavor !== 'Google' && legacy?.toLowerCase() !== 'true') {
    return error(
      403,
      'Forbidden',
      `Your client does not have permission to get URL ${req.path} from this server. Missing Metadata-Flavor:Google header.`,
    );
  }
  if (req.method !== 'GET' && req.method !== 'HEAD')
    return error(405, 'Method Not Allowed', `Method ${req.method} is not allowed.`, { Allow: 'GET, HEAD' });
  const o = options(req.query);
  if ('status' in o) return o;

  const node = resolve(treeFor(ctx.instance), req.path.slice(PREFIX.length + 1));
  if (node === undefined) return error(404, 'Not Found', `The requested URL ${req.path} was not found on this server.`);
  if (node.kind === 'special') {
    if (o.wait) return badRequest(`wait_for_change is not supported on ${node.name}.`);
    return node.name === 'token' ? token(ctx, req.now) : identity(req, ctx, o);
  }
  const res = renderNode(node, o);
  if (!o.wait) return { ...res, fixed: true };
  const etag = res.headers['ETag'] ?? '';
  // Changed since the version the guest has: answer now. Otherwise hold until it changes.
  if (o.lastEtag !== undefined && o.lastEtag !== etag) return res;
  return { ...res, wait: { etag: o.lastEtag ?? etag, timeoutMs: o.timeoutS * 1000 } };
}
