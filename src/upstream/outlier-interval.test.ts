// The interval detectors (success rate, failure percentage) through the outlier core's tick: which endpoints a
// finished interval's counts make outliers, and how ejection limits and enforcement apply to them.
import { describe, expect, it } from 'vitest';
import { DEFAULTS, type OutlierDetectionModel } from '../config/model.js';
import { newOutlierState, recordOutcome, tick, type OutlierState } from './outlier.js';
import { lastSuccessRate, successRateThreshold } from './outlier-interval.js';

const noDice = (): number => {
  throw new Error('no random draw expected');
};

const cfg = (o: Partial<OutlierDetectionModel> = {}): OutlierDetectionModel => ({
  ...DEFAULTS.outlierDetection,
  maxEjectionPercent: 100,
  ...o,
});

/** Endpoints whose interval under way had these [successes, total] counts. */
function hostsWith(counts: [number, number][]): OutlierState[] {
  return counts.map(([ok, total]) => ({ ...newOutlierState(), intervalSuccess: ok, intervalTotal: total }));
}

const rates = (...r: number[]): [number, number][] => r.map((x) => [x, 100]);

describe('success-rate detector', () => {
  it("computes Envoy's documented threshold: {50, 100, 100, 100, 100} → mean 90, threshold 52", () => {
    const { mean, threshold } = successRateThreshold([50, 100, 100, 100, 100], 1.9);
    expect(mean).toBe(90);
    expect(threshold).toBeCloseTo(52, 10);
  });

  it('ejects the endpoint below mean - 1.9 × stdev once five endpoints had 100 requests, at the tick after the interval', () => {
    const all = hostsWith(rates(50, 100, 100, 100, 100));
    const { ejected } = tick(cfg(), all, 1_000, noDice);
    expect(ejected).toEqual([all[0]]);
    expect(all[0]).toMatchObject({ ejectionReason: 'success_rate', ejectedUntilMs: 31_000, timesEjected: 1 });
    expect(all.slice(1).every((s) => s.ejectedUntilMs === null)).toBe(true);
    // The interval's counts are now the last interval's (what /clusters shows); a new interval starts at zero.
    expect(all.map(lastSuccessRate)).toEqual([50, 100, 100, 100, 100]);
    expect(all[0]).toMatchObject({ intervalSuccess: 0, intervalTotal: 0 });
  });

  it('needs minimumHosts endpoints with requestVolume requests; others neither count nor get ejected', () => {
    // Four qualify (one has 99 requests): below success_rate_minimum_hosts 5.
    const few = hostsWith([[50, 100], [100, 100], [100, 100], [100, 100], [0, 99]]);
    expect(tick(cfg(), few, 1_000, noDice).ejected).toEqual([]);
    const lowered = hostsWith([[50, 100], [100, 100], [100, 100], [100, 100], [0, 99]]);
    // One outlier among n sits at most √(n-1) stdevs below the mean: with four, 1.9 can never eject, 1.0 can.
    const c = cfg({ successRate: { ...DEFAULTS.outlierDetection.successRate, minimumHosts: 4, stdevFactor: 1000 } });
    expect(tick(c, lowered, 1_000, noDice).ejected).toEqual([lowered[0]]);
    expect(lowered[4]!.ejectedUntilMs).toBeNull();
  });

  it('leaves ejected endpoints out of the statistics', () => {
    const all = hostsWith(rates(50, 100, 100, 100, 100, 0));
    all[5]!.ejectedUntilMs = 99_000;
    all[5]!.timesEjected = 1;
    // With the 0 % endpoint in, the stdev would be so wide that 50 % would pass.
    expect(tick(cfg(), all, 1_000, noDice).ejected).toEqual([all[0]]);
  });

  it('does nothing at enforcing 0, and takes the ejection limit into account', () => {
    const off = hostsWith(rates(50, 100, 100, 100, 100));
    expect(tick(cfg({ successRate: { ...DEFAULTS.outlierDetection.successRate, enforcing: 0 } }), off, 1_000, noDice).ejected).toEqual([]);
    // Two outliers among ten with room for one (10 %): the first is ejected, the second refused.
    const two = hostsWith(rates(10, 10, 100, 100, 100, 100, 100, 100, 100, 100));
    const { ejected } = tick(cfg({ maxEjectionPercent: 10, successRate: { ...DEFAULTS.outlierDetection.successRate, stdevFactor: 1000 } }), two, 1_000, noDice);
    expect(ejected).toEqual([two[0]]);
    expect(two[1]!.ejectedUntilMs).toBeNull();
  });

  it('is fed by recordOutcome: every counted call, a success only below 500', () => {
    const c = cfg();
    const all = [newOutlierState(), newOutlierState()];
    for (const o of ['success', 'http5xx', 'gatewayFailure', 'localFailure', 'ignored', 'success'] as const) recordOutcome(c, all[0]!, all, o, 0, noDice);
    expect(all[0]).toMatchObject({ intervalSuccess: 2, intervalTotal: 5 });
    tick(c, all, 1_000, noDice);
    expect(lastSuccessRate(all[0]!)).toBe(40);
    expect(lastSuccessRate(all[1]!)).toBeNull();
  });

  it('does not decay the multiplier of an endpoint it ejects at the same tick', () => {
    const all = hostsWith(rates(50, 100, 100, 100, 100));
    all[0]!.timesEjected = 2;
    tick(cfg(), all, 1_000, noDice);
    expect(all[0]).toMatchObject({ timesEjected: 3, ejectedUntilMs: 91_000 });
  });
});

