// One access-log entry as one JSON line, built by hand: the fields are fixed, so the line is a chain of string
// appends in a known order, with no key walk, no per-value type dispatch and no serializer objects (pino's
// generic path cost several µs of the proxy's CPU per request). The output is what JSON.stringify makes of
// `{ type: 'access', ...entry }` with the fields in the order below (test: access-line.test.ts).
import type { AccessLogEntry } from './access-log.js';

/** A JSON string literal: the value as is when nothing in it needs escaping (the usual case), else JSON.stringify's. */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // Control characters, quote, backslash, and UTF-16 surrogates (JSON.stringify escapes lone ones).
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return '"' + s + '"';
}

function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

export function formatAccessLine(e: AccessLogEntry): string {
  let line =
    '{"type":"access","start_time":' +
    jsonString(e.start_time) +
    ',"duration_ms":' +
    jsonNumber(e.duration_ms) +
    ',"protocol":' +
    jsonString(e.protocol) +
    ',"method":' +
    jsonString(e.method) +
    ',"authority":' +
    jsonString(e.authority) +
    ',"path":' +
    jsonString(e.path) +
    ',"status":' +
    jsonNumber(e.status) +
    ',"bytes_received":' +
    jsonNumber(e.bytes_received) +
    ',"bytes_sent":' +
    jsonNumber(e.bytes_sent) +
    ',"upstream_cluster":' +
    jsonString(e.upstream_cluster) +
    ',"upstream_host":' +
    jsonString(e.upstream_host) +
    ',"attempts":' +
    jsonNumber(e.attempts) +
    ',"response_flags":' +
    jsonString(e.response_flags) +
    ',"request_id":' +
    jsonString(e.request_id);
  if (e.trace_id !== undefined) line += ',"trace_id":' + jsonString(e.trace_id);
  if (e.span_id !== undefined) line += ',"span_id":' + jsonString(e.span_id);
  if (e.parent_span_id !== undefined) line += ',"parent_span_id":' + jsonString(e.parent_span_id);
  line += ',"downstream_remote":' + jsonString(e.downstream_remote);
  if (e.downstream_peer_principal !== undefined) line += ',"downstream_peer_principal":' + jsonString(e.downstream_peer_principal);
  if (e.x_pillion_reason !== undefined) line += ',"x_pillion_reason":' + jsonString(e.x_pillion_reason);
  return line + '}\n';
}

let isoSecond = -1;
let isoPrefix = '';
/**
 * `new Date(ms).toISOString()` for a whole-millisecond epoch time, with the part up to the seconds made once per
 * second (toISOString was ~1 µs a line).
 */
export function isoTime(ms: number): string {
  const second = Math.floor(ms / 1000);
  if (second !== isoSecond) {
    isoSecond = second;
    isoPrefix = new Date(second * 1000).toISOString().slice(0, 20); // 'YYYY-MM-DDTHH:MM:SS.'
  }
  const frac = ms - second * 1000;
  return isoPrefix + (frac < 10 ? '00' : frac < 100 ? '0' : '') + frac + 'Z';
}
