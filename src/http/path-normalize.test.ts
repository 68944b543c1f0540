// Envoy's normalize_path (Istio BASE), as the inbound listener applies it before routing and RBAC.
import { describe, expect, it } from 'vitest';
import { normalizePath } from './path-normalize.js';

describe('normalizePath', () => {
  it('returns the very same string when there is nothing to do (the fast path)', () => {
    for (const p of ['/', '/a/b', '/a//b', '/a.b/c.', '/x?y=/../z', '*', 'example.com:443']) {
      expect(normalizePath(p), p).toBe(p);
    }
  });

  it('removes dot segments, clamping .. at the root (RFC 3986 §5.2.4)', () => {
    const cases: [string, string][] = [
      ['/a/b/../c', '/a/c'], ['/a/b/./c', '/a/b/c'], ['/a/b/../../../../c', '/c'], ['/../a/b', '/a/b'], ['/./a/b', '/a/b'],
      ['/a/b/..', '/a/'], ['/a/.', '/a/'], ['/..', '/'], ['/.', '/'], ['/a/..b/.c', '/a/..b/.c'], ['/.well-known/x', '/.well-known/x'],
      ['/a//../b', '/a/b'], ['/a/../b?x=/../y', '/b?x=/../y'],
    ];
    for (const [input, want] of cases) expect(normalizePath(input), input).toBe(want);
  });

  it('decodes escaped unreserved characters only; %2E counts as a dot; other escapes stay as sent', () => {
    const cases: [string, string][] = [
      ['/%61dmin', '/admin'], ['/a/b/%2E%2E/c', '/a/c'], ['/a/b/%2e./c', '/a/c'], ['/a/b/%2E/c', '/a/b/c'], ['/%7e%5F%2D%30', '/~_-0'],
      ['/a/%2F%2f/c', '/a/%2F%2f/c'], ['/%5c%25', '/%5c%25'], ['/%c0%af', '/%c0%af'], ['/a%20b?q=%61', '/a%20b?q=%61'],
    ];
    for (const [input, want] of cases) expect(normalizePath(input), input).toBe(want);
  });

  it('reads \\ as / and drops the fragment', () => {
    expect(normalizePath('/a/..\\c')).toBe('/c');
    expect(normalizePath('/a#b/../c')).toBe('/a');
    expect(normalizePath('/a?x=1#frag')).toBe('/a?x=1');
    expect(normalizePath('/a/../b#')).toBe('/b');
  });

  it('refuses NUL escapes (null → 400) and passes malformed ones on as sent, as Envoy does', () => {
    for (const p of ['/xyz/.%00../abc', '/xyz/AAAAA%%0000/abc']) expect(normalizePath(p), p).toBeNull();
    for (const p of ['/x%zz', '/x%4', '/x%', '/%/a%(b']) expect(normalizePath(p), p).toBe(p);
    expect(normalizePath('/a/%zz/../%62')).toBe('/a/b');
  });
});
