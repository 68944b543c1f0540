// The hand-built access line is exactly JSON.stringify's output for the same fields, whatever the strings hold.
import { describe, expect, it } from 'vitest';
import type { AccessLogEntry } from './access-log.js';
import { formatAccessLine, isoTime } from './access-line.js';

function entry(over: Partial<AccessLogEntry> = {}): AccessLogEntry {
  return {
    start_time: '2026-11-30T10:00:00.007Z',
    duration_ms: 1.42,
    protocol: 'HTTP/1.1',
    method: 'GET',
    authority: 'backend:8080',
    path: '/hello?x=1',
    status: 200,
    bytes_received: 0,
    bytes_sent: 52,
    upstream_cluster: 'backend.default:8080',
    upstream_host: '127.0.0.1:16081',
    attempts: 1,
    response_flags: '-',
    request_id: '3f0c',
    trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
    span_id: '5fa1c0e3b9d2a871',
    parent_span_id: '-',
    downstream_remote: '127.0.0.1',
    ...over,
  };
}

/** What pino wrote before: `{ type: 'access', ...entry }` as JSON, fields left undefined omitted. */
function reference(e: AccessLogEntry): string {
  return JSON.stringify({ type: 'access', ...e }) + '\n';
}

describe('formatAccessLine', () => {
  it('writes the same JSON as JSON.stringify, field for field and in order', () => {
    const cases: AccessLogEntry[] = [
      entry(),
      entry({ downstream_peer_principal: 'spiffe://cluster.local/ns/default/sa/web', x_pillion_reason: 'no_route', status: 404, response_flags: 'NR' }),
      entry({ trace_id: undefined, span_id: undefined, parent_span_id: undefined, protocol: 'TCP', method: '-', path: '-', status: 0 }),
      entry({ path: '/a"b\\c', authority: 'h\u0001st', method: 'GE\tT', request_id: '\u007f\u00ff\u00e9' }),
      entry({ path: 'lone \ud800 surrogate', authority: 'pair \ud83d\ude00' }),
      entry({ duration_ms: Number.NaN, bytes_sent: Infinity, attempts: -0, status: 1e21 }),
      entry({ path: '' }),
    ];
    for (const e of cases) expect(formatAccessLine(e)).toBe(reference(e));
  });

  it('is one parseable line', () => {
    const line = formatAccessLine(entry({ path: '/x\ny' }));
    expect(line.indexOf('\n')).toBe(line.length - 1);
    expect(JSON.parse(line)).toMatchObject({ type: 'access', path: '/x\ny' });
  });
});

describe('isoTime', () => {
  it('matches Date#toISOString to the millisecond, across second boundaries', () => {
    const base = Date.UTC(2026, 10, 30, 23, 59, 58, 990);
    for (let ms = base; ms < base + 2_100; ms += 7) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    for (const ms of [0, 5, 99, 100, 999, 1_000, 1_764_460_800_000]) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });
});
