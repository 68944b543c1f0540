// A clock for connection idle timeouts that costs a field load to read: performance.now() as of the last tick of one
// unref'd interval per process. Connections stamp their last activity with it on each read (a field store) and keep
// one timer that, when it fires, compares the stamp with the time and re-arms for what is left, as Envoy's idle
// timers and HttpExchange's stream idle timer do. net.Socket's setTimeout instead re-inserts its timer in the timer
// list on every read and write: ~3 refreshes per small proxied HTTP/1 request, 1 - 6 % of the proxy's JS samples in
// wrk profiles.

/** How far a stamp may lag: a timeout judged from stamps may come this much early, unless the owner adds it. */
export const COARSE_TICK_MS = 100;

/** nowMs: performance.now() as of the last tick (or the last idle check: see coarseNow). */
export const coarseClock = { nowMs: performance.now() };

let ticker: NodeJS.Timeout | null = null;

function tick(): void {
  coarseClock.nowMs = performance.now();
}

/** Starts the ticking (once per process; connections call it when they are made, so an idle CLI never ticks). */
export function startCoarseClock(): void {
  if (ticker !== null) return;
  tick();
  ticker = setInterval(tick, COARSE_TICK_MS);
  // It never keeps the process alive, as net.Socket's own timeouts do not.
  ticker.unref();
}

/** The exact time, which also brings the coarse clock up to date: for idle checks, not per request. */
export function coarseNow(): number {
  const now = performance.now();
  coarseClock.nowMs = now;
  return now;
}

/** A timer for `fn(arg)` after `ms` that does not keep the process alive (the idle timers of connections). */
export function unrefTimer<T>(fn: (arg: T) => void, ms: number, arg: T): NodeJS.Timeout {
  const timer = setTimeout(fn, Math.max(1, Math.ceil(ms)), arg);
  timer.unref();
  return timer;
}

/**
 * Bytes a socket has yet to write: those its Writable holds and those libuv still holds. At an idle check, a
 * change since the last check means the peer is taking bytes (or we queued more): the connection is not idle.
 * net.Socket's own timeout does the same (kLastWriteQueueSize) besides refreshing on each completed write.
 */
export function unsentBytes(socket: { writableLength: number; _handle?: unknown }): number {
  const handle = socket._handle as { writeQueueSize?: number } | null | undefined;
  const inLibuv = handle === null || handle === undefined ? 0 : (handle.writeQueueSize ?? 0);
  return socket.writableLength + inLibuv;
}
