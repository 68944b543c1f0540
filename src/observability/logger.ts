// The proxy's application logger: pino JSON lines on stdout, level changeable at runtime (POST /logging).
import { pino, type DestinationStream, type Logger } from 'pino';
import { closeDestination, safeDestination, type SafeDestination } from './destination.js';
import { ACCESS_LOG_MAX_BUFFER_BYTES } from './access-log.js';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(level: string): level is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

/**
 * Bytes waiting for stdout past which process-log lines are dropped. It is the access log's bound plus 1 MiB:
 * on a shared stdout the access log drops first, and the process log (warnings, errors) still gets through.
 */
export const PROCESS_LOG_MAX_BUFFER_BYTES = ACCESS_LOG_MAX_BUFFER_BYTES + 1024 * 1024;

/** One stdout destination for every process logger of this process (see destination.ts for why it is async). */
let stdout: SafeDestination | null = null;
let dropped = 0;

/** Process-log lines dropped since start because stdout took nothing (pillion_log_dropped_total). */
export function processLogDropped(): number {
  return dropped;
}

function countDrop(): void {
  dropped++;
}

/** A pino logger writing JSON lines to stdout (or `destination`, for tests). Unknown levels fall back to info. */
export function createLogger(level: string = 'info', destination?: DestinationStream): Logger {
  const opts = { level: isLogLevel(level) ? level : 'info', base: { pid: process.pid } };
  if (destination) return pino(opts, destination);
  stdout ??= safeDestination({ dest: 1, maxLength: PROCESS_LOG_MAX_BUFFER_BYTES, onDrop: countDrop });
  return pino(opts, stdout);
}

/** At shutdown: writes what the process log holds, giving up after `timeoutMs` on a stdout that takes nothing. */
export function flushProcessLog(timeoutMs: number): Promise<void> {
  const d = stdout;
  if (d === null) return Promise.resolve();
  stdout = null;
  return closeDestination(d, timeoutMs);
}

/** Changes the level; false (and no change) for an unknown level. */
export function setLevel(logger: Logger, level: string): boolean {
  if (!isLogLevel(level)) return false;
  logger.level = level;
  return true;
}
