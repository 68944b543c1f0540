// ProxyMetrics: exact metric names and labels in the exposition text, cached children, version info reset.
import { describe, expect, it } from 'vitest';
import { REASONS } from '../reasons.js';
import { codeClass, MAX_PEER_LABELS, ProxyMetrics, responseCode } from './metrics.js';

async function text(m: ProxyMetrics): Promise<string> {
  return m.registry.metrics();
}

describe('codeClass', () => {
  it('maps statuses to classes', () => {
    expect([100, 200, 204, 302, 404, 499, 503, 599].map(codeClass)).toEqual(['1xx', '2xx', '2xx', '3xx', '4xx', '4xx', '5xx', '5xx']);
    expect(codeClass(0)).toBe('other');
    expect(codeClass(600)).toBe('other');
    expect(codeClass(-1)).toBe('other');
  });

  it('keeps exact codes 100-599 and calls everything else "other"', () => {
    expect([100, 200, 204, 499, 503, 599].map(responseCode)).toEqual(['100', '200', '204', '499', '503', '599']);
    expect([0, 99, 600, 999, -1, NaN].map(responseCode)).toEqual(['other', 'other', 'other', 'other', 'other', 'other']);
  });
});

describe('ProxyMetrics', () => {
  it('declares every metric with help text on its own registry', async () => {
    const m = new ProxyMetrics({ defaultMetrics: false });
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name).sort();
    expect(names).toEqual(
      [
        'pillion_access_log_dropped_total',
        'pillion_config_updates_total',
        'pillion_config_version_info',
        'pillion_downstream_bytes_received_total',
        'pillion_downstream_connections_rejected_total',
        'pillion_downstream_bytes_sent_total',
        'pillion_downstream_connections_active',
        'pillion_downstream_connections_total',
        'pillion_downstream_connections_transport_total',
        'pillion_downstream_http2_protocol_closes_total',
        'pillion_downstream_request_duration_seconds',
        'pillion_downstream_requests_active',
        'pillion_downstream_peer_requests_total',
        'pillion_downstream_requests_total',
        'pillion_jwks_fetches_total',
        'pillion_jwt_authn_total',
      'pillion_listener_accept_pauses_total',
        'pillion_local_replies_total',
        'pillion_log_dropped_total',
        'pillion_overload_active',
        'pillion_rbac_decisions_total',
        'pillion_tcp_connections_total',
        'pillion_tls_handshake_failures_total',
        'pillion_upstream_connect_failures_total',
        'pillion_upstream_connections_active',
        'pillion_upstream_ejections_total',
        'pillion_upstream_endpoints_ejected',
        'pillion_upstream_endpoints_unhealthy',
        'pillion_upstream_health_checks_total',
        'pillion_upstream_http1_raw_bodies_total',
        'pillion_upstream_http1_raw_body_bytes_total',
        'pillion_upstream_http2_reset_budget_exhausted_total',
        'pillion_upstream_pending_overflow_total',
        'pillion_upstream_requests_overflow_total',
        'pillion_upstream_requests_active',
        'pillion_upstream_request_duration_seconds',
        'pillion_upstream_requests_total',
        'pillion_upstream_retries_skipped_total',
        'pillion_upstream_retries_total',
        'pillion_upstream_tls_handshakes_total',
      ].sort(),
    );
    for (const x of await m.registry.getMetricsAsJSON()) expect(x.help.length).toBeGreaterThan(10);
    // Counters read through cells are flushed on every collection, also repeated ones.
    m.downstreamRequests('inbound', 200);
    await m.registry.metrics();
    m.downstreamRequests('inbound', 200);
    expect(await m.registry.metrics()).toContain('pillion_downstream_requests_total{direction="inbound",code_class="2xx",response_code="200"} 2');
    const json = await m.registry.getMetricsAsJSON();
    const counter = json.find((x) => x.name === 'pillion_downstream_requests_total')!;
    expect(counter.values.find((v) => v.labels.direction === 'inbound' && v.labels.code_class === '2xx')!.value).toBe(2);
  });

  it('includes Node default metrics unprefixed, and two instances do not clash', async () => {
    const a = new ProxyMetrics();
    const b = new ProxyMetrics();
    expect(await text(a)).toMatch(/^process_cpu_user_seconds_total /m);
    expect(await text(b)).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it('counts downstream requests, durations and active requests', async () => {
    const m = new ProxyMetrics({ defaultMetrics: false });
    m.downstreamRequests('outbound', 200);
    m.downstreamRequests('outbound', 201);
    m.downstreamRequests('inbound', 503);
    m.observeDownstreamDuration('outbound', 0.0007);
    m.downstreamActive('inbound').inc();
    m.downstreamActive('inbound').inc();
    m.downstreamActive('inbound').dec();
    const t = await text(m);
    expect(t).toContain('pillion_downstream_requests_total{direction="outbound",code_class="2xx",response_code="200"} 1');
    expect(t).toContain('pillion_downstream_requests_total{direction="outbound",code_class="2xx",response_code="201"} 1');
    expect(t).toContain('pillion_downstream_requests_total{direction="inbound",code_class="5xx",response_code="503"} 1');
    m.observeDownstreamDuration('outbound', 45); // beyond the last bucket: only +Inf
    expect(t).toContain('# TYPE pillion_downstream_request_duration_seconds histogram');
    expect(t).toContain('pillion_downstream_request_duration_seconds_bucket{direction="outbound",le="0.0005"} 0');
    expect(t).toContain('pillion_downstream_request_duration_seconds_bucket{direction="outbound",le="0.001"} 1');
    expect(t).toContain('pillion_downstream_request_duration_seconds_bucket{direction="outbound",le="30"} 1');
    expect(t).toContain('pillion_downstream_request_duration_seconds_bucket{direction="outbound",le="+Inf"} 1');
    expect(t).toContain('pillion_downstream_request_duration_seconds_sum{direction="outbound"} 0.0007');
    expect(t).toContain('pillion_downstream_request_duration_seconds_count{direction="outbound"} 1');
    expect(t).toContain('pillion_downstream_request_duration_seconds_count{direction="inbound"} 0');
    const t2 = await text(m);
    expect(t2).toContain('pillion_downstream_request_duration_seconds_bucket{direction="outbound",le="30"} 1');
    expect(t2).toContain('pillion_downstream_request_duration_seconds_bucket{direction="outbound",le="+Inf"} 2');
    expect(t2).toContain('pillion_downstream_request_duration_seconds_count{direction="outbound"} 2');
    expect(t).toContain('pillion_downstream_requests_active{direction="inbound"} 1');
  });

  it('binds listener and cluster children once and counts per endpoint and class', async () => {
    const m = new ProxyMetrics({ defaultMetrics: false });
    expect(m.listenerStats('outbound')).toBe(m.listenerStats('outbound'));
    const l = m.listenerStats('outbound');
    l.connections.inc();
    l.connectionsActive.inc();
    l.bytesReceived.inc(100);
    l.bytesSent.inc(250);
    const c = m.clusterStats('backend.default:8080');
    expect(m.clusterStats('backend.default:8080')).toBe(c);
    c.upstreamRequest('10.0.0.1:8080', 200);
    c.upstreamRequest('10.0.0.1:8080', 200);
    c.upstreamRequest('10.0.0.1:8080', 502);
    c.upstreamRequest('10.0.0.2:8080', 200);
    c.requestsActive.inc();
    c.connectFailures.inc();
    c.connectionsActive.set(3);
    c.tcpConnections.inc();
    m.localReply(REASONS.noRoute);
    m.localReply(REASONS.noRoute);
    m.configUpdate('applied');
    m.configUpdate('rejected');
    const t = await text(m);
    expect(t).toContain('pillion_downstream_connections_total{listener="outbound"} 1');
    expect(t).toContain('pillion_downstream_connections_active{listener="outbound"} 1');
    expect(t).toContain('pillion_downstream_bytes_received_total{listener="outbound"} 100');
    expect(t).toContain('pillion_downstream_bytes_sent_total{listener="outbound"} 250');
    expect(t).toContain('pillion_upstream_requests_total{cluster="backend.default:8080",endpoint="10.0.0.1:8080",code_class="2xx",response_code="200"} 2');
    expect(t).toContain('pillion_upstream_requests_total{cluster="backend.default:8080",endpoint="10.0.0.1:8080",code_class="5xx",response_code="502"} 1');
    expect(t).toContain('pillion_upstream_requests_total{cluster="backend.default:8080",endpoint="10.0.0.2:8080",code_class="2xx",response_code="200"} 1');
    expect(t).toContain('pillion_upstream_requests_active{cluster="backend.default:8080"} 1');
    expect(t).toContain('pillion_upstream_connect_failures_total{cluster="backend.default:8080"} 1');
    expect(t).toContain('pillion_upstream_connections_active{cluster="backend.default:8080"} 3');
    expect(t).toContain('pillion_tcp_connections_total{cluster="backend.default:8080"} 1');
    expect(t).toContain('pillion_local_replies_total{reason="no_route"} 2');
    expect(t).toContain('pillion_config_updates_total{result="applied"} 1');
    expect(t).toContain('pillion_config_updates_total{result="rejected"} 1');
  });

  it('forgets endpoints and clusters', async () => {
    const m = new ProxyMetrics({ defaultMetrics: false });
    const c = m.clusterStats('a');
    c.upstreamRequest('e1', 200);
    c.upstreamRequest('e2', 200);
    c.forgetEndpoint('e1');
    let t = await text(m);
    expect(t).not.toContain('endpoint="e1"');
    expect(t).toContain('endpoint="e2"');
    m.forgetCluster('a');
    t = await text(m);
    expect(t).not.toContain('cluster="a"');
    // A new handle after forgetting counts from zero.
    m.clusterStats('a').upstreamRequest('e2', 200);
    expect(await text(m)).toContain('pillion_upstream_requests_total{cluster="a",endpoint="e2",code_class="2xx",response_code="200"} 1');
  });

  it('counts by exact code with bounded labels: no response and out-of-range statuses are "other"', async () => {
    const m = new ProxyMetrics({ defaultMetrics: false });
    const c = m.clusterStats('a');
    // Codes first seen in different orders on two endpoints share the proxy's slots.
    for (const status of [503, 200, 0, 200, 700]) c.upstreamRequest('e1', status);
    for (const status of [404, 503]) c.upstreamRequest('e2', status);
    m.downstreamRequests('inbound', 0);
    m.downstreamRequests('inbound', 1000);
    m.downstreamRequests('inbound', 204);
    const t = await text(m);
    expect(t).toContain('pillion_upstream_requests_total{cluster="a",endpoint="e1",code_class="5xx",response_code="503"} 1');
    expect(t).toContain('pillion_upstream_requests_total{cluster="a",endpoint="e1",code_class="2xx",response_code="200"} 2');
    expect(t).toContain('pillion_upstream_requests_total{cluster="a",endpoint="e1",code_class="other",response_code="other"} 2');
    expect(t).toContain('pillion_upstream_requests_total{cluster="a",endpoint="e2",code_class="4xx",response_code="404"} 1');
    expect(t).toContain('pillion_upstream_requests_total{cluster="a",endpoint="e2",code_class="5xx",response_code="503"} 1');
    expect(t.match(/^pillion_upstream_requests_total\{/gm)).toHaveLength(5);
    expect(t).toContain('pillion_downstream_requests_total{direction="inbound",code_class="other",response_code="other"} 2');
    expect(t).toContain('pillion_downstream_requests_total{direction="inbound",code_class="2xx",response_code="204"} 1');
    c.forgetEndpoint('e1');
    expect(await text(m)).not.toContain('endpoint="e1"');
  });

  it('bounds the peer label per protocol: identities past MAX_PEER_LABELS count as "other" (one series per protocol)', async () => {
    const m = new ProxyMetrics({ defaultMetrics: false });
    for (let i = 0; i < MAX_PEER_LABELS; i++) m.peerRequest(`spiffe://td/ns/a/sa/s${i}`, 'http');
    m.peerRequest('spiffe://td/ns/a/sa/s0', 'http');
    m.peerRequest('spiffe://td/ns/a/sa/late1', 'http');
    m.peerRequest('spiffe://td/ns/a/sa/late2', 'http');
    // http's labels are used up, tcp's are not: its own first identity gets a series.
    m.peerRequest('spiffe://td/ns/a/sa/tcp1', 'tcp');
    for (let i = 0; i < MAX_PEER_LABELS; i++) m.peerRequest(`spiffe://td/ns/b/sa/t${i}`, 'tcp');
    const t = await text(m);
    expect(t).toContain('pillion_downstream_peer_requests_total{peer="spiffe://td/ns/a/sa/s0",protocol="http"} 2');
    expect(t).toContain('pillion_downstream_peer_requests_total{peer="other",protocol="http"} 2');
    expect(t).toContain('pillion_downstream_peer_requests_total{peer="spiffe://td/ns/a/sa/tcp1",protocol="tcp"} 1');
    expect(t).toContain('pillion_downstream_peer_requests_total{peer="other",protocol="tcp"} 1');
    expect(t).not.toContain('sa/late');
    expect(t).not.toContain(`sa/t${MAX_PEER_LABELS - 1}"`);
  });

  it('keeps only the current config version at 1', async () => {
    const m = new ProxyMetrics({ defaultMetrics: false });
    m.setConfigVersion('v1');
    m.setConfigVersion('v2');
    const t = await text(m);
    expect(t).toContain('pillion_config_version_info{version="v2"} 1');
    expect(t).not.toContain('version="v1"');
  });
});
