import { describe, expect, it } from 'vitest';
import type { OutlierDetectionModel } from '../config/model.js';
import { ejectedCount, httpOutcome, newOutlierState, recordOutcome, tick, type CallOutcome, type OutlierState } from './outlier.js';

const cfg = (o: Partial<OutlierDetectionModel> = {}): OutlierDetectionModel => ({
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
  return Array.from({ length: times }, () => recordOutcome(c, s, all, outcome, now));
}

describe('outlier detection core', () => {
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
    recordOutcome(c, all[0]!, all, 'success', 0);
    expect(all[0]).toMatchObject({ consecutive5xx: 0, consecutiveGatewayFailure: 0 });
    expect(feed(c, all[0]!, all, 'gatewayFailure', 2)).toEqual([false, false]);
    expect(ejectedCount(all)).toBe(0);
  });

  it('counts local-origin failures as gateway failures and 5xx; a plain 5xx breaks a gateway-failure run', () => {
    const all = hosts(4);
    const c = cfg({ consecutive5xx: 100, consecutiveGatewayFailure: 3 });
    feed(c, all[0]!, all, 'localFailure', 2);
    recordOutcome(c, all[0]!, all, 'http5xx', 0);
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
    expect(recordOutcome(fifty, four[2]!, four, 'http5xx', 10_000)).toBe(true);
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

  it('classifies HTTP outcomes as Envoy does', () => {
    expect([200, 404, 499, 500, 501, 502, 503, 504, 599].map((s) => httpOutcome(s, false))).toEqual([
      'success', 'success', 'success', 'http5xx', 'http5xx', 'gatewayFailure', 'gatewayFailure', 'gatewayFailure', 'http5xx',
    ]);
    expect(httpOutcome(0, true)).toBe('localFailure');
  });
});
