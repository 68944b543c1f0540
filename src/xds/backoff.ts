// Reconnect delays for the ADS stream: exponential backoff with "full jitter", pure (random is injected).
//
// Full jitter (delay = random * min(max, base * 2^attempt)) spreads a fleet of sidecars that lost the same control
// server over the whole window instead of letting them reconnect in lockstep; it is what gRPC's connection
// backoff and Envoy's JitteredExponentialBackOffStrategy do for xDS streams.

export interface BackoffOptions {
  /** First window, in ms (Envoy's xDS default: 500 ms; ours: 250 ms). */
  readonly baseMs?: number;
  /** Largest window, in ms. */
  readonly maxMs?: number;
  /** Uniform in [0, 1); injected so tests are deterministic. */
  readonly random?: () => number;
}

export const DEFAULT_BACKOFF = { baseMs: 250, maxMs: 10_000 } as const;

export class Backoff {
  private readonly baseMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.baseMs = options.baseMs ?? DEFAULT_BACKOFF.baseMs;
    this.maxMs = options.maxMs ?? DEFAULT_BACKOFF.maxMs;
    this.random = options.random ?? Math.random;
    if (!(this.baseMs > 0) || !(this.maxMs >= this.baseMs)) throw new RangeError('backoff: need 0 < baseMs <= maxMs');
  }

  /** Failures since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** The upper bound of the next delay: base * 2^attempt, capped at max. */
  window(): number {
    // Cap the exponent so 2^attempt never overflows into Infinity after a very long outage.
    return Math.min(this.maxMs, this.baseMs * 2 ** Math.min(this.attempt, 30));
  }

  /** The delay before the next attempt, in [0, window()); advances the attempt count. */
  next(): number {
    // Clamp into [0, 1) so a sloppy random source cannot exceed the window.
    const r = Math.min(Math.max(this.random(), 0), 1 - 1e-9);
    const delay = Math.floor(r * this.window());
    this.attempt++;
    return delay;
  }

  /** Call once a stream has proven healthy (a response arrived): the next failure starts from base again. */
  reset(): void {
    this.attempt = 0;
  }
}
