// Issue 13: every duration an xDS resource carries works as written, is clamped to the longest Node timer with a
// warning naming the field (Envoy accepts longer ones, so refusing them would refuse config Envoy takes), or,
// when Envoy refuses it too (negative, malformed, out of Duration's range, 0 where it must be above 0), is refused.
import { describe, expect, it } from 'vitest';
import { buildSnapshot, TranslationCache, type RawResource } from '../../src/config/snapshot.js';
import { anyField, encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { MAX_TIMER_MS } from '../../src/config/values.js';

const res = (kind: keyof typeof MESSAGE_NAMES & keyof typeof TYPE_URLS, name: string, plain: object): RawResource => ({
  name, typeUrl: TYPE_URLS[kind], value: encodeMessage(MESSAGE_NAMES[kind], plain),
});
const cluster = (extra: object) => res('Cluster', 'c', { name: 'c', ...extra });
const routeConfig = (route: object, retry?: object, name = 'r') =>
  res('RouteConfiguration', name, { name, virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c', ...route, ...(retry ? { retry_policy: retry } : {}) } }] }] });
const tcpListener = (tcp: object) =>
  res('Listener', 'l', {
    name: 'l',
    address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
    filter_chains: [{ filters: [{ name: 'tcp', typed_config: anyField(MESSAGE_NAMES.TcpProxy, { stat_prefix: 't', cluster: 'c', ...tcp }) }] }],
  });

function build(r: { listeners?: RawResource[]; routes?: RawResource[]; clusters?: RawResource[] }, cache?: TranslationCache) {
  return buildSnapshot({ listeners: r.listeners ?? [], routes: r.routes ?? [], clusters: r.clusters ?? [], endpoints: [] }, 'v', cache);
}

const DAYS_30 = { seconds: 30 * 86_400 };

describe('xDS durations', () => {
  it('clamps a duration longer than a timer holds to 2147483647 ms, with a warning naming the resource and field', () => {
    // Before: 30 days became 2,592,000,000 ms, which setTimeout and socket.setTimeout turn into 1 ms.
    const { snapshot, errors, warnings } = build({
      clusters: [cluster({ connect_timeout: DAYS_30, outlier_detection: { interval: DAYS_30, base_ejection_time: { seconds: 315_576_000_000 } } })],
      routes: [routeConfig({ timeout: DAYS_30, idle_timeout: { seconds: 2_147_483, nanos: 648_000_000 } }, { per_try_timeout: DAYS_30, retry_back_off: { base_interval: DAYS_30 } })],
      listeners: [tcpListener({ idle_timeout: DAYS_30 })],
    });
    expect(errors).toEqual([]);
    const c = snapshot.clusters.get('c')!;
    expect(c.connectTimeoutMs).toBe(MAX_TIMER_MS);
    expect(c.outlierDetection).toMatchObject({ intervalMs: MAX_TIMER_MS, baseEjectionTimeMs: MAX_TIMER_MS });
    const action = snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!.action;
    expect(action).toMatchObject({ timeoutMs: MAX_TIMER_MS, idleTimeoutMs: MAX_TIMER_MS });
    // The default max backoff (10 × base) stays within a timer too.
    expect(action.retry).toMatchObject({ perTryTimeoutMs: MAX_TIMER_MS, backoffBaseMs: MAX_TIMER_MS, backoffMaxMs: MAX_TIMER_MS });
    expect(snapshot.listeners.get('l')!.tcp!.idleTimeoutMs).toBe(MAX_TIMER_MS);
    const using = 'is longer than a timer can hold; using 2147483647 ms (about 24.8 days)';
    expect(warnings.filter((w) => w.message.includes('not enforced yet'))).toEqual([]);
    expect(warnings.filter((w) => !w.message.includes('not enforced yet'))).toEqual([
      { typeUrl: TYPE_URLS.Listener, name: 'l', message: `filter_chains[0].filters[0].typed_config.idle_timeout: 2592000s ${using}` },
      { typeUrl: TYPE_URLS.RouteConfiguration, name: 'r', message: `virtual_hosts[0].routes[0].route.retry_policy.retry_back_off.base_interval: 2592000s ${using}` },
      { typeUrl: TYPE_URLS.RouteConfiguration, name: 'r', message: `virtual_hosts[0].routes[0].route.retry_policy.per_try_timeout: 2592000s ${using}` },
      { typeUrl: TYPE_URLS.RouteConfiguration, name: 'r', message: `virtual_hosts[0].routes[0].route.timeout: 2592000s ${using}` },
      { typeUrl: TYPE_URLS.RouteConfiguration, name: 'r', message: `virtual_hosts[0].routes[0].route.idle_timeout: 2147483s 648000000ns ${using}` },
      { typeUrl: TYPE_URLS.Cluster, name: 'c', message: `connect_timeout: 2592000s ${using}` },
      { typeUrl: TYPE_URLS.Cluster, name: 'c', message: `outlier_detection.interval: 2592000s ${using}` },
      { typeUrl: TYPE_URLS.Cluster, name: 'c', message: `outlier_detection.base_ejection_time: 315576000000s ${using}` },
    ]);
  });

  it('takes 2147483647 ms exactly, and warns once per change of a resource, not on every update', () => {
    const cache = new TranslationCache();
    const exact = build({ routes: [routeConfig({ timeout: { seconds: 2_147_483, nanos: 647_000_000 } })] }, cache);
    expect(exact.warnings).toEqual([]);
    expect(exact.snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!.action.timeoutMs).toBe(MAX_TIMER_MS);
    const long = [routeConfig({ timeout: DAYS_30 })];
    expect(build({ routes: long }, cache).warnings).toHaveLength(1);
    expect(build({ routes: long }, cache).warnings).toEqual([]);
  });

  it('counts a duration above 0 but under 1 ms as 1 ms, not 0 ("no timeout")', () => {
    // Before: 0.4 ms rounded to 0, and a route timeout of 0 means none.
    const { snapshot, errors } = build({ routes: [routeConfig({ timeout: { nanos: 400_000 } })], clusters: [cluster({ connect_timeout: { nanos: 1 } })] });
    expect(errors).toEqual([]);
    expect(snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!.action.timeoutMs).toBe(1);
    expect(snapshot.clusters.get('c')!.connectTimeoutMs).toBe(1);
  });

  it('refuses negative, malformed and out-of-range durations, and 0 where Envoy wants more, naming the field', () => {
    const { errors } = build({
      routes: [
        routeConfig({ timeout: { seconds: -1 } }),
        routeConfig({ timeout: { nanos: -1 } }, undefined, 'r2'),
        routeConfig({ timeout: { seconds: 1, nanos: 1_000_000_000 } }, undefined, 'r3'),
        routeConfig({ timeout: { seconds: 315_576_000_001 } }, undefined, 'r4'),
      ],
      clusters: [
        cluster({ outlier_detection: { interval: { seconds: 0 } } }),
        res('Cluster', 'd', { name: 'd', outlier_detection: { base_ejection_time: {} } }),
        res('Cluster', 'e', { name: 'e', outlier_detection: { max_ejection_percent: { value: 150 } } }),
        res('Cluster', 'f', { name: 'f', lb_policy: 'RING_HASH', ring_hash_lb_config: { maximum_ring_size: { value: 8_388_609 } } }),
      ],
    });
    const field = 'virtual_hosts[0].routes[0].route.timeout';
    expect(errors.map((e) => [e.name, e.message])).toEqual([
      ['r', `${field}: negative duration (seconds -1, nanos 0)`],
      ['r2', `${field}: negative duration (seconds 0, nanos -1)`],
      ['r3', `${field}: invalid duration`],
      ['r4', `${field}: 315576000001s is beyond google.protobuf.Duration's range`],
      ['c', 'outlier_detection.interval: must be above 0'],
      ['d', 'outlier_detection.base_ejection_time: must be above 0'],
      ['e', 'outlier_detection.max_ejection_percent: 150 is above 100'],
      ['f', 'ring_hash_lb_config.maximum_ring_size: 8388609 is above 8388608'],
    ]);
  });
});
