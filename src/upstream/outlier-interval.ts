// The interval-based outlier detectors of Envoy: success rate (mean - stdev × factor over the endpoints with
// enough requests) and failure percentage (a fixed threshold). They read each endpoint's counts of the last
// whole interval and name the outliers; outlier.ts ejects them. Pure, and run once per interval, off the
// request path.
import type { FailurePercentageModel, SuccessRateModel } from '../config/model.js';
import type { OutlierState } from './outlier.js';

/** Closes the interval under way: its counts become the last interval's (Envoy swaps two buckets the same way). */
export function rollInterval(s: OutlierState): void {
  s.lastSuccess = s.intervalSuccess;
  s.lastTotal = s.intervalTotal;
  s.intervalSuccess = 0;
  s.intervalTotal = 0;
}

/** The last interval's success rate in percent (0..100), or null when the endpoint had no counted calls. */
export function lastSuccessRate(s: OutlierState): number | null {
  return s.lastTotal === 0 ? null : (100 * s.lastSuccess) / s.lastTotal;
}

/**
 * Envoy's success-rate ejection threshold over the qualifying endpoints' rates: mean - factor × stdev, with the
 * population standard deviation (the variance divides by n). Envoy's own example: {50, 100, 100, 100, 100} has
 * mean 90, stdev 20, and with 1.9 a threshold of 52.
 */
export function successRateThreshold(rates: readonly number[], factor: number): { mean: number; threshold: number } {
  let sum = 0;
  for (const r of rates) sum += r;
  const mean = sum / rates.length;
  let variance = 0;
  for (const r of rates) variance += (r - mean) ** 2;
  variance /= rates.length;
  return { mean, threshold: mean - factor * Math.sqrt(variance) };
}

/** Endpoints in (not ejected) with at least `volume` counted calls in the last interval. */
function qualifying(all: readonly OutlierState[], volume: number): OutlierState[] {
  const out: OutlierState[] = [];
  for (const s of all) if (s.ejectedUntilMs === null && s.lastTotal > 0 && s.lastTotal >= volume) out.push(s);
  return out;
}

/**
 * The success-rate outliers: when at least minimumHosts endpoints had requestVolume calls, those whose rate is
 * below the threshold (strictly, as Envoy compares).
 */
export function successRateOutliers(cfg: SuccessRateModel, all: readonly OutlierState[]): OutlierState[] {
  const hosts = qualifying(all, cfg.requestVolume);
  if (hosts.length === 0 || hosts.length < cfg.minimumHosts) return [];
  const rates = hosts.map((s) => (100 * s.lastSuccess) / s.lastTotal);
  const { threshold } = successRateThreshold(rates, cfg.stdevFactor / 1000);
  return hosts.filter((_, i) => rates[i]! < threshold);
}

/**
 * The failure-percentage outliers: when at least minimumHosts endpoints had requestVolume calls (Envoy counts the
 * qualifying endpoints, not all of them, though its proto comment says "hosts in the cluster"), those whose
 * failure percentage is at or above the threshold.
 */
export function failurePercentageOutliers(cfg: FailurePercentageModel, all: readonly OutlierState[]): OutlierState[] {
  const hosts = qualifying(all, cfg.requestVolume);
  if (hosts.length === 0 || hosts.length < cfg.minimumHosts) return [];
  return hosts.filter((s) => 100 - (100 * s.lastSuccess) / s.lastTotal >= cfg.threshold);
}
