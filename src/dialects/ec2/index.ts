/**
 * The EC2 instance metadata dialect (IMDSv1 and IMDSv2), as cloud-init, botocore and the AWS
 * SDKs speak it. A pure function of (request, context): no I/O, no clock but `req.now`.
 *
 * Order of checks: the token path (PUT mints, anything else 405) · method (GET/HEAD, else 405) ·
 * session token (401) · path (404).
 */
import type { DialectContext, DialectRequest, DialectResponse } from '../types.js';
import { TOKEN_HEADER, TOKEN_PATH, TTL_HEADER, mint, parseTtl, verifiedExpiry } from './token.js';
import { TEXT, render, resolve, targetsUnder, treeFor } from './tree.js';
import { isVersion } from './versions.js';

export { MAX_TTL_S, MIN_TTL_S, TOKEN_PATH, mintToken, verifyToken } from './token.js';
export { VERSIONS } from './versions.js';

/** Response header carrying the granted TTL on the token PUT, spelled as AWS documents it. */
export const TTL_RESPONSE_HEADER = 'X-aws-ec2-metadata-token-ttl-seconds';

const SERVER = 'EC2ws';

/** True for the paths this dialect answers: `/`, `/latest[/...]`, `/<version>[/...]`. */
export function isEc2Path(path: string): boolean {
  if (path === '/') return true;
  if (!path.startsWith('/')) return false;
  const end = path.indexOf('/', 1);
  return isVersion(path.slice(1, end === -1 ? undefined : end));
}

function reply(status: number, body: string, headers: Record<string, string> = {}): DialectResponse {
  return { status, headers: { 'Content-Type': TEXT, ...headers, Server: SERVER }, body };
}

function methodNotAllowed(allow: string): DialectResponse {
  return reply(405, 'Method Not Allowed', { Allow: allow });
}

function putToken(req: DialectRequest, ctx: DialectContext): DialectResponse {
  // AWS refuses token requests that went through a proxy: they must come from the guest itself.
  if (req.headers['x-forwarded-for'] !== undefined) return reply(403, 'Forbidden');
  const ttl = parseTtl(req.headers[TTL_HEADER]);
  if (ttl === undefined) return reply(400, 'Bad Request');
  const { token, expiresAt } = mint(ctx.tokenKey, ctx.instance.id, req.now, ttl);
  return {
    ...reply(200, token, { [TTL_RESPONSE_HEADER]: String(ttl) }),
    ipTtl: ctx.ec2.hop_limit,
    grant: { token, expiresAt },
  };
}

/** `ok` when the read may proceed (with the token it proved, if any), else the 401. */
function authorize(
  req: DialectRequest,
  ctx: DialectContext,
): { ok: true; grant?: DialectResponse['grant'] } | { ok: false; refusal: DialectResponse } {
  const token = req.headers[TOKEN_HEADER];
  if (token === undefined) {
    return ctx.ec2.tokens === 'required' ? { ok: false, refusal: reply(401, 'Unauthorized') } : { ok: true };
  }
  // A token that is present but wrong is refused even when tokens are optional, as AWS does.
  const t = token.trim();
  const expiresAt = verifiedExpiry(ctx.tokenKey, ctx.instance.id, t, req.now);
  if (expiresAt === undefined) return { ok: false, refusal: reply(401, 'Unauthorized') };
  return { ok: true, grant: { token: t, expiresAt } };
}

/** The tree a crawler of `path` walks: its version, `/<version>/`; undefined for the token path or a path outside a version. */
export function ec2CrawlRoot(path: string): string | undefined {
  const end = path.indexOf('/', 1);
  return end < 0 || path === TOKEN_PATH ? undefined : path.slice(0, end + 1);
}

/** What a crawler of `root` (see ec2CrawlRoot) asks for: the root and everything under it (the pipeline pre-renders them). */
export function ec2Targets(root: string, ctx: DialectContext, max: number): string[] {
  return targetsUnder(treeFor(ctx.instance), root, max);
}

export function ec2(req: DialectRequest, ctx: DialectContext): DialectResponse {
  if (req.path === TOKEN_PATH) {
    return req.method === 'PUT' ? putToken(req, ctx) : methodNotAllowed('PUT');
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return methodNotAllowed('GET, HEAD');

  const auth = authorize(req, ctx);
  if (!auth.ok) return auth.refusal;
  const grant = auth.grant !== undefined ? { grant: auth.grant } : {};

  const node = resolve(treeFor(ctx.instance), req.path);
  // With a token, the answer is the token-less one (optional mode) plus the grant: the pipeline caches it
  // only when tokens are optional, under the token-less key, and lets the loop check the token.
  if (node === undefined) return { ...reply(404, 'Not Found'), fixed: true, ...grant };
  const { type, body } = render(node, { port: ctx.port, now: req.now, since: ctx.since });
  // Leaves that read the clock (iam info, credentials) are not replayed; those of the port or the
  // registration time are (the cache is per binding and forgets a changed instance).
  return { ...reply(200, body, { 'Content-Type': type }), fixed: node.kind === 'dir' || node.clocked !== true, ...grant };
}
