// The proxy's application logger: pino JSON lines on stdout, level changeable at runtime (POST /logging).
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(level: string): level is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(level);
}

/** A pino logger writing JSON lines to stdout (or `destination`, for tests). Unknown levels fall back to info. */
export function createLogger(level: string = 'info', destination?: DestinationStream): Logger {
  const opts = { level: isLogLevel(level) ? level : 'info', base: { pid: process.pid } };
  return destination ? pino(opts, destination) : pino(opts);
}

/** Changes the level; false (and no change) for an unknown level. */
export function setLevel(logger: Logger, level: string): boolean {
  if (!isLogLevel(level)) return false;
  logger.level = level;
  return true;
}
