// Shared deadline lists: each item fires once, on time, in order, and never after it was cancelled.
import { describe, expect, it } from 'vitest';
import { cancelDeadline, DeadlineList, startDeadline, type Expirable } from './deadlines.js';

class Item implements Expirable {
  deadlineAt = 0;
  deadlinePrev: Expirable | null = null;
  deadlineNext: Expirable | null = null;
  deadlineList: DeadlineList | null = null;
  deadlineTimer: NodeJS.Timeout | null = null;
  firedAt = -1;
  constructor(
    readonly name: string,
    private readonly fired: string[],
    private readonly startedAt = performance.now(),
  ) {}
  onDeadline(): void {
    this.firedAt = performance.now() - this.startedAt;
    this.fired.push(this.name);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('deadlines', () => {
  it('fires each item after its length, in start order, and not the cancelled ones', async () => {
    const fired: string[] = [];
    const items = ['a', 'b', 'c', 'd', 'e'].map((n) => new Item(n, fired));
    for (const item of items.slice(0, 3)) startDeadline(item, 60);
    await sleep(15);
    for (const item of items.slice(3)) startDeadline(item, 60);
    // Cancelled: the head (the list's timer was armed for it), one in the middle, and the tail.
    cancelDeadline(items[0]!);
    cancelDeadline(items[2]!);
    cancelDeadline(items[4]!);
    await sleep(140);
    expect(fired).toEqual(['b', 'd']);
    for (const item of [items[1]!, items[3]!]) {
      expect(item.firedAt).toBeGreaterThanOrEqual(59);
      expect(item.firedAt).toBeLessThan(60 + 60);
    }
    expect(items.every((i) => i.deadlineList === null && i.deadlinePrev === null && i.deadlineNext === null)).toBe(true);
  });

  it('keeps lengths apart: a short one started later fires first', async () => {
    const fired: string[] = [];
    const long = new Item('long', fired);
    startDeadline(long, 90);
    const short = new Item('short', fired);
    startDeadline(short, 20);
    await sleep(160);
    expect(fired).toEqual(['short', 'long']);
  });

  it('still expires the rest of a list when one handler throws', async () => {
    const fired: string[] = [];
    const list = new DeadlineList(10);
    const thrower = new Item('thrower', fired);
    thrower.onDeadline = () => {
      throw new Error('handler failed');
    };
    const later = new Item('later', fired);
    list.add(thrower, performance.now() - 20); // already due
    list.add(later, performance.now() + 30); // due in ~40 ms
    // As when the list's own timer fires: that timer is spent.
    clearTimeout((list as unknown as { timer: NodeJS.Timeout }).timer);
    expect(() => list.expire()).toThrow('handler failed');
    await sleep(120);
    expect(fired).toEqual(['later']);
  });

  it('keeps the next item on time when a handler starts a deadline on the same list', async () => {
    const fired: string[] = [];
    const list = new DeadlineList(100);
    const first = new Item('first', fired);
    const second = new Item('second', fired);
    const started = new Item('started', fired);
    // As a request whose timeout reply lets the connection's next request start, with the same route timeout.
    first.onDeadline = () => {
      fired.push('first');
      list.add(started, performance.now());
    };
    list.add(first, performance.now());
    await sleep(10);
    list.add(second, performance.now());
    await sleep(150);
    // 'second' is due ~10 ms after 'first' (~110 ms): not a whole length after 'first', when 'started' is due.
    expect(fired).toEqual(['first', 'second']);
    await sleep(80);
    expect(fired).toEqual(['first', 'second', 'started']);
  });

  it('gives lengths past the list bound a timer of their own, cancellable too', async () => {
    const fired: string[] = [];
    // Distinct lengths (as grpc-timeout values would be) past any bound on the number of lists.
    const items = Array.from({ length: 80 }, (_v, i) => new Item(String(i), fired));
    items.forEach((item, i) => startDeadline(item, 1_000 + i));
    const plain = items.filter((i) => i.deadlineTimer !== null);
    expect(plain.length).toBeGreaterThan(0);
    for (const item of items) cancelDeadline(item);
    expect(items.every((i) => i.deadlineTimer === null && i.deadlineList === null)).toBe(true);
    const last = new Item('last', fired);
    startDeadline(last, 30);
    await sleep(80);
    expect(fired).toEqual(['last']);
  });
});
