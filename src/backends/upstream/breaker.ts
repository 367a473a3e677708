/**
 * A circuit breaker for one backend: after `failures` consecutive failures it opens and refuses
 * at once (no connection attempt) for `openMs`; then one probe is let through (half-open): its
 * success closes the circuit, its failure opens it again. Pure (the clock is injected).
 */
export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  readonly failures: number;
  readonly openMs: number;
}

export class Breaker {
  private fails = 0;
  private openedAt = 0;
  private probing = false;
  private state_: BreakerState = 'closed';
  /** Times the circuit opened. */
  opened = 0;

  constructor(
    private readonly opts: BreakerOptions,
    private readonly clock: () => number = Date.now,
  ) {}

  get state(): BreakerState {
    return this.state_;
  }

  /** May a request go to the backend now? (In half-open, only one at a time: the probe.) */
  allow(): boolean {
    if (this.state_ === 'closed') return true;
    if (this.state_ === 'open') {
      if (this.clock() - this.openedAt < this.opts.openMs) return false;
      this.state_ = 'half-open';
      this.probing = false;
    }
    if (this.probing) return false;
    this.probing = true;
    return true;
  }

  success(): void {
    this.fails = 0;
    this.probing = false;
    this.state_ = 'closed';
  }

  failure(): void {
    this.probing = false;
    this.fails++;
    if (this.state_ === 'half-open' || (this.state_ === 'closed' && this.fails >= this.opts.failures)) {
      this.opened++;
      this.state_ = 'open';
      this.openedAt = this.clock();
    }
  }
}
