/**
 * JSON Merge Patch (RFC 7396): what `PATCH /v1/instances/{id}` applies to the stored instance
 * before it is validated again as a whole. Pure; inputs are never modified.
 */
import { isObject } from './checks.js';

/**
 * `target` patched with `patch`: an object patch merges member by member (a `null` member
 * removes it, an object member merges recursively); anything else (array, string, number, null)
 * replaces the target whole.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}
