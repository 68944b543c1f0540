// The counters of one RBAC rule set, bound once (per filter build, or per TCP chain config), so a decision costs
// one field write: index i counts policy i's matches, the last counts "no policy matched". A match's decision
// follows from the action (ALLOW allows, DENY denies), so each position has one decision.
import { allows, NO_POLICY } from './match.js';
import type { RbacRulesModel } from './model.js';
import { NO_POLICY_LABEL, type AuthzSink, type CounterLike, type RbacDecision } from './stats.js';

export function ruleCounters(rules: RbacRulesModel, protocol: 'http' | 'tcp', shadow: boolean, sink: AuthzSink): CounterLike[] {
  const decision = (allowed: boolean): RbacDecision => (shadow ? (allowed ? 'shadow_allowed' : 'shadow_denied') : allowed ? 'allowed' : 'denied');
  const out = rules.policies.map((p) => sink.rbacCounter(protocol, decision(allows(rules.action, 0)), p.name));
  out.push(sink.rbacCounter(protocol, decision(allows(rules.action, NO_POLICY)), NO_POLICY_LABEL));
  return out;
}

/** The counter of a decision: `matched` is a policy index or NO_POLICY. */
export function counterOf(counters: readonly CounterLike[], matched: number): CounterLike {
  return counters[matched === NO_POLICY ? counters.length - 1 : matched]!;
}
