// Listening sockets that stop accepting for a moment when the process is out of file descriptors.
//
// libuv keeps one spare fd for this: at EMFILE it closes the spare, accepts and closes the waiting connections
// (their clients see the close), and opens the spare again. When it cannot open it again (the process is over its
// limit: `prlimit` lowered it, or another thread took the fd in between), every later accept() that fails with
// EMFILE is retried on each turn of the event loop for as long as a connection waits in the backlog, and no error
// reaches JavaScript (measured on Node 20.20, libuv 1.46): the process burns a whole CPU and says nothing. The
// native helper tells whether the spare is gone; then every registered listening socket is closed (the kernel
// refuses connections meanwhile, as past a full backlog) and opened again after a pause that doubles while the
// spare stays gone. Listening again makes libuv try to open the spare again too. The EMFILE/ENFILE errors that do
// reach a server's 'error' listener (from listen() itself) pause it the same way.
import type * as net from 'node:net';
import { nativeAddon } from '../process/native-addon.js';

const FIRST_PAUSE_MS = 250;
const LONGEST_PAUSE_MS = 4_000;
/** A listener this long without a pause starts again from the first one. */
const CALM_MS = 30_000;
/** How often the spare fd is checked: one native call. */
const RESERVE_CHECK_MS = 500;

export interface AcceptPauseOwner {
  /** The listening socket closed for `ms`. */
  acceptPaused(ms: number): void;
}

const registered = new Set<AcceptPause>();
let reserveTimer: NodeJS.Timeout | null = null;
let reserveLost: (() => boolean) | undefined;

function checkReserve(): void {
  if (!reserveLost!()) return;
  for (const pause of registered) pause.pause();
}

function resume(pause: AcceptPause): void {
  pause.resume();
}

export class AcceptPause {
  private timer: NodeJS.Timeout | null = null;
  private pauseMs = FIRST_PAUSE_MS;
  private lastPauseAt = -CALM_MS;
  private stopped = false;
  /** We closed the listening socket: only then may a server that is not listening be listened again. */
  private closedByUs = false;

  constructor(
    private readonly server: net.Server,
    /** How to listen again: the bound port, never 0 (a new port would strand the clients). */
    private readonly listenOptions: () => net.ListenOptions,
    private readonly owner: AcceptPauseOwner | null = null,
  ) {
    registered.add(this);
    if (reserveTimer !== null) return;
    reserveLost ??= nativeAddon()?.acceptReserveLost as (() => boolean) | undefined;
    if (typeof reserveLost !== 'function') return;
    reserveTimer = setInterval(checkReserve, RESERVE_CHECK_MS);
    reserveTimer.unref();
  }

  /** For the server's 'error' listener: pauses on EMFILE/ENFILE. Returns whether the error was one of those. */
  onError(err: NodeJS.ErrnoException): boolean {
    if (err.code !== 'EMFILE' && err.code !== 'ENFILE') return false;
    this.pause();
    return true;
  }

  /** Closes the listening socket and listens again later (no-op while paused or once stopped). */
  pause(): void {
    if (this.stopped || this.timer !== null || (!this.server.listening && !this.closedByUs)) return;
    const now = performance.now();
    if (now - this.lastPauseAt > CALM_MS) this.pauseMs = FIRST_PAUSE_MS;
    this.lastPauseAt = now;
    if (this.server.listening) this.server.close();
    this.closedByUs = true;
    const ms = this.pauseMs;
    this.timer = setTimeout(resume, ms, this);
    this.timer.unref();
    this.pauseMs = Math.min(ms * 2, LONGEST_PAUSE_MS);
    this.owner?.acceptPaused(ms);
  }

  resume(): void {
    this.timer = null;
    if (this.stopped || this.server.listening) return;
    // A failure (EMFILE again: the socket needs an fd) reaches the server's 'error' listener, hence onError.
    this.server.listen(this.listenOptions());
  }

  /** The server is closing for good: never listen again. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    registered.delete(this);
    if (registered.size === 0 && reserveTimer !== null) {
      clearInterval(reserveTimer);
      reserveTimer = null;
    }
  }
}
