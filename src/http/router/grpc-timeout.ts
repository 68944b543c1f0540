// The gRPC deadline a client sends in `grpc-timeout` (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// at most 8 ASCII digits and a unit, H M S m u n.

import { MAX_TIMER_MS } from '../../config/values.js';

const UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };

/**
 * The deadline in whole milliseconds (at least 1: a deadline is never "none"), or undefined when the header is
 * absent or malformed (then it is ignored, as gRPC servers do). At most MAX_TIMER_MS (24.8 days): the header can
 * say 99999999H, and a longer Node timer fires after 1 ms (the call cut at once, or a list re-armed every
 * millisecond with a warning each time).
 */
export function grpcTimeoutMs(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || value.length < 2 || value.length > 9) return undefined;
  const unit = UNIT_MS[value[value.length - 1]!];
  if (unit === undefined) return undefined;
  let n = 0;
  for (let i = 0; i < value.length - 1; i++) {
    const c = value.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return undefined;
    n = n * 10 + c;
  }
  return Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(n * unit)));
}
