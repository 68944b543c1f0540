// Route timeouts without a Node timer per request. Requests with the same timeout length expire in the order they
// started, so each length keeps its requests in a FIFO list (add at the tail, remove anywhere, both O(1)) with one
// Node timer for the head: Node's own timer lists, less the Timeout object, async id and list insert per request
// (setTimeout + clearTimeout were ~0.5 - 0.9 µs and ~150 bytes a request). Lengths beyond MAX_LISTS (a gRPC
// caller's grpc-timeout can be any value) get a plain timer.

import { MAX_TIMER_MS } from '../../config/values.js';

/** What a deadline list holds: the router of one request, through these fields (no wrapper object). */
export interface Expirable {
  deadlineAt: number;
  deadlinePrev: Expirable | null;
  deadlineNext: Expirable | null;
  deadlineList: DeadlineList | null;
  /** A plain timer instead, for a length that has no list. */
  deadlineTimer: NodeJS.Timeout | null;
  onDeadline(): void;
}

/** Distinct timeout lengths with a list of their own (each list is a few fields; they are kept once made). */
const MAX_LISTS = 64;
const lists = new Map<number, DeadlineList>();

export class DeadlineList {
  private head: Expirable | null = null;
  private tail: Expirable | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly ms: number) {}

  add(item: Expirable, now: number): void {
    item.deadlineAt = now + this.ms;
    item.deadlineList = this;
    item.deadlinePrev = this.tail;
    item.deadlineNext = null;
    if (this.tail === null) this.head = item;
    else this.tail.deadlineNext = item;
    this.tail = item;
    // Armed for an earlier head, it fires first and re-arms for what is then at the head. Unarmed: the list was
    // empty, or this is a handler inside expire() starting a deadline, and then the head is due before this item.
    if (this.timer === null) this.arm(this.head!.deadlineAt - now);
  }

  remove(item: Expirable): void {
    const prev = item.deadlinePrev;
    const next = item.deadlineNext;
    if (prev === null) this.head = next;
    else prev.deadlineNext = next;
    if (next === null) this.tail = prev;
    else next.deadlinePrev = prev;
    item.deadlinePrev = null;
    item.deadlineNext = null;
    item.deadlineList = null;
  }

  expire(): void {
    this.timer = null;
    const now = performance.now();
    try {
      let item = this.head;
      while (item !== null && item.deadlineAt <= now) {
        this.remove(item);
        item.onDeadline();
        item = this.head;
      }
    } finally {
      // Re-armed even if a handler threw (else every later request of this length would never time out), and
      // only once: a handler that started a new deadline on this list (a retry) has armed it for the head already.
      if (this.head !== null && this.timer === null) this.arm(this.head.deadlineAt - now);
    }
  }

  private arm(delayMs: number): void {
    // Node's timer runs on the loop's millisecond clock, so it may fire a fraction of a millisecond before
    // performance.now() passes the deadline: then the next check is 1 ms later.
    // At most MAX_TIMER_MS: deadlineAt - now can round just past it (a 24.8-day timeout), and a longer Node timer
    // fires after 1 ms, so the list would re-arm every millisecond with a warning each time.
    this.timer = setTimeout(expireList, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(delayMs))), this);
    // The request's sockets keep the process alive, not its timeout.
    this.timer.unref();
  }
}

function expireList(list: DeadlineList): void {
  list.expire();
}

function expirePlain(item: Expirable): void {
  item.deadlineTimer = null;
  item.onDeadline();
}

/**
 * Calls `item.onDeadline()` in `ms` milliseconds unless `cancelDeadline(item)` comes first. `now`: performance.now(),
 * when the caller has just read it.
 */
export function startDeadline(item: Expirable, ms: number, now = performance.now()): void {
  let list = lists.get(ms);
  if (list === undefined && lists.size < MAX_LISTS) {
    list = new DeadlineList(ms);
    lists.set(ms, list);
  }
  if (list !== undefined) list.add(item, now);
  else item.deadlineTimer = setTimeout(expirePlain, ms, item);
}

export function cancelDeadline(item: Expirable): void {
  if (item.deadlineList !== null) item.deadlineList.remove(item);
  else if (item.deadlineTimer !== null) {
    clearTimeout(item.deadlineTimer);
    item.deadlineTimer = null;
  }
}
