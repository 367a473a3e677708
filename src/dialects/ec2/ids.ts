/**
 * EC2-shaped identifiers derived from the instance model, stable across restarts and hosts
 * (a hash of the model's own fields, never random, never time).
 */
import { createHash } from 'node:crypto';

function hex(input: string, n: number): string {
  return createHash('sha256').update(input, 'utf8').digest('hex').slice(0, n);
}

/** `eni-` + 17 hex, one per (instance, NIC). */
export function interfaceId(instanceId: string, mac: string): string {
  return `eni-${hex(`eni\0${instanceId}\0${mac}`, 17)}`;
}

/** `r-` + 17 hex, one per instance. */
export function reservationId(instanceId: string): string {
  return `r-${hex(`reservation\0${instanceId}`, 17)}`;
}

/** `AIPA` + 17 upper-case characters, one per (instance, role), like an instance profile id. */
export function instanceProfileId(instanceId: string, role: string): string {
  return `AIPA${hex(`profile\0${instanceId}\0${role}`, 17).toUpperCase()}`;
}

/** ms since the epoch → `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds), as EC2 writes times. */
export function isoSeconds(ms: number): string {
  const d = new Date(ms);
  // An out-of-range time must not throw inside a request: fall back to the epoch.
  return `${(Number.isNaN(d.getTime()) ? new Date(0) : d).toISOString().slice(0, 19)}Z`;
}