describe('failure-percentage detector', () => {
  const fp = (o: Partial<OutlierDetectionModel['failurePercentage']> = {}) =>
    cfg({ successRate: { ...DEFAULTS.outlierDetection.successRate, enforcing: 0 }, failurePercentage: { ...DEFAULTS.outlierDetection.failurePercentage, enforcing: 100, ...o } });

  it('ejects endpoints at or above the threshold once five endpoints had 50 requests', () => {
    // 85 % failures exactly (threshold 85: at or above ejects), 84 % stays.
    const all = hostsWith([[15, 100], [16, 100], [50, 50], [50, 50], [50, 50]]);
    expect(tick(fp(), all, 1_000, noDice).ejected).toEqual([all[0]]);
    expect(all[0]!.ejectionReason).toBe('failure_percentage');
  });

  it("is off at Envoy's default enforcing_failure_percentage 0, and needs minimumHosts qualifying endpoints", () => {
    const off = hostsWith([[0, 100], [50, 50], [50, 50], [50, 50], [50, 50]]);
    const defaults = cfg({ successRate: { ...DEFAULTS.outlierDetection.successRate, enforcing: 0 } });
    expect(tick(defaults, off, 1_000, noDice).ejected).toEqual([]);
    // One endpoint short of request_volume 50: four qualify, below minimum_hosts 5.
    const short = hostsWith([[0, 100], [50, 50], [50, 50], [50, 50], [49, 49]]);
    expect(tick(fp(), short, 1_000, noDice).ejected).toEqual([]);
    const fewerHosts = hostsWith([[0, 100], [50, 50], [50, 50], [50, 50], [49, 49]]);
    expect(tick(fp({ minimumHosts: 4 }), fewerHosts, 1_000, noDice).ejected).toEqual([fewerHosts[0]]);
  });

  it('runs after the success-rate detector and skips what it ejected', () => {
    const all = hostsWith(rates(0, 100, 100, 100, 100));
    const both = cfg({ failurePercentage: { ...DEFAULTS.outlierDetection.failurePercentage, enforcing: 100 } });
    const { ejected } = tick(both, all, 1_000, noDice);
    expect(ejected).toEqual([all[0]]);
    expect(all[0]!.ejectionReason).toBe('success_rate');
  });
});
