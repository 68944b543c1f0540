// The codec's one log line: a bug (an exception in frame processing), logged once per process.
import type { Logger } from 'pino';
import { createLogger } from '../observability/logger.js';

let logger: Pick<Logger, 'warn'> | null = null;
let warnedBug = false;

/** The proxy hands its logger in once; without it a warn-level process logger is made on first need. */
export function setH2Logger(l: Pick<Logger, 'warn'>): void {
  logger = l;
}

export function logBugOnce(err: unknown, frameType: number): void {
  if (warnedBug) return;
  warnedBug = true;
  logger ??= createLogger('warn');
  logger.warn(
    { err, frameType },
    'HTTP/2: an exception in frame processing ended a connection with GOAWAY INTERNAL_ERROR (a bug; logged once per process)',
  );
}
