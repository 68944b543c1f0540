// envoy.filters.http.local_ratelimit: a token bucket per config (the listener's, or a route's own through
// typed_per_filter_config). A request that finds the bucket empty gets 429 rate_limited (status configurable),
// unless the filter is only enabled, not enforced (then it is counted and goes on).
import type { LocalRateLimitModel, RouteModel } from '../../config/model.js';
import { rateLimited, type Reason } from '../../reasons.js';
import type { Random } from '../../upstream/types.js';
import type { FilteredRequest, HttpFilter } from './filter.js';

const PER_MILLION = 1_000_000;

/** Envoy's token bucket: starts full; every fill interval adds tokensPerFill, up to maxTokens. Refilled lazily. */
export class TokenBucket {
  private tokens: number;
  private nextFillMs: number;

  constructor(
    private readonly model: LocalRateLimitModel,
    nowMs: number,
  ) {
    this.tokens = model.maxTokens;
    this.nextFillMs = nowMs + model.fillIntervalMs;
  }

  tryTake(nowMs: number): boolean {
    if (nowMs >= this.nextFillMs) {
      const m = this.model;
      const fills = Math.floor((nowMs - this.nextFillMs) / m.fillIntervalMs) + 1;
      this.tokens = Math.min(m.maxTokens, this.tokens + fills * m.tokensPerFill);
      this.nextFillMs += fills * m.fillIntervalMs;
    }
    if (this.tokens === 0) return false;
    this.tokens--;
    return true;
  }
}

class LimitState {
  readonly bucket: TokenBucket;
  readonly reason: Reason;
  constructor(model: LocalRateLimitModel, nowMs: number) {
    this.bucket = new TokenBucket(model, nowMs);
    this.reason = rateLimited(model.status, model.grpcStatus);
  }
}

/** By config object, not by filter: a config update that keeps a config keeps its state (a bucket stays drained). */
const STATES = new WeakMap<LocalRateLimitModel, LimitState>();

export class LocalRateLimitFilter implements HttpFilter {
  constructor(
    private readonly name: string,
    private readonly listenerConfig: LocalRateLimitModel | null,
    private readonly random: Random,
    private readonly now: () => number = Date.now,
  ) {}

  onRequest(request: FilteredRequest, route: RouteModel): boolean {
    const override = route.filterConfigs?.get(this.name);
    const model = override?.kind === 'local_ratelimit' ? override.config : this.listenerConfig;
    if (model === null || !this.chance(model.enabledPerMillion)) return true;
    const nowMs = this.now();
    let state = STATES.get(model);
    if (state === undefined) {
      state = new LimitState(model, nowMs);
      STATES.set(model, state);
    }
    if (state.bucket.tryTake(nowMs) || !this.chance(model.enforcedPerMillion)) return true;
    request.localReply(state.reason);
    return false;
  }

  private chance(perMillion: number): boolean {
    return perMillion >= PER_MILLION || (perMillion > 0 && this.random() * PER_MILLION < perMillion);
  }
}
