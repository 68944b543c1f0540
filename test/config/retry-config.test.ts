// Retry settings from the mesh config and from xDS reach the model the router reads: the budget on the cluster,
// the conditions as bits, the body buffer limit; conditions we do not act on are said, not silently taken.
import { describe, expect, it } from 'vitest';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { RETRY_ON } from '../../src/http/router/retry-policy.js';
import { compileForNode } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';

const node = { id: 'a-1', service: 'a', namespace: 'default', serviceAccount: 'a', appPort: 80, inboundPort: 15006, outboundPort: 15001 };

const res = (kind: 'Cluster' | 'RouteConfiguration', name: string, plain: object): RawResource => ({
  name, typeUrl: TYPE_URLS[kind], value: encodeMessage(MESSAGE_NAMES[kind], plain),
});

describe('retry config', () => {
  it('compiles a mesh retries block into the route policy and the cluster retry_budget', () => {
    const mesh = parseMeshConfig(`services:
  - name: a
    ports: [{ port: 80, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: b
    ports: [{ port: 80, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 2 }]
    policy: { mtls: DISABLE, retries: { attempts: 3, retryOn: [gateway-error, unavailable, 429], perTryTimeout: 300ms, budget: { percent: 25 }, hedge: true } }
`);
    const { snapshot, errors, warnings } = buildSnapshot(compileForNode(mesh, node), 'v');
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
    expect(snapshot.clusters.get('b.default:80')!.circuitBreakers.retryBudget).toEqual({ budgetPercent: 25, minRetryConcurrency: 3 });
    expect(snapshot.clusters.get('a.default:80')!.circuitBreakers.retryBudget).toBeUndefined();
    const routes = snapshot.routeConfigs.get('outbound')!;
    const vh = routes.virtualHosts.find((v) => v.domains.includes('b.default'))!;
    expect(vh.routes[0]!.action.hedgeOnPerTryTimeout).toBe(true);
    expect(vh.routes[0]!.action.retry).toMatchObject({
      numRetries: 3,
      perTryTimeoutMs: 300,
      conditions: RETRY_ON['gateway-error'] | RETRY_ON.unavailable | RETRY_ON['retriable-status-codes'],
      retriableStatusCodes: [429],
      bufferLimitBytes: 65_536,
    });
  });

  it('reads per_request_buffer_limit_bytes (route over virtual host) and warns for retry_on conditions it does not act on', () => {
    const rc = res('RouteConfiguration', 'r', {
      name: 'r',
      virtual_hosts: [
        {
          name: 'v',
          domains: ['*'],
          per_request_buffer_limit_bytes: { value: 1000 },
          retry_policy: { retry_on: '5xx,retriable-headers,bogus' },
          routes: [
            { match: { prefix: '/a' }, route: { cluster: 'c' } },
            { match: { prefix: '/' }, route: { cluster: 'c' }, per_request_buffer_limit_bytes: { value: 10 } },
          ],
        },
      ],
    });
    const { snapshot, errors, warnings } = buildSnapshot({ listeners: [], routes: [rc], clusters: [], endpoints: [] }, 'v');
    expect(errors).toEqual([]);
    const [a, all] = snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes;
    expect(a!.action.retry).toMatchObject({ bufferLimitBytes: 1000, conditions: RETRY_ON['5xx'], numRetries: 1 });
    expect(all!.action.retry!.bufferLimitBytes).toBe(10);
    expect(warnings.map((w) => w.message)).toEqual([
      'virtual_hosts[0].routes[0].route.retry_policy.retry_on: retriable-headers: accepted but not enforced yet (this condition never triggers a retry)',
      'virtual_hosts[0].routes[0].route.retry_policy.retry_on: bogus: accepted but not enforced yet (not a retry_on condition Envoy defines)',
      'virtual_hosts[0].routes[1].route.retry_policy.retry_on: retriable-headers: accepted but not enforced yet (this condition never triggers a retry)',
      'virtual_hosts[0].routes[1].route.retry_policy.retry_on: bogus: accepted but not enforced yet (not a retry_on condition Envoy defines)',
    ]);
  });

  it('refuses a retry budget above 100 percent, naming the field', () => {
    const c = res('Cluster', 'c', {
      name: 'c',
      type: 'STATIC',
      circuit_breakers: { thresholds: [{ retry_budget: { budget_percent: { value: 150 } } }] },
    });
    const { errors } = buildSnapshot({ listeners: [], routes: [], clusters: [c], endpoints: [] }, 'v');
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining('circuit_breakers.thresholds.retry_budget.budget_percent: 150 is not in 0..100')]);
  });
});
