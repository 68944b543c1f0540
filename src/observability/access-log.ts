// Access log: one JSON line per request or TCP connection, on its own pino instance so it never mixes with app log levels.
import { pino, type DestinationStream, type Logger } from 'pino';
import { closeDestination, safeDestination, type SafeDestination } from './destination.js';

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

const ACCESS_TYPE = Object.freeze({ type: 'access' });
function accessType(): Record<string, unknown> {
  return ACCESS_TYPE;
}

export class AccessLog {
  /** null when off (and once closed): log() is then one property check. */
  private logger: Logger | null;
  private readonly destination: DestinationStream | null;
  private readonly external: boolean;
  /** Lines dropped because the destination fell behind by more than the buffer bound. */
  dropped = 0;

  constructor(target: AccessLogTarget, opts: AccessLogOptions = {}) {
    if (target === 'off' && opts.stream === undefined) {
      this.logger = null;
      this.destination = null;
      this.external = false;
      return;
    }
    this.external = opts.stream !== undefined;
    if (opts.stream !== undefined) {
      this.destination = opts.stream;
    } else {
      // sonic-boom's maxLength: a write that would take the buffer (including the write in flight) past it is
      // dropped whole and reported with 'drop'. pino writes each line with one write, so drops are whole lines.
      const onDrop = opts.onDrop;
      const destination = safeDestination({
        dest: target === 'stdout' ? 1 : target,
        maxLength: opts.maxBufferBytes ?? ACCESS_LOG_MAX_BUFFER_BYTES,
        ...(opts.sync === undefined ? {} : { sync: opts.sync }),
      });
      destination.on('drop', () => {
        this.dropped++;
        onDrop?.(this.dropped);
      });
      this.destination = destination;
    }
    this.logger = pino(
      {
        // The entry carries start_time and duration, so no pino time/pid/hostname. The level slot carries
        // `type` instead (it tells these lines apart from app logs on stdout; an empty level object makes pino
        // emit invalid JSON).
        base: null,
        timestamp: false,
        formatters: { level: accessType },
      },
      this.destination,
    );
  }

  get enabled(): boolean {
    return this.logger !== null;
  }

  log(entry: AccessLogEntry): void {
    if (this.logger === null) return;
    this.logger.info(entry);
  }

  /**
   * Writes every buffered line, then closes the destination when it is a file this log opened (shutdown,
   * tests); waits at most `timeoutMs` for a destination that does not take them. Lines logged afterwards (by
   * connections that close after the proxy stopped) are ignored.
   */
  close(timeoutMs = 5_000): Promise<void> {
    const d = this.destination as SafeDestination | null;
    if (d === null || this.external || this.logger === null) return Promise.resolve();
    this.logger = null;
    return closeDestination(d, timeoutMs);
  }
}
