// Builds a listener chain's filters from its model (HCM http_filters, the router left implied).
import type { AuthzSink } from '../../authz/stats.js';
import type { HttpFilterModel } from '../../config/model.js';
import type { Random } from '../../upstream/types.js';
import { FaultFilter } from './fault.js';
import type { HttpFilter } from './filter.js';
import { JwtAuthnFilter } from './jwt-authn.js';
import { LocalRateLimitFilter } from './local-ratelimit.js';
import { RbacFilter } from './rbac.js';

function buildFilter(m: HttpFilterModel, random: Random, sink: AuthzSink): HttpFilter {
  switch (m.kind) {
    case 'fault':
      return new FaultFilter(m.name, m.config, random);
    case 'local_ratelimit':
      return new LocalRateLimitFilter(m.name, m.config, random);
    case 'rbac':
      return new RbacFilter(m.name, m.config, sink);
    case 'jwt_authn':
      return new JwtAuthnFilter(m.name, m.config, sink);
  }
}

export function buildFilters(models: readonly HttpFilterModel[], random: Random, sink: AuthzSink): HttpFilter[] {
  return models.map((m) => buildFilter(m, random, sink));
}
