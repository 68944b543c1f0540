import { describe, expect, it } from 'vitest';
import { DEFAULTS, type OutlierDetectionModel } from '../config/model.js';
import { ejectedCount, httpOutcome, newOutlierState, recordOutcome, tick as tickWith, type CallOutcome, type OutlierState } from './outlier.js';

/** Dice that never decide: the enforcing percentages here are 0 or 100 unless a test says otherwise. */
const noDice = (): number => {
  throw new Error('no random draw expected');
};

const cfg = (o: Partial<OutlierDetectionModel> = {}): OutlierDetectionModel => ({
  ...DEFAULTS.outlierDetection,
  // As the mesh compiler emits it: gateway-failure runs enforced.
  enforcingConsecutiveGatewayFailure: 100,
  consecutive5xx: 3,
  consecutiveGatewayFailure: 5,
  intervalMs: 1_000,
  baseEjectionTimeMs: 10_000,
  maxEjectionPercent: 50,
  ...o,
});

function hosts(n: number): OutlierState[] {
  return Array.from({ length: n }, () => newOutlierState());
}

function feed(c: OutlierDetectionModel, s: OutlierState, all: OutlierState[], outcome: CallOutcome, times: number, now = 0): boolean[] {
  return Array.from({ length: times }, () => recordOutcome(c, s, all, outcome, now, noDice));
}

/** The interval tick with the default detectors (too few hosts here for the success-rate one to act). */
function tick(all: OutlierState[], now: number): boolean {
  return tickWith(cfg(), all, now, noDice).unejected > 0;
}

