/**
 * Per-instance request rate limits: a token bucket per (dialect, instance id), refilled at
 * `rate` tokens a second up to `rate` (one second's burst). Keyed by instance id, never by
 * address, so guests cannot spend each other's budget.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly maxKeys = 65_536) {}

  /** True when a request may proceed now (`now` in ms); `rate` 0 means unlimited. */
  take(dialect: string, instanceId: string, rate: number, now: number): boolean {
    if (rate <= 0) return true;
    const key = `${dialect}\0${instanceId}`;
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= this.maxKeys) this.prune(now, rate);
      b = { tokens: rate, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets an instance (it was removed). */
  forget(instanceId: string): void {
    for (const k of this.buckets.keys()) if (k.endsWith(`\0${instanceId}`)) this.buckets.delete(k);
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Drops buckets that have refilled completely (they are the same as absent ones). */
  private prune(now: number, rate: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) / 1000) * rate >= rate) this.buckets.delete(k);
  }
}
