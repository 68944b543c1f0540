// How many streams one upstream HTTP/2 connection may reset (RST_STREAM) in a burst and per second. Servers on
// nghttp2 (Node's among them) end a connection whose peer resets more than 1000 streams in a burst or 33 a
// second (their CVE-2023-44487 guard), and every other stream on it fails: without a budget, cancels from many
// clients, each within our own per-connection limits, meet on one upstream connection and cost everyone on it.
// A token bucket; time is passed in so the core needs no clock.

/** Well under nghttp2's 1000 / 33 s⁻¹, so our connections are never the flood. */
export const RESET_BURST = 200;
export const RESETS_PER_SECOND = 20;

export class ResetBudget {
  private tokens: number;
  private refilledAtMs: number;

  constructor(
    nowMs: number,
    private readonly burst = RESET_BURST,
    private readonly perSecond = RESETS_PER_SECOND,
  ) {
    this.tokens = burst;
    this.refilledAtMs = nowMs;
  }

  /** Takes one reset if the budget allows it now. */
  tryTake(nowMs: number): boolean {
    const elapsed = nowMs - this.refilledAtMs;
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.perSecond) / 1000);
      this.refilledAtMs = nowMs;
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
