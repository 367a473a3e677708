/**
 * Small helpers the dialects share: stable derived identifiers, query string parsing that refuses
 * duplicates, SSH key names, per-instance memoization. Pure; no I/O.
 */
import { createHash } from 'node:crypto';
import type { Instance } from '../model/instance.js';

function digest(domain: string, input: string): Buffer {
  return createHash('sha256').update(`linkgate/${domain}\0`, 'utf8').update(input, 'utf8').digest();
}

/**
 * A stable decimal id of `digits` digits (no leading zero) from `input`, e.g. a GCE instance id
 * (19 digits fits a signed 64-bit integer) or a project number (12 digits).
 */
export function numericId(domain: string, input: string, digits: number): string {
  const h = digest(domain, input);
  const low = 10n ** BigInt(digits - 1);
  const span = 10n ** BigInt(digits) - low;
  return (low + ((h.readBigUInt64BE(0) * 2n ** 64n + h.readBigUInt64BE(8)) % span)).toString();
}

/** A stable RFC 4122 UUID (version 5 layout, variant 10) from `input`, lower-case. */
export function stableUuid(domain: string, input: string): string {
  const b = digest(domain, input).subarray(0, 16);
  b[6] = ((b[6] ?? 0) & 0x0f) | 0x50;
  b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** `n` hex characters of a hash of `input` (ETags and the like). */
export function shortHash(input: string, n = 16): string {
  return createHash('sha256').update(input, 'utf8').digest('hex').slice(0, n);
}

/** `ssh-ed25519 AAAA... alice@laptop` → `alice@laptop`; no comment → `key-<n>`. */
export function keyName(key: string, index: number): string {
  const comment = key.trim().split(/\s+/).slice(2).join(' ');
  return comment !== '' ? comment : `key-${index}`;
}

/**
 * `build`, computed once per instance object (a dialect's tree, built on first use). Keyed on the
 * object: the model is immutable, so a changed instance is a new object and gets a new result
 * (the old one goes with the old object).
 */
export function perInstance<T>(build: (inst: Instance) => T): (inst: Instance) => T {
  const cache = new WeakMap<Instance, T>();
  return (inst) => {
    let value = cache.get(inst);
    if (value === undefined) {
      value = build(inst);
      cache.set(inst, value);
    }
    return value;
  };
}

export type Query =
  | { readonly ok: true; readonly params: ReadonlyMap<string, string> }
  | { readonly ok: false; readonly reason: 'duplicate' | 'malformed'; readonly name: string };

/**
 * `a=1&b=2` → {a: '1', b: '2'}; `a` alone is `a=''`; `+` is a space. A name given twice, or a
 * percent-escape that does not decode, is refused (never "first wins" or "last wins").
 */
export function parseQuery(raw: string): Query {
  const params = new Map<string, string>();
  if (raw === '') return { ok: true, params };
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '));
      value = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, ' '));
    } catch {
      return { ok: false, reason: 'malformed', name: part.slice(0, 64) };
    }
    if (params.has(name)) return { ok: false, reason: 'duplicate', name };
    params.set(name, value);
  }
  return { ok: true, params };
}

/** The names in `params` that are not in `known`. */
export function unknownParams(params: ReadonlyMap<string, string>, known: ReadonlySet<string>): string[] {
  return [...params.keys()].filter((k) => !known.has(k));
}

/** 'true'/'false' in any case (GCE clients send `True`), or undefined for anything else. */
export function parseBool(v: string): boolean | undefined {
  const l = v.toLowerCase();
  return l === 'true' ? true : l === 'false' ? false : undefined;
}

/** Seconds since the epoch of an ISO-8601 time, or undefined. */
export function epochSeconds(iso: string): number | undefined {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? undefined : Math.floor(t / 1000);
}
