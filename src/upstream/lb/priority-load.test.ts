// Priority load against the examples of Envoy's "Priority levels" and "Panic threshold" pages (overprovisioning
// factor 1.4, panic threshold 50 %): each level of 100 endpoints with the table's percentage usable.
import { describe, expect, it } from 'vitest';
import { computePriorityLoad, levelHealth, type LevelCounts } from './priority-load.js';

const pct = (usable: number): LevelCounts => ({ total: 100, usable, panicCandidates: 100 });
/** The "Priority levels" page leaves panic out of its tables: panic threshold 0 isolates the load computation. */
const loadOf = (...usable: number[]) => computePriorityLoad(usable.map(pct), 140, 0);
/** The "Panic threshold" page: default threshold 50 %. */
const withPanic = (...usable: number[]) => computePriorityLoad(usable.map(pct), 140, 50);

describe('levelHealth', () => {
  it('is usable share × 1.4, capped at 100, in whole percents', () => {
    expect(levelHealth(pct(80), 140)).toBe(100);
    expect(levelHealth(pct(72), 140)).toBe(100);
    expect(levelHealth(pct(71), 140)).toBe(99);
    expect(levelHealth(pct(50), 140)).toBe(70);
    expect(levelHealth({ total: 2, usable: 1, panicCandidates: 2 }, 140)).toBe(70);
    expect(levelHealth({ total: 0, usable: 0, panicCandidates: 0 }, 140)).toBe(0);
    expect(levelHealth(pct(80), 100)).toBe(80);
  });
});

describe('computePriorityLoad', () => {
  it('two levels, P=1 fully healthy (priority levels, first table)', () => {
    const rows: [number, number, number][] = [[100, 100, 0], [72, 100, 0], [71, 99, 1], [50, 70, 30], [25, 35, 65], [0, 0, 100]];
    for (const [p0, l0, l1] of rows) expect(loadOf(p0, 100).load, `P0 ${p0}%`).toEqual([l0, l1]);
  });

  it('two levels, both degrading (priority levels, second table)', () => {
    const rows: [number, number, number, number][] = [
      [100, 100, 100, 0], [72, 72, 100, 0], [71, 71, 99, 1], [50, 50, 70, 30], [25, 100, 35, 65], [25, 25, 50, 50],
    ];
    for (const [p0, p1, l0, l1] of rows) expect(loadOf(p0, p1).load, `P0 ${p0}% P1 ${p1}%`).toEqual([l0, l1]);
  });

  it('three levels (priority levels, third table)', () => {
    const rows: [number, number, number, number[]][] = [
      [100, 100, 100, [100, 0, 0]],
      [72, 72, 100, [100, 0, 0]],
      [71, 71, 100, [99, 1, 0]],
      [50, 50, 100, [70, 30, 0]],
      [25, 100, 100, [35, 65, 0]],
      [25, 25, 100, [35, 35, 30]],
      // The page shows 36/36/28 (rounded); Envoy's integer rule (load_balancer_impl.cc: floor of health × 100 /
      // normalized total, the remainder to the first level with health) gives 35 + 2, 35, 28.
      [25, 25, 20, [37, 35, 28]],
    ];
    for (const [p0, p1, p2, load] of rows) expect(loadOf(p0, p1, p2).load, `${p0}/${p1}/${p2}`).toEqual(load);
  });

  it('normalizes healths that sum below 100: {20, 30} becomes {40, 60}', () => {
    const { load, health } = computePriorityLoad([pct(20), pct(30)], 100, 0);
    expect(health).toEqual([20, 30]);
    expect(load).toEqual([40, 60]);
    // With the default panic threshold both levels (20 %, 30 % usable) panic, and the load follows endpoint counts.
    expect(computePriorityLoad([pct(20), pct(30)], 100, 50)).toMatchObject({ load: [50, 50], panic: [true, true] });
  });

  it('panics only below a normalized total of 100, per level under the threshold (panic threshold page)', () => {
    expect(withPanic(72, 72)).toMatchObject({ load: [100, 0], panic: [false, false] });
    expect(withPanic(71, 71)).toMatchObject({ load: [99, 1], panic: [false, false] });
    expect(withPanic(25, 100)).toMatchObject({ panic: [false, false] });
    expect(withPanic(0, 100)).toMatchObject({ load: [0, 100], panic: [false, false] });
    // Total 70: both levels under 50 % usable, so every level panics and the load follows the endpoint counts.
    expect(withPanic(25, 25)).toMatchObject({ load: [50, 50], panic: [true, true] });
    // Total 98: P=0 panics, P=1 does not. The page shows 7/93; Envoy's remainder rule gives P=0 7 + 1.
    expect(withPanic(5, 65)).toMatchObject({ load: [8, 92], panic: [true, false] });
  });

  it('with nothing usable anywhere: total panic by panic candidates, or level 0 when panic is disabled', () => {
    const down = (total: number, panicCandidates: number): LevelCounts => ({ total, usable: 0, panicCandidates });
    expect(computePriorityLoad([down(2, 1), down(3, 3)], 140, 50)).toMatchObject({ load: [25, 75], panic: [true, true] });
    expect(computePriorityLoad([down(2, 0), down(3, 3)], 140, 50).load).toEqual([0, 100]);
    expect(computePriorityLoad([down(2, 0), down(3, 0)], 140, 50).load).toEqual([100, 0]);
    expect(computePriorityLoad([down(2, 2), down(3, 3)], 140, 0)).toMatchObject({ load: [100, 0], panic: [false, false] });
  });

  it('gives an empty level (a gap in the priorities) no load', () => {
    expect(computePriorityLoad([{ total: 0, usable: 0, panicCandidates: 0 }, pct(100)], 140, 50).load).toEqual([0, 100]);
  });

  it('follows the overprovisioning factor: 100 spills as soon as one endpoint is lost', () => {
    expect(computePriorityLoad([pct(80), pct(100)], 100, 50).load).toEqual([80, 20]);
    expect(computePriorityLoad([pct(80), pct(100)], 140, 50).load).toEqual([100, 0]);
  });
});
