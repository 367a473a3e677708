/**
 * IMDSv2 session tokens, stateless: nothing is stored, a token carries its own expiry and proves
 * it with an HMAC.
 *
 *   token = base64url( version(1) | expiry ms since the epoch (uint64 BE, 8) | mac(32) )
 *   mac   = HMAC-SHA256(tokenKey, DOMAIN | version | expiry | instance id)
 *
 * The instance id is inside the MAC, so a token minted for one instance is invalid for every
 * other one; the domain string keeps these MACs apart from anything else made with the same key.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The one path that mints tokens (PUT only). */
export const TOKEN_PATH = '/latest/api/token';
/** Request header of the PUT (lower-case, as the pipeline hands headers over); echoed on the reply. */
export const TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';
/** Request header carrying the token on reads (lower-case). */
export const TOKEN_HEADER = 'x-aws-ec2-metadata-token';

export const MIN_TTL_S = 1;
export const MAX_TTL_S = 21600;

const VERSION = 1;
const DOMAIN = Buffer.from('linkgate/ec2-imds-token\0', 'utf8');
const MAC_BYTES = 32;
const TOKEN_BYTES = 1 + 8 + MAC_BYTES;
/** base64url, no padding, of TOKEN_BYTES bytes. */
const TOKEN_SHAPE = new RegExp(`^[A-Za-z0-9_-]{${Math.ceil((TOKEN_BYTES * 4) / 3)}}$`);

/**
 * The TTL header's value as seconds, or undefined when it is missing, not a plain decimal
 * integer, or outside 1..21600.
 */
export function parseTtl(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (!/^[0-9]{1,10}$/.test(text)) return undefined;
  const ttl = Number(text);
  return ttl >= MIN_TTL_S && ttl <= MAX_TTL_S ? ttl : undefined;
}

function mac(key: Buffer, instanceId: string, head: Buffer): Buffer {
  return createHmac('sha256', key).update(DOMAIN).update(head).update(instanceId, 'utf8').digest();
}

function head(expiresAt: number): Buffer {
  const b = Buffer.alloc(9);
  b.writeUInt8(VERSION, 0);
  b.writeBigUInt64BE(BigInt(expiresAt), 1);
  return b;
}

/** A token for `instanceId`, valid from `now` (ms) for `ttlSeconds`, and when it expires (ms since the epoch). */
export function mint(key: Buffer, instanceId: string, now: number, ttlSeconds: number): { token: string; expiresAt: number } {
  const expiresAt = Math.max(0, Math.floor(now)) + ttlSeconds * 1000;
  const h = head(expiresAt);
  return { token: Buffer.concat([h, mac(key, instanceId, h)]).toString('base64url'), expiresAt };
}

/** A token for `instanceId`, valid from `now` (ms) for `ttlSeconds`. */
export function mintToken(key: Buffer, instanceId: string, now: number, ttlSeconds: number): string {
  return mint(key, instanceId, now, ttlSeconds).token;
}

/** When `token` expires (ms since the epoch) if it was minted with `key` for `instanceId` and has not expired at `now`; else undefined. */
export function verifiedExpiry(key: Buffer, instanceId: string, token: string, now: number): number | undefined {
  if (!TOKEN_SHAPE.test(token)) return undefined;
  const raw = Buffer.from(token, 'base64url');
  if (raw.length !== TOKEN_BYTES || raw.readUInt8(0) !== VERSION) return undefined;
  const h = raw.subarray(0, 9);
  const expected = mac(key, instanceId, h);
  if (!timingSafeEqual(expected, raw.subarray(9))) return undefined;
  const expiresAt = Number(h.readBigUInt64BE(1));
  return now < expiresAt ? expiresAt : undefined;
}

/** True when `token` was minted with `key` for `instanceId` and has not expired at `now` (ms). */
export function verifyToken(key: Buffer, instanceId: string, token: string, now: number): boolean {
  return verifiedExpiry(key, instanceId, token, now) !== undefined;
}
