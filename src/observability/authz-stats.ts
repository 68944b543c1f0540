// The proxy's AuthzSink: RBAC and JWT counters in ProxyMetrics, and warnings to the process log at most once per
// interval per kind, so a client sending bad tokens in a loop cannot flood the log.
import type { Logger } from 'pino';
import { NO_POLICY_LABEL, type AuthzSink, type CounterLike, type JwtResult, type RbacDecision } from '../authz/stats.js';
import type { ProxyMetrics } from './metrics.js';

/** Distinct policy (or provider) label values kept; the rest count under "other", so renames cannot grow series for ever. */
export const MAX_AUTHZ_LABELS = 1000;
const WARN_INTERVAL_MS = 10_000;
/** Warning kinds remembered for rate limiting; the key set is bounded by config, this bounds it anyway. */
const MAX_WARN_KEYS = 1000;

interface WarnState {
  lastMs: number;
  suppressed: number;
}

export class AuthzStats implements AuthzSink {
  private readonly labels = new Set<string>();
  private readonly warned = new Map<string, WarnState>();

  constructor(
    private readonly metrics: ProxyMetrics,
    private readonly logger: Logger | null,
    private readonly now: () => number = Date.now,
  ) {}

  private bounded(label: string): string {
    if (label === NO_POLICY_LABEL || this.labels.has(label)) return label;
    if (this.labels.size >= MAX_AUTHZ_LABELS) return 'other';
    this.labels.add(label);
    return label;
  }

  rbacCounter(protocol: 'http' | 'tcp', decision: RbacDecision, policy: string): CounterLike {
    return this.metrics.rbacDecisions.cell(protocol, decision, this.bounded(policy));
  }

  jwtCounter(provider: string, result: JwtResult): CounterLike {
    return this.metrics.jwtAuthn.cell(this.bounded(provider), result);
  }

  jwksFetch(source: string, ok: boolean, detail: string): void {
    this.metrics.jwksFetches.inc({ result: ok ? 'success' : 'failure' });
    if (!ok) this.warn(`jwks ${source}`, { source, error: detail }, 'jwt_authn: loading the JWKS failed; tokens of its provider are refused until a load succeeds');
  }

  warn(key: string, fields: Record<string, unknown>, message: string): void {
    if (this.logger === null) return;
    const nowMs = this.now();
    let s = this.warned.get(key);
    if (s === undefined) {
      if (this.warned.size >= MAX_WARN_KEYS) this.warned.clear();
      s = { lastMs: -Infinity, suppressed: 0 };
      this.warned.set(key, s);
    }
    if (nowMs - s.lastMs < WARN_INTERVAL_MS) {
      s.suppressed++;
      return;
    }
    const suppressed = s.suppressed;
    s.lastMs = nowMs;
    s.suppressed = 0;
    this.logger.warn(suppressed > 0 ? { ...fields, suppressedSinceLast: suppressed } : fields, message);
  }
}
