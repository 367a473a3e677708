/**
 * The daemon's signing key (GCE identity tokens): RSA 2048, generated on first start and kept in
 * the state directory (`<state_dir>/signing-key.pem`, PKCS#8, mode 0600), so tokens stay
 * verifiable across restarts. The public half is published as a JWK on the admin API (/v1/keys).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPair, type JsonWebKey, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SigningKey } from '../dialects/types.js';

export const KEY_FILE = 'signing-key.pem';

export interface DaemonKey extends SigningKey {
  /** The public key as a JWK (kty, n, e) with kid, alg and use. */
  readonly jwk: JsonWebKey;
}

/** RFC 7638 thumbprint of an RSA public JWK, base64url. */
export function thumbprint(jwk: JsonWebKey): string {
  const canonical = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  return createHash('sha256').update(canonical).digest('base64url');
}

export function describeKey(privateKey: KeyObject): DaemonKey {
  const pub = createPublicKey(privateKey).export({ format: 'jwk' });
  const kid = thumbprint(pub);
  return { kid, privateKey, jwk: { kty: 'RSA', n: pub.n ?? '', e: pub.e ?? '', kid, alg: 'RS256', use: 'sig' } };
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}

/** Loads the key from `stateDir`, or generates and stores one there (atomically) when none exists. */
export async function loadOrCreateKey(stateDir: string): Promise<DaemonKey> {
  const file = join(stateDir, KEY_FILE);
  try {
    const pem = await readFile(file, 'utf8');
    const key = createPrivateKey(pem);
    if (key.asymmetricKeyType !== 'rsa') throw new Error(`${file} is not an RSA key`);
    return describeKey(key);
  } catch (e) {
    if (!isErrno(e, 'ENOENT')) throw e;
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const privateKey = await new Promise<KeyObject>((resolve, reject) =>
    generateKeyPair('rsa', { modulusLength: 2048 }, (err, _pub, priv) => (err ? reject(err) : resolve(priv))),
  );
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
  return describeKey(privateKey);
}
