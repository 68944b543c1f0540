// The health-check decision core against Envoy's rules: one success admits a new endpoint, thresholds count
// consecutive results, an unexpected HTTP status fails at once, retriable statuses count like network failures.
import { describe, expect, it } from 'vitest';
import type { HealthCheckModel } from '../config/model.js';
import { failingCount, httpResult, newHealthCheckState, nextDelayMs, passesHealthCheck, recordProbe, type ProbeResult } from './health-check-state.js';

const cfg = { healthyThreshold: 2, unhealthyThreshold: 3 };

function run(results: ProbeResult[]): { status: string; changes: boolean[] } {
  const s = newHealthCheckState();
  const changes = results.map((r) => recordProbe(cfg, s, r));
  return { status: s.status, changes };
}

describe('health check state', () => {
  it('starts pending (no traffic) and lets an endpoint in on its first success, whatever healthyThreshold', () => {
    const s = newHealthCheckState();
    expect(s.status).toBe('pending');
    expect(passesHealthCheck(s)).toBe(false);
    expect(passesHealthCheck(null)).toBe(true);
    expect(run(['success'])).toEqual({ status: 'healthy', changes: [true] });
  });

  it('after a failed first probe, needs healthyThreshold successes in a row', () => {
    expect(run(['networkFailure'])).toEqual({ status: 'unhealthy', changes: [false] });
    expect(run(['networkFailure', 'success'])).toEqual({ status: 'unhealthy', changes: [false, false] });
    expect(run(['failure', 'success', 'success'])).toEqual({ status: 'healthy', changes: [false, false, true] });
    // A failure in between starts the count again.
    expect(run(['failure', 'success', 'networkFailure', 'success']).status).toBe('unhealthy');
  });

  it('fails a healthy endpoint after unhealthyThreshold network failures in a row; a success resets the count', () => {
    expect(run(['success', 'networkFailure', 'networkFailure'])).toEqual({ status: 'healthy', changes: [true, false, false] });
    expect(run(['success', 'networkFailure', 'networkFailure', 'networkFailure'])).toEqual({ status: 'unhealthy', changes: [true, false, false, true] });
    expect(run(['success', 'networkFailure', 'networkFailure', 'success', 'networkFailure', 'networkFailure']).status).toBe('healthy');
  });

  it('fails a healthy endpoint at once on an unexpected HTTP status (Envoy ignores the threshold there)', () => {
    expect(run(['success', 'failure'])).toEqual({ status: 'unhealthy', changes: [true, true] });
  });

  it('comes back after healthyThreshold successes and fails again by the thresholds afresh', () => {
    const r = run(['success', 'failure', 'success', 'success', 'networkFailure', 'networkFailure', 'networkFailure']);
    expect(r).toEqual({ status: 'unhealthy', changes: [true, true, false, true, false, false, true] });
  });

  it('counts endpoints not passing', () => {
    const healthy = newHealthCheckState();
    recordProbe(cfg, healthy, 'success');
    expect(failingCount([null, healthy, newHealthCheckState()])).toBe(1);
  });

  it('maps statuses: 200 only by default, expected wins over retriable, retriable counts toward the threshold', () => {
    const only200 = [{ start: 200, end: 201 }];
    expect(httpResult(200, only200, [])).toBe('success');
    expect(httpResult(204, only200, [])).toBe('failure');
    expect(httpResult(503, only200, [{ start: 500, end: 600 }])).toBe('networkFailure');
    expect(httpResult(200, only200, [{ start: 200, end: 600 }])).toBe('success');
    expect(httpResult(404, [{ start: 200, end: 500 }], [])).toBe('success');
  });

  it('waits no_traffic_interval until the cluster has traffic, then interval, plus bounded jitter', () => {
    const m: HealthCheckModel = {
      timeoutMs: 1000, intervalMs: 1000, noTrafficIntervalMs: 60_000, intervalJitterMs: 0, intervalJitterPercent: 0, initialJitterMs: 0,
      unhealthyThreshold: 1, healthyThreshold: 1,
    };
    expect(nextDelayMs(m, false, () => 0.5)).toBe(60_000);
    expect(nextDelayMs(m, true, () => 0.5)).toBe(1000);
    const jittered = { ...m, intervalJitterMs: 100, intervalJitterPercent: 10 };
    expect(nextDelayMs(jittered, true, () => 0)).toBe(1000);
    expect(nextDelayMs(jittered, true, () => 0.999)).toBe(1000 + 99 + 99);
  });
});