describe('outlier detection core', () => {
  it('a consecutive threshold of 0 never ejects (Envoy compares the run with ==): that detector is off', () => {
    const all = hosts(4);
    const c = cfg({ consecutive5xx: 0, consecutiveGatewayFailure: 0 });
    expect(feed(c, all[0]!, all, 'gatewayFailure', 20)).not.toContain(true);
    expect(feed(c, all[1]!, all, 'http5xx', 20)).not.toContain(true);
    const split = cfg({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailure: 0 });
    expect(feed(split, all[2]!, all, 'localFailure', 20)).not.toContain(true);
    expect(ejectedCount(all)).toBe(0);
  });

  it('ejects on the consecutive5xx-th 5xx in a row, not before', () => {
    const all = hosts(4);
    expect(feed(cfg(), all[0]!, all, 'http5xx', 3)).toEqual([false, false, true]);
    expect(all[0]!.ejectedUntilMs).toBe(10_000);
    expect(all[0]!.timesEjected).toBe(1);
  });

  it('resets both counters on a success', () => {
    const all = hosts(4);
    const c = cfg({ consecutiveGatewayFailure: 3 });
    feed(c, all[0]!, all, 'gatewayFailure', 2);
    recordOutcome(c, all[0]!, all, 'success', 0, noDice);
    expect(all[0]).toMatchObject({ consecutive5xx: 0, consecutiveGatewayFailure: 0 });
    expect(feed(c, all[0]!, all, 'gatewayFailure', 2)).toEqual([false, false]);
    expect(ejectedCount(all)).toBe(0);
  });

  it('counts local-origin failures as gateway failures and 5xx; a plain 5xx breaks a gateway-failure run', () => {
    const all = hosts(4);
    const c = cfg({ consecutive5xx: 100, consecutiveGatewayFailure: 3 });
    feed(c, all[0]!, all, 'localFailure', 2);
    recordOutcome(c, all[0]!, all, 'http5xx', 0, noDice);
    expect(all[0]).toMatchObject({ consecutive5xx: 3, consecutiveGatewayFailure: 0 });
    expect(feed(c, all[0]!, all, 'localFailure', 1)).toEqual([false]);
    expect(feed(c, all[0]!, all, 'gatewayFailure', 2)).toEqual([false, true]);
  });

  it('ignores outcomes the endpoint is not to blame for, and outcomes while ejected', () => {
    const all = hosts(2);
    feed(cfg(), all[0]!, all, 'ignored', 10);
    expect(all[0]).toMatchObject({ consecutive5xx: 0, ejectedUntilMs: null });
    feed(cfg(), all[0]!, all, 'http5xx', 3);
    feed(cfg(), all[0]!, all, 'http5xx', 5);
    expect(all[0]).toMatchObject({ timesEjected: 1, ejectedUntilMs: 10_000 });
  });

  it('keeps within maxEjectionPercent, but always ejects one host', () => {
    const all = hosts(4);
    const c = cfg({ maxEjectionPercent: 0 });
    expect(feed(c, all[0]!, all, 'http5xx', 3).at(-1)).toBe(true);
    expect(feed(c, all[1]!, all, 'http5xx', 3).at(-1)).toBe(false);
    expect(ejectedCount(all)).toBe(1);
    const fifty = cfg({ maxEjectionPercent: 50 });
    const four = hosts(4);
    expect(feed(fifty, four[0]!, four, 'http5xx', 3).at(-1)).toBe(true);
    expect(feed(fifty, four[1]!, four, 'http5xx', 3).at(-1)).toBe(true);
    expect(feed(fifty, four[2]!, four, 'http5xx', 3).at(-1)).toBe(false);
    // A refused ejection is retried on the next failure once there is room.
    tick(four, 10_000);
    expect(recordOutcome(fifty, four[2]!, four, 'http5xx', 10_000, noDice)).toBe(true);
  });

  it('un-ejects on the tick after the ejection time, with fresh counters', () => {
    const all = hosts(2);
    feed(cfg(), all[0]!, all, 'http5xx', 3, 1_000);
    expect(tick(all, 10_999)).toBe(false);
    expect(all[0]!.ejectedUntilMs).toBe(11_000);
    expect(tick(all, 11_000)).toBe(true);
    expect(all[0]).toMatchObject({ ejectedUntilMs: null, consecutive5xx: 0, consecutiveGatewayFailure: 0, timesEjected: 1 });
    expect(feed(cfg(), all[0]!, all, 'http5xx', 2, 11_000)).toEqual([false, false]);
  });

  it('grows the ejection time with each ejection, capped at max(base, 300 s), and decays it per healthy interval', () => {
    const all = hosts(2);
    const c = cfg({ baseEjectionTimeMs: 100_000 });
    let now = 0;
    const ejectAndWait = (): number => {
      feed(c, all[0]!, all, 'http5xx', 3, now);
      const ms = all[0]!.ejectedUntilMs! - now;
      now = all[0]!.ejectedUntilMs!;
      tick(all, now);
      return ms;
    };
    expect([ejectAndWait(), ejectAndWait(), ejectAndWait(), ejectAndWait()]).toEqual([100_000, 200_000, 300_000, 300_000]);
    expect(all[0]!.timesEjected).toBe(4);
    // The tick that un-ejects takes nothing off; each interval spent healthy after it takes one off.
    tick(all, (now += 1_000));
    expect(all[0]!.timesEjected).toBe(3);
    tick(all, (now += 1_000));
    tick(all, (now += 1_000));
    expect(all[0]!.timesEjected).toBe(1);
    expect(ejectAndWait()).toBe(200_000);
    // A base above 300 s is its own cap.
    const big = hosts(2);
    const c2 = cfg({ baseEjectionTimeMs: 400_000 });
    feed(c2, big[0]!, big, 'http5xx', 3, 0);
    tick(big, 400_000);
    feed(c2, big[0]!, big, 'http5xx', 3, 400_000);
    expect(big[0]!.ejectedUntilMs).toBe(800_000);
  });

  it('with split_external_local_origin_errors, counts local-origin failures on their own run', () => {
    const all = hosts(4);
    const c = cfg({ splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailure: 3, consecutiveGatewayFailure: 2 });
    expect(feed(c, all[0]!, all, 'localFailure', 2)).toEqual([false, false]);
    // Neither a 5xx nor a gateway failure, and out of the success-rate counts.
    expect(all[0]).toMatchObject({ consecutive5xx: 0, consecutiveGatewayFailure: 0, consecutiveLocalOriginFailure: 2, intervalTotal: 0 });
    // Any response, even a 503, means the connection worked: the local-origin run starts again.
    recordOutcome(c, all[0]!, all, 'gatewayFailure', 0, noDice);
    expect(all[0]).toMatchObject({ consecutiveLocalOriginFailure: 0, consecutiveGatewayFailure: 1, intervalTotal: 1 });
    expect(feed(c, all[0]!, all, 'localFailure', 3)).toEqual([false, false, true]);
    expect(all[0]!.ejectionReason).toBe('consecutive_local_origin_failure');
    // Without the split the same failures are gateway failures (and 5xx).
    const plain = hosts(4);
    expect(feed(cfg({ consecutiveGatewayFailure: 2 }), plain[0]!, plain, 'localFailure', 2)).toEqual([false, true]);
    expect(plain[0]).toMatchObject({ ejectionReason: 'consecutive_gateway_failure', intervalTotal: 2, intervalSuccess: 0 });
  });

  it('enforces ejections at their percent chance, and a run not enforced starts again', () => {
    const all = hosts(4);
    // Envoy's default enforcing_consecutive_gateway_failure is 0: the gateway run is detected, then the 5xx run ejects.
    const envoyDefaults = cfg({ enforcingConsecutiveGatewayFailure: DEFAULTS.outlierDetection.enforcingConsecutiveGatewayFailure, consecutive5xx: 5, consecutiveGatewayFailure: 2 });
    expect(feed(envoyDefaults, all[0]!, all, 'gatewayFailure', 5)).toEqual([false, false, false, false, true]);
    expect(all[0]!.ejectionReason).toBe('consecutive_5xx');
    const never = cfg({ enforcingConsecutive5xx: 0 });
    const other = hosts(4);
    expect(feed(never, other[0]!, other, 'http5xx', 9)).toEqual(Array(9).fill(false));
    expect(other[0]!.consecutive5xx).toBe(0);
    // 50 %: a draw of 0.7 declines, 0.3 ejects.
    const half = cfg({ enforcingConsecutive5xx: 50 });
    const h = hosts(4);
    const draws = [0.7, 0.3];
    const dice = () => draws.shift()!;
    const results = Array.from({ length: 6 }, () => recordOutcome(half, h[0]!, h, 'http5xx', 0, dice));
    expect(results).toEqual([false, false, false, false, false, true]);
    expect(draws).toEqual([]);
  });

  it('caps the ejection time at max_ejection_time and adds up to max_ejection_time_jitter', () => {
    const all = hosts(2);
    const c = cfg({ baseEjectionTimeMs: 10_000, maxEjectionTimeMs: 15_000, maxEjectionTimeJitterMs: 1_000 });
    recordOutcome(c, all[0]!, all, 'http5xx', 0, () => 0);
    recordOutcome(c, all[0]!, all, 'http5xx', 0, () => 0);
    recordOutcome(c, all[0]!, all, 'http5xx', 0, () => 0.5);
    // 10 s and floor(0.5 × 1001) ms of jitter.
    expect(all[0]!.ejectedUntilMs).toBe(10_500);
    tickWith(c, all, 10_500, noDice);
    feed(cfg({ ...c, maxEjectionTimeJitterMs: 0 }), all[0]!, all, 'http5xx', 3, 10_500);
    expect(all[0]!.ejectedUntilMs! - 10_500).toBe(15_000);
  });

  it('classifies HTTP outcomes as Envoy does', () => {
    expect([200, 404, 499, 500, 501, 502, 503, 504, 599].map((s) => httpOutcome(s, false))).toEqual([
      'success', 'success', 'success', 'http5xx', 'http5xx', 'gatewayFailure', 'gatewayFailure', 'gatewayFailure', 'http5xx',
    ]);
    expect(httpOutcome(0, true)).toBe('localFailure');
  });
});
