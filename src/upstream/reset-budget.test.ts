import { describe, expect, it } from 'vitest';
import { ResetBudget } from './reset-budget.js';

describe('ResetBudget', () => {
  it('allows a burst, then refills at the per-second rate', () => {
    const budget = new ResetBudget(0, 3, 2);
    expect([budget.tryTake(0), budget.tryTake(0), budget.tryTake(0), budget.tryTake(0)]).toEqual([true, true, true, false]);
    expect(budget.tryTake(400)).toBe(false); // 0.8 of a token
    expect(budget.tryTake(500)).toBe(true); // 1.0
    expect(budget.tryTake(500)).toBe(false);
  });

  it('never holds more than the burst, however long it rested', () => {
    const budget = new ResetBudget(0, 3, 2);
    let taken = 0;
    while (budget.tryTake(3_600_000)) taken++;
    expect(taken).toBe(3);
  });
});
