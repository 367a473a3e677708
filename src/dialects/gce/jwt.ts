/** GCE identity tokens: RS256 JWTs signed with the daemon's key (a pure function of its inputs). */
import { sign } from 'node:crypto';
import type { Instance } from '../../model/instance.js';
import type { SigningKey } from '../types.js';
import { instanceName, instanceNumericId, projectNumber, serviceAccountEmail, serviceAccountUniqueId } from './ids.js';

export const ISSUER = 'https://accounts.google.com';
export const LIFETIME_S = 3600;

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v), 'utf8').toString('base64url');

export interface IdentityOptions {
  readonly audience: string;
  readonly full: boolean;
  readonly licenses: boolean;
  /** ms since the epoch. */
  readonly now: number;
  /** ms since the epoch: when the instance was registered. */
  readonly since: number;
}

/** The claims of an identity token, as GCE's `format=standard` / `format=full`. */
export function identityClaims(inst: Instance, o: IdentityOptions): Record<string, unknown> {
  const email = serviceAccountEmail(inst);
  const sub = serviceAccountUniqueId(email);
  const iat = Math.floor(o.now / 1000);
  const claims: Record<string, unknown> = {
    aud: o.audience,
    azp: sub,
    email,
    email_verified: true,
    exp: iat + LIFETIME_S,
    iat,
    iss: ISSUER,
    sub,
  };
  if (o.full) {
    claims['google'] = {
      compute_engine: {
        instance_creation_timestamp: Math.floor(o.since / 1000),
        instance_id: instanceNumericId(inst),
        instance_name: instanceName(inst),
        project_id: inst.project,
        project_number: Number(projectNumber(inst)),
        zone: inst.zone,
        ...(o.licenses ? { license_id: [] } : {}),
      },
    };
  }
  return claims;
}

export function signJwt(key: SigningKey, claims: Record<string, unknown>): string {
  const input = `${b64({ alg: 'RS256', kid: key.kid, typ: 'JWT' })}.${b64(claims)}`;
  return `${input}.${sign('sha256', Buffer.from(input, 'utf8'), key.privateKey).toString('base64url')}`;
}
