/** Jittered exponential backoff for the watcher's reconnects. */

/** How long the watcher waits between reconnect attempts. */
export interface BackoffOptions {
  /** The first wait, in ms. Default 200. */
  readonly initialMs?: number;
  /** The longest wait, in ms. Default 10 000. */
  readonly maxMs?: number;
  /** Growth per failed attempt. Default 2. */
  readonly multiplier?: number;
}

/**
 * Waits that double (by default) up to a cap, each drawn uniformly from the upper half
 * of its step ("equal jitter"), so a fleet of workers that lost the same server does
 * not come back in lockstep, yet none retries sooner than half the step.
 */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly multiplier: number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = options.initialMs ?? 200;
    this.maxMs = options.maxMs ?? 10_000;
    this.multiplier = options.multiplier ?? 2;
    if (!(this.initialMs > 0 && this.maxMs >= this.initialMs && this.multiplier >= 1)) {
      throw new RangeError("backoff needs 0 < initialMs <= maxMs and multiplier >= 1");
    }
  }

  /** The next wait in ms; each call counts as one more failed attempt. */
  next(): number {
    const step = Math.min(this.maxMs, this.initialMs * this.multiplier ** this.attempt);
    this.attempt += 1;
    return step / 2 + (this.random() * step) / 2;
  }

  /** Back to the first step (after a healthy connection). */
  reset(): void {
    this.attempt = 0;
  }
}
