// CounterWindow: what counters added over the last seconds, across resets and failed scrapes.
import { describe, expect, it } from 'vitest';
import { CounterWindow } from './counter-window.js';

const m = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));

describe('CounterWindow', () => {
  it('gives the increases over the window only, so a new split shows within it', () => {
    const w = new CounterWindow(3000);
    w.push(0, m({ a: 100, b: 100 }));
    expect(w.deltas()).toEqual(new Map());
    w.push(1000, m({ a: 150, b: 150 }));
    w.push(2000, m({ a: 200, b: 200 }));
    expect(w.deltas()).toEqual(m({ a: 100, b: 100 }));
    // The split changes to 90/10: three seconds later only the new split is in the window.
    w.push(3000, m({ a: 290, b: 210 }));
    w.push(4000, m({ a: 380, b: 220 }));
    w.push(5000, m({ a: 470, b: 230 }));
    expect(w.deltas()).toEqual(m({ a: 270, b: 30 }));
    expect(w.spanMs()).toBe(3000);
  });

  it('counts a reset counter (a restarted process) from zero, and compares across failed scrapes', () => {
    const w = new CounterWindow(10_000);
    w.push(0, m({ a: 500 }));
    w.push(1000, new Map()); // the process is down
    w.push(2000, m({ a: 7 })); // restarted: 7 since
    w.push(3000, m({ a: 10, b: 2 })); // b appeared: 2 since it was created
    expect(w.deltas()).toEqual(m({ a: 10, b: 2 }));
  });

  it('stays bounded whatever the sampling rate', () => {
    const w = new CounterWindow(1_000_000, 8);
    for (let i = 0; i < 100; i++) w.push(i, m({ a: i }));
    expect(w.deltas()).toEqual(m({ a: 7 }));
  });
});
