// envoy.filters.http.rbac: allows or denies a request by Envoy RBAC policies (src/authz/match.ts) on its peer,
// port, method, path, headers and JWT metadata. A denied request gets 403 unauthorized; shadow rules are only
// counted (and a would-be denial logged, rate-limited). Counters are bound here, once per chain build.
import type { RbacFilterModel } from '../../authz/model.js';
import { counterOf, ruleCounters } from '../../authz/counters.js';
import { allows, firstMatch, NO_POLICY } from '../../authz/match.js';
import { NO_POLICY_LABEL, type AuthzSink, type CounterLike } from '../../authz/stats.js';
import { REASONS } from '../../reasons.js';
import type { FilteredRequest, HttpFilter } from './filter.js';

export class RbacFilter implements HttpFilter {
  private readonly enforced: CounterLike[] | null;
  private readonly shadowed: CounterLike[] | null;
  /** The rate-limit key of the shadow-deny warning, made once: that path may be every request. */
  private readonly shadowWarnKey: string;

  constructor(
    private readonly name: string,
    private readonly model: RbacFilterModel,
    private readonly sink: AuthzSink,
  ) {
    this.enforced = model.rules === null ? null : ruleCounters(model.rules, 'http', false, sink);
    this.shadowed = model.shadow === null ? null : ruleCounters(model.shadow, 'http', true, sink);
    this.shadowWarnKey = `rbac shadow ${name}`;
  }

  onRequest(request: FilteredRequest): boolean {
    const shadow = this.model.shadow;
    if (shadow !== null) {
      const matched = firstMatch(shadow, request);
      counterOf(this.shadowed!, matched).inc();
      if (!allows(shadow.action, matched)) {
        this.sink.warn(this.shadowWarnKey, { filter: this.name, policy: matched === NO_POLICY ? NO_POLICY_LABEL : shadow.policies[matched]!.name, method: request.method }, 'rbac: shadow rules would deny a request (not enforced)');
      }
    }
    const rules = this.model.rules;
    if (rules === null) return true;
    const matched = firstMatch(rules, request);
    counterOf(this.enforced!, matched).inc();
    if (allows(rules.action, matched)) return true;
    request.localReply(REASONS.unauthorized);
    return false;
  }
}
