/**
 * Held requests (long polls such as GCE's wait_for_change). A dialect that wants to wait returns
 * its current answer plus a `wait` (etag, timeout); the pipeline parks the request here. When the
 * registry reports a change for the instance, every request held for it is re-rendered: one whose
 * re-render has another etag (or no wait at all: refused, gone, an error) is answered with it; the
 * others keep waiting. At the timeout the request is answered with a fresh render. At most
 * `maxPerInstance` requests are held per instance; `hold` returns false beyond that.
 */
import type { DialectResponse } from '../dialects/types.js';
import type { RegistryChange } from '../identity/registry.js';

export interface Held {
  readonly instanceId: string;
  readonly etag: string;
  /** Renders the request again against the current registry (fresh time, fresh instance). */
  readonly rerender: () => DialectResponse;
  /** Sends the answer (called exactly once). */
  readonly finish: (res: DialectResponse) => void;
}

interface Entry extends Held {
  timer: NodeJS.Timeout;
}

/** The response without its `wait` (what goes to the client). */
export function final(res: DialectResponse): DialectResponse {
  if (res.wait === undefined) return res;
  const { wait: _wait, ...rest } = res;
  return rest;
}

export class LongPolls {
  private readonly held = new Map<string, Set<Entry>>();

  constructor(private readonly maxPerInstance: number) {}

  /** Parks `h` for up to `timeoutMs`. False (nothing held) when the instance has too many. */
  hold(h: Held, timeoutMs: number): { ok: true; cancel: () => void } | { ok: false } {
    let set = this.held.get(h.instanceId);
    if (set === undefined) {
      set = new Set();
      this.held.set(h.instanceId, set);
    }
    if (set.size >= this.maxPerInstance) return { ok: false };
    const entry: Entry = { ...h, timer: setTimeout(() => this.settle(entry, true), timeoutMs) };
    entry.timer.unref();
    set.add(entry);
    return { ok: true, cancel: () => this.drop(entry) };
  }

  /** Re-renders what is held for the changed and removed instances of a registry change. */
  onChange(change: RegistryChange): void {
    for (const id of [...change.changed, ...change.removed, ...change.added]) {
      for (const e of [...(this.held.get(id) ?? [])]) this.settle(e, false);
    }
  }

  /** Answers everything held now (shutdown). */
  releaseAll(): void {
    for (const set of [...this.held.values()]) for (const e of [...set]) this.settle(e, true);
  }

  /** Requests held now, for one instance or all. */
  count(instanceId?: string): number {
    if (instanceId !== undefined) return this.held.get(instanceId)?.size ?? 0;
    let n = 0;
    for (const s of this.held.values()) n += s.size;
    return n;
  }

  private settle(e: Entry, force: boolean): void {
    let res: DialectResponse;
    try {
      res = e.rerender();
    } catch {
      res = { status: 500, headers: { 'Content-Type': 'text/plain' }, body: 'Internal Server Error\n' };
    }
    if (!force && res.wait !== undefined && res.wait.etag === e.etag) return;
    this.drop(e);
    e.finish(final(res));
  }

  private drop(e: Entry): void {
    clearTimeout(e.timer);
    const set = this.held.get(e.instanceId);
    if (set === undefined) return;
    set.delete(e);
    if (set.size === 0) this.held.delete(e.instanceId);
  }
}
