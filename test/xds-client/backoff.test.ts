// Reconnect backoff: exponential windows from 250 ms capped at 10 s, full jitter, reset after a good stream.
import { describe, expect, it } from 'vitest';
import { Backoff } from '../../src/xds/backoff.js';

/** A small seeded PRNG (mulberry32) so the jitter is random-looking yet the same on every run. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Backoff', () => {
  it('doubles the window from 250 ms up to the 10 s cap', () => {
    const b = new Backoff({ random: () => 0.999999 });
    const delays = Array.from({ length: 10 }, () => b.next());
    expect(delays).toEqual([249, 499, 999, 1999, 3999, 7999, 9999, 9999, 9999, 9999]);
  });

  it('full jitter: every delay lies in [0, window) and they spread over the window', () => {
    const b = new Backoff({ random: seeded(42) });
    const windows: number[] = [];
    const delays: number[] = [];
    for (let i = 0; i < 200; i++) {
      windows.push(b.window());
      delays.push(b.next());
    }
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(windows[i]! + 1);
      expect(Number.isInteger(d)).toBe(true);
    });
    // Once capped, delays cover the low and the high part of the 10 s window (not all at the cap).
    const capped = delays.slice(10);
    expect(Math.min(...capped)).toBeLessThan(2_000);
    expect(Math.max(...capped)).toBeGreaterThan(8_000);
    // Same seed, same sequence: tests that depend on it are reproducible.
    const again = new Backoff({ random: seeded(42) });
    expect(Array.from({ length: 200 }, () => again.next())).toEqual(delays);
  });

  it('random() = 0 reconnects at once; reset() starts from the base window again', () => {
    const b = new Backoff({ random: () => 0 });
    expect(b.next()).toBe(0);
    for (let i = 0; i < 5; i++) b.next();
    expect(b.window()).toBe(10_000);
    expect(b.attempts).toBe(6);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.window()).toBe(250);
  });

  it('never overflows after a very long outage', () => {
    const b = new Backoff({ random: () => 0.5 });
    for (let i = 0; i < 5_000; i++) b.next();
    expect(b.window()).toBe(10_000);
    expect(b.next()).toBe(5_000);
  });

  it('takes custom bounds and rejects nonsense', () => {
    const b = new Backoff({ baseMs: 10, maxMs: 40, random: () => 0.999999 });
    expect([b.next(), b.next(), b.next(), b.next()]).toEqual([9, 19, 39, 39]);
    expect(() => new Backoff({ baseMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 100, maxMs: 50 })).toThrow(RangeError);
  });
});
