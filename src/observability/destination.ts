// Where log lines go (the process log and the access log): a pino destination (sonic-boom) that can neither
// grow without bound nor block the process. Writes are asynchronous: a synchronous write into a full stdout
// pipe (a log shipper that stopped reading) retries EAGAIN in a sleep loop and froze the whole proxy on its next
// log line. Past `maxLength` bytes waiting, whole lines are dropped and reported. At exit, one last synchronous
// flush is tried once; if the reader still takes nothing, what is left is dropped instead of retried for ever
// (sonic-boom's own exit hook would spin, and the process would never exit).
import { EventEmitter } from 'node:events';
import { writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { pino } from 'pino';

export interface SafeDestination extends NodeJS.EventEmitter {
  write(data: string): boolean;
  flushSync(): void;
  end(): void;
  /** Drops what is buffered and detaches (fd 1 and 2 stay open). */
  destroy(): void;
  readonly destroyed: boolean;
}

export interface SafeDestinationOptions {
  /** 1 for stdout, or a file path (appended, directories made). */
  readonly dest: 1 | 2 | string;
  readonly maxLength: number;
  /** Synchronous writes (tests that read a file right after logging). */
  readonly sync?: boolean;
  readonly onDrop?: () => void;
  /** A write or open that failed (ENOSPC, EIO, a path that became unwritable); without it, errors are ignored. */
  readonly onError?: (err: Error) => void;
}

/** stdout is a pipe or socket (a container runtime's log pipe, a parent process): Node writes it asynchronously. */
function isPipe(out: NodeJS.WriteStream): out is NodeJS.WriteStream & Socket {
  return out instanceof Socket && !out.isTTY;
}

/**
 * stdout as a pipe: lines go through Node's own non-blocking stream (epoll, no libuv thread), bounded by what it
 * holds. sonic-boom writes fd 1 with fs.write, which on a blocking pipe parks a libuv thread per stuck write,
 * and process.exit then waits for those threads for ever. The process log and the access log share it, each
 * with its own bound on the shared backlog (the process log's is larger, so it is the last to drop).
 */
class PipeDestination extends EventEmitter implements SafeDestination {
  destroyed = false;

  constructor(
    private readonly out: Socket,
    private readonly maxLength: number,
    onDrop: (() => void) | undefined,
  ) {
    super();
    if (onDrop !== undefined) this.on('drop', onDrop);
    // EPIPE when the reader is gone: stdout is destroyed and later lines count as dropped.
    if (out.listenerCount('error') === 0) out.on('error', ignoreStdoutError);
  }

  get held(): number {
    return this.out.writableLength;
  }

  write(line: string): boolean {
    const out = this.out;
    if (this.destroyed || out.destroyed || out.writableLength + line.length > this.maxLength) {
      this.emit('drop');
      return true;
    }
    out.write(line);
    return true;
  }

  /** What was written is in Node's stream or the kernel's pipe; an asynchronous pipe has no synchronous flush. */
  flushSync(): void {}

  end(): void {
    const check = setInterval(() => {
      if (this.out.writableLength > 0 && !this.out.destroyed) return;
      clearInterval(check);
      this.destroy();
    }, 10);
    check.unref();
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

function ignoreStdoutError(): void {}

const live = new Set<SafeDestination>();
/** Callbacks that hand lines still batched by their owner (the access log) to a destination, first thing at exit. */
const exitFlushers = new Set<() => void>();
let exiting = false;
let exitHooked = false;

function lastFlush(): void {
  exiting = true;
  for (const flush of exitFlushers) flush();
  for (const destination of live) {
    if (destination.destroyed) continue;
    // A write still in flight means the reader has stopped (on a blocking pipe it waits in a libuv thread):
    // a synchronous flush would wait with it, for ever.
    if ((destination as { _writing?: boolean })._writing === true) {
      destination.destroy();
      continue;
    }
    try {
      destination.flushSync();
    } catch {
      // EAGAIN (no retry while exiting), or not ready: what is left cannot be written now.
      destination.destroy();
    }
  }
}

function updateExitHook(): void {
  const want = live.size > 0 || exitFlushers.size > 0;
  if (want === exitHooked) return;
  exitHooked = want;
  if (want) process.prependListener('exit', lastFlush);
  else process.removeListener('exit', lastFlush);
}

/** Runs `flush` at process exit before the destinations' last flush; returns its removal. */
export function beforeLastFlush(flush: () => void): () => void {
  exitFlushers.add(flush);
  updateExitHook();
  return () => {
    exitFlushers.delete(flush);
    updateExitHook();
  };
}

/** Bytes a destination holds that its reader has not taken yet (its buffer and the write in flight). */
export function heldBytes(destination: SafeDestination): number {
  if (destination instanceof PipeDestination) return destination.held;
  return (destination as { _len?: number })._len ?? 0;
}

/**
 * Writes `data` at exit: after what the destination holds, synchronously where it can (an asynchronous write
 * started now would be dropped by the last flush as a write in flight).
 */
export function writeAtExit(destination: SafeDestination, data: string): void {
  if (destination.destroyed) return;
  const fd = (destination as { fd?: number }).fd;
  if (destination instanceof PipeDestination || fd === undefined || fd < 0 || (destination as { _writing?: boolean })._writing === true) {
    destination.write(data);
    return;
  }
  try {
    destination.flushSync();
    writeSync(fd, data);
  } catch {
    // EAGAIN (a reader that stopped) or a closed file: these lines cannot be written now.
  }
}

export function safeDestination(opts: SafeDestinationOptions): SafeDestination {
  if (opts.dest === 1 && opts.sync !== true && isPipe(process.stdout)) return new PipeDestination(process.stdout, opts.maxLength, opts.onDrop);
  const destination = pino.destination({
    dest: opts.dest,
    sync: opts.sync ?? false,
    mkdir: typeof opts.dest === 'string',
    maxLength: opts.maxLength,
    // While running, a busy reader is waited for (asynchronously); at exit, never.
    retryEAGAIN: () => !exiting,
  }) as unknown as SafeDestination;
  live.add(destination);
  updateExitHook();
  destination.once('close', () => {
    live.delete(destination);
    updateExitHook();
  });
  const onDrop = opts.onDrop;
  if (onDrop !== undefined) destination.on('drop', onDrop);
  // From its creation: an 'error' with no listener would end the process. A destination that failed a write
  // (ENOSPC, EIO) is closed: sonic-boom's flushSync retries any error but EAGAIN for ever, so the exit flush
  // (ours, and pino's) would spin on it and the process would never exit.
  const onError = opts.onError;
  destination.on('error', (err: Error) => {
    if (!destination.destroyed) destination.destroy();
    onError?.(err);
  });
  return destination;
}

/**
 * Writes what is buffered, waiting at most `timeoutMs` for a destination that takes nothing; then drops it, so
 * the process can exit. Resolves when the destination has closed (fd 1 and 2 are never closed).
 */
export function closeDestination(destination: SafeDestination, timeoutMs: number): Promise<void> {
  if (destination.destroyed) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      destination.destroy();
      resolve();
    }, timeoutMs);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    // end() waits for the write in flight, writes the rest, then emits 'close' (flush() would not wait:
    // without a minLength it calls back at once, and process.exit then loses the write still in flight).
    destination.once('close', done);
    destination.once('error', done);
    destination.end();
  });
}
