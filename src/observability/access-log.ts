// Access log: one JSON line per request or TCP connection (access-line.ts), written in batches to stdout or a file,
// held up to a bound past which whole lines are dropped and counted.
import { closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { formatAccessLine } from './access-line.js';
import { beforeLastFlush, closeDestination, heldBytes, safeDestination, writeAtExit, type SafeDestination } from './destination.js';

/** A stream to write lines to instead of a target (tests). */
export interface DestinationStream {
  write(line: string): unknown;
}

export interface AccessLogEntry {
  /** ISO 8601 time the request (or connection) started. */
  start_time: string;
  duration_ms: number;
  protocol: 'HTTP/1.1' | 'HTTP/2' | 'TCP';
  method: string;
  authority: string;
  path: string;
  /** HTTP status (0 for TCP or when no response was sent). */
  status: number;
  bytes_received: number;
  bytes_sent: number;
  upstream_cluster: string;
  upstream_host: string;
  attempts: number;
  /** Envoy response flags joined with ",", or "-" when none. */
  response_flags: string;
  request_id: string;
  /** W3C trace id (32 hex) of the request's trace, "-" when the request was refused before routing; HTTP only. */
  trace_id?: string;
  /** This hop's span id (the parent-id this proxy sent upstream); HTTP only. */
  span_id?: string;
  /** The caller's span id, "-" when the trace started at this hop; HTTP only. */
  parent_span_id?: string;
  downstream_remote: string;
  /** The client's SPIFFE ID when mTLS proved it (inbound TLS connections only). */
  downstream_peer_principal?: string;
  x_pillion_reason?: string;
}

/** Where access lines go: `off`, `stdout`, or a file path (appended). */
export type AccessLogTarget = 'off' | 'stdout' | string;

export interface AccessLogOptions {
  /** Synchronous writes (tests); the default is async, batched writes off the hot path. */
  readonly sync?: boolean;
  /** A destination stream instead of `target` (tests). */
  readonly stream?: DestinationStream;
  /** Most bytes of lines held while the destination is slower than the traffic (default ACCESS_LOG_MAX_BUFFER_BYTES). */
  readonly maxBufferBytes?: number;
  /** Called for each line dropped because the buffer was full, with the number dropped so far. */
  readonly onDrop?: (dropped: number) => void;
  /** The destination failed (a write error): from then on every line is dropped and counted. */
  readonly onError?: (err: Error) => void;
}

/**
 * Bound of the bytes the access log holds in memory when its destination is slower than the traffic (a stdout
 * pipe read slowly or not at all, a slow disk). Past it, whole lines are dropped and counted (as Envoy does),
 * instead of growing the process without bound: 63 -> 393 MiB in 20 s at 40k req/s with a ~1 MB/s reader.
 */
export const ACCESS_LOG_MAX_BUFFER_BYTES = 16 * 1024 * 1024;

/** Joins response flags the way Envoy prints them: "-" for none. */
export function formatResponseFlags(flags: readonly string[]): string {
  return flags.length === 0 ? '-' : flags.length === 1 ? flags[0]! : flags.join(',');
}

/**
 * Lines are gathered into batches handed to the destination in one write: at FLUSH_BYTES, or FLUSH_MS after the
 * first line of a batch (Envoy flushes its access log file every second). One write per line was most of the
 * access log's cost: a file write each goes through libuv's thread pool, and sonic-boom re-measured its whole
 * pending string per line.
 */
const FLUSH_BYTES = 16 * 1024;
const FLUSH_MS = 50;

export class AccessLog {
  /** false when off, and once closed: log() is then one property check. */
  private on: boolean;
  private readonly destination: SafeDestination | null;
  /** A stream the caller gave (tests): lines go to it one by one, at once. */
  private readonly stream: DestinationStream | null;
  private readonly maxBufferBytes: number;
  private readonly onDrop: ((dropped: number) => void) | undefined;
  /** Lines not yet handed to the destination, and their length (UTF-16 units: bytes for ASCII lines). */
  private batch = '';
  private batchLength = 0;
  private batchLines = 0;
  private batchTimer: NodeJS.Timeout | null = null;
  /** Lines of the batch being handed over, so a drop inside the destination counts each of them. */
  private handingOver = 0;
  private readonly unregisterFlush: (() => void) | null = null;
  /** Lines dropped because the destination fell behind by more than the buffer bound, or failed. */
  dropped = 0;
  /** The destination reported a write error: nothing more is written to it. */
  private failed = false;

  constructor(target: AccessLogTarget, opts: AccessLogOptions = {}) {
    this.maxBufferBytes = opts.maxBufferBytes ?? ACCESS_LOG_MAX_BUFFER_BYTES;
    this.onDrop = opts.onDrop;
    this.stream = opts.stream ?? null;
    this.destination = null;
    this.on = target !== 'off' || this.stream !== null;
    if (!this.on || this.stream !== null) return;
    // The bound is enforced here, per line (held = this batch + what the destination holds). The destination's
    // own bound (sonic-boom's maxLength drops a whole write) sits one batch above it, as a backstop.
    const sync = opts.sync === true;
    // A file that cannot be opened is refused now, by name, rather than found out by the first write.
    if (target !== 'stdout') checkWritable(target);
    const onError = opts.onError;
    const destination = safeDestination({
      dest: target === 'stdout' ? 1 : target,
      maxLength: this.maxBufferBytes + (sync ? 0 : 2 * FLUSH_BYTES),
      sync,
      onError: (err) => {
        if (this.failed) return;
        this.failed = true;
        onError?.(err);
      },
    });
    destination.on('drop', () => this.countDrops(Math.max(1, this.handingOver)));
    this.destination = destination;
    if (!sync) this.unregisterFlush = beforeLastFlush(() => this.flushAtExit());
  }

  get enabled(): boolean {
    return this.on;
  }

  log(entry: AccessLogEntry): void {
    if (!this.on) return;
    if (this.failed) {
      this.countDrops(1);
      return;
    }
    const line = formatAccessLine(entry);
    const stream = this.stream;
    if (stream !== null) {
      stream.write(line);
      return;
    }
    const destination = this.destination!;
    if (this.unregisterFlush === null) {
      // Synchronous (tests): each line written at once; the destination drops past its bound.
      destination.write(line);
      return;
    }
    if (this.batchLength + line.length + heldBytes(destination) > this.maxBufferBytes) {
      this.countDrops(1);
      return;
    }
    this.batch += line;
    this.batchLength += line.length;
    this.batchLines++;
    if (this.batchLength >= FLUSH_BYTES) this.flush();
    else if (this.batchTimer === null) {
      this.batchTimer = setTimeout(flushBatch, FLUSH_MS, this);
      this.batchTimer.unref();
    }
  }

  /** Hands the lines gathered so far to the destination. */
  flush(): void {
    if (this.batchTimer !== null) {
      clearTimeout(this.batchTimer);
      this.batchTimer = null;
    }
    if (this.batchLines === 0 || this.destination === null || this.destination.destroyed) return;
    const batch = this.batch;
    this.handingOver = this.batchLines;
    this.batch = '';
    this.batchLength = 0;
    this.batchLines = 0;
    this.destination.write(batch);
    this.handingOver = 0;
  }

  private flushAtExit(): void {
    if (this.batchLines === 0 || this.destination === null) return;
    const batch = this.batch;
    this.batch = '';
    this.batchLength = 0;
    this.batchLines = 0;
    writeAtExit(this.destination, batch);
  }

  /** onDrop is told of each line, as its contract says (the proxy's counter adds one a call, and warns at 1). */
  private countDrops(lines: number): void {
    for (let i = 0; i < lines; i++) {
      this.dropped++;
      this.onDrop?.(this.dropped);
    }
  }

  /**
   * Writes every buffered line, then closes the destination when it is a file this log opened (shutdown,
   * tests); waits at most `timeoutMs` for a destination that does not take them. Lines logged afterwards (by
   * connections that close after the proxy stopped) are ignored.
   */
  close(timeoutMs = 5_000): Promise<void> {
    const d = this.destination;
    if (d === null || !this.on) return Promise.resolve();
    this.flush();
    this.on = false;
    this.unregisterFlush?.();
    return closeDestination(d, timeoutMs);
  }
}

function flushBatch(log: AccessLog): void {
  log.flush();
}

/**
 * Opens (creating it and its directory, as the destination will) and closes `path`; throws a message naming it.
 * A FIFO is left alone: opening one for writing waits for its reader, which may come later.
 */
function checkWritable(path: string): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    if (statSync(path, { throwIfNoEntry: false })?.isFIFO() === true) return;
    closeSync(openSync(path, 'a'));
  } catch (err) {
    throw new Error(`cannot open the access log ${path}: ${(err as Error).message}`);
  }
}
