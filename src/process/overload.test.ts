import { describe, expect, it } from 'vitest';
import { evaluateOverload, OverloadManager, OverloadState, type MemorySample } from './overload.js';

const MiB = 1048576;
const thresholds = { heapFraction: 0.95, maxRssBytes: 100 * MiB };
const sample = (heapUsedMiB: number, rssMiB: number): MemorySample => ({
  heapUsedBytes: heapUsedMiB * MiB,
  heapLimitBytes: 1000 * MiB,
  rssBytes: rssMiB * MiB,
});

describe('evaluateOverload', () => {
  it('enters at the threshold, by heap or by RSS', () => {
    expect(evaluateOverload(sample(10, 99), thresholds, false)).toBeNull();
    expect(evaluateOverload(sample(10, 100), thresholds, false)).toBe('rss');
    expect(evaluateOverload(sample(950, 10), thresholds, false)).toBe('heap');
  });

  it('leaves only below 90 % of the threshold (no flapping at the edge)', () => {
    expect(evaluateOverload(sample(10, 95), thresholds, true)).toBe('rss');
    expect(evaluateOverload(sample(10, 89), thresholds, true)).toBeNull();
    expect(evaluateOverload(sample(900, 10), thresholds, true)).toBe('heap');
    expect(evaluateOverload(sample(850, 10), thresholds, true)).toBeNull();
  });

  it('has no RSS bound when maxRssBytes is 0', () => {
    expect(evaluateOverload(sample(10, 100_000), { heapFraction: 0.95, maxRssBytes: 0 }, false)).toBeNull();
  });
});

describe('OverloadManager', () => {
  it('flips the shared state, logs each change once, and keeps its decision when sampling fails (EMFILE)', () => {
    const state = new OverloadState();
    const logs: string[] = [];
    const changes: boolean[] = [];
    let next: MemorySample | Error = sample(10, 50);
    const manager = new OverloadManager({
      thresholds,
      state,
      logger: { warn: (_o, m) => logs.push(`warn ${m}`), info: (_o, m) => logs.push(`info ${m}`) },
      onChange: (a) => changes.push(a),
      sample: () => {
        if (next instanceof Error) throw next;
        return next;
      },
    });
    manager.check();
    expect(state.active).toBe(false);
    next = sample(10, 120);
    manager.check();
    manager.check();
    expect(state.active).toBe(true);
    next = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
    manager.check();
    expect(state.active).toBe(true);
    next = sample(10, 80);
    manager.check();
    expect(state.active).toBe(false);
    expect(changes).toEqual([true, false]);
    expect(logs).toHaveLength(2);
    expect(logs[0]).toMatch(/^warn overloaded/);
    expect(logs[1]).toMatch(/^info overload over/);
  });
});
