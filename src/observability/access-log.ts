// Access log: one JSON line per request or TCP connection, on its own pino instance so it never mixes with app log levels.
import { pino, type DestinationStream, type Logger } from 'pino';

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
  downstream_remote: string;
  x_pillion_reason?: string;
}

/** Where access lines go: `off`, `stdout`, or a file path (appended). */
export type AccessLogTarget = 'off' | 'stdout' | string;

export interface AccessLogOptions {
  /** Synchronous writes (tests); the default is async, batched writes off the hot path. */
  readonly sync?: boolean;
  /** A destination stream instead of `target` (tests). */
  readonly stream?: DestinationStream;
}

/** Joins response flags the way Envoy prints them: "-" for none. */
export function formatResponseFlags(flags: readonly string[]): string {
  return flags.length === 0 ? '-' : flags.length === 1 ? flags[0]! : flags.join(',');
}

const ACCESS_TYPE = Object.freeze({ type: 'access' });
function accessType(): Record<string, unknown> {
  return ACCESS_TYPE;
}

export class AccessLog {
  /** null when off: log() is then one property check. */
  private readonly logger: Logger | null;
  private readonly destination: DestinationStream | null;
  private readonly external: boolean;
  private readonly ownsFile: boolean;

  constructor(target: AccessLogTarget, opts: AccessLogOptions = {}) {
    if (target === 'off' && opts.stream === undefined) {
      this.logger = null;
      this.destination = null;
      this.external = false;
      this.ownsFile = false;
      return;
    }
    this.external = opts.stream !== undefined;
    this.ownsFile = !this.external && target !== 'stdout';
    this.destination =
      opts.stream ??
      pino.destination({ dest: target === 'stdout' ? 1 : target, sync: opts.sync ?? false, mkdir: target !== 'stdout' });
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

  /** Flushes buffered lines; closes the destination when it is a file this log opened (shutdown, tests). */
  close(): Promise<void> {
    const d = this.destination as SonicBoomLike | null;
    if (d === null || this.external) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (this.ownsFile) {
        // sonic-boom ends after it opened the file and wrote the last buffered line, then emits 'close'.
        d.once('close', () => resolve());
        d.once('error', () => resolve());
        d.end();
      } else {
        // Never close fd 1: other loggers share stdout.
        d.flush((err) => {
          void err;
          resolve();
        });
      }
    });
  }
}

interface SonicBoomLike extends NodeJS.EventEmitter {
  end(): void;
  flush(cb: (err?: Error | null) => void): void;
}
