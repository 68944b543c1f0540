// envoy.filters.network.rbac for the TCP proxy: the chain's RBAC filters decide once per connection, before the
// upstream is dialled. Counters are bound per filter config and sink the first time a config is used.
import { counterOf, ruleCounters } from './counters.js';
import { allows, firstMatch } from './match.js';
import type { AuthzRequest, RbacFilterModel } from './model.js';
import type { AuthzSink, CounterLike } from './stats.js';

interface Counters {
  readonly enforced: CounterLike[] | null;
  readonly shadow: CounterLike[] | null;
}

const COUNTERS = new WeakMap<AuthzSink, WeakMap<RbacFilterModel, Counters>>();

function countersOf(f: RbacFilterModel, sink: AuthzSink): Counters {
  let bySink = COUNTERS.get(sink);
  if (bySink === undefined) COUNTERS.set(sink, (bySink = new WeakMap()));
  let c = bySink.get(f);
  if (c === undefined) bySink.set(f, (c = { enforced: f.rules && ruleCounters(f.rules, 'tcp', false, sink), shadow: f.shadow && ruleCounters(f.shadow, 'tcp', true, sink) }));
  return c;
}

/** Runs the filters in order; false at the first that denies (the connection is then closed). */
export function connectionAllowed(filters: readonly RbacFilterModel[], conn: AuthzRequest, sink: AuthzSink): boolean {
  for (const f of filters) {
    const counters = countersOf(f, sink);
    if (f.shadow !== null) {
      const matched = firstMatch(f.shadow, conn);
      counterOf(counters.shadow!, matched).inc();
      if (!allows(f.shadow.action, matched)) sink.warn(`rbac shadow tcp ${f.statPrefix}`, { statPrefix: f.statPrefix, port: conn.localPort }, 'rbac: shadow rules would deny a connection (not enforced)');
    }
    if (f.rules === null) continue;
    const matched = firstMatch(f.rules, conn);
    counterOf(counters.enforced!, matched).inc();
    if (!allows(f.rules.action, matched)) return false;
  }
  return true;
}
