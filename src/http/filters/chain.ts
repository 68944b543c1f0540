// Builds a listener chain's filters from its model (HCM http_filters, the router left implied).
import type { HttpFilterModel } from '../../config/model.js';
import type { Random } from '../../upstream/types.js';
import { FaultFilter } from './fault.js';
import type { HttpFilter } from './filter.js';
import { LocalRateLimitFilter } from './local-ratelimit.js';

export function buildFilters(models: readonly HttpFilterModel[], random: Random): HttpFilter[] {
  return models.map((m) => (m.kind === 'fault' ? new FaultFilter(m.name, m.config, random) : new LocalRateLimitFilter(m.name, m.config, random)));
}
