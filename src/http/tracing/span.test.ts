import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { newHeaderMap, type HeaderMap } from '../headers.js';
import { newSpanId, newTraceId } from './ids.js';
import { HopSpan } from './span.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

/** The headers the hop sends upstream for a request with `incoming` (forwarded as they came, then the span's). */
function forward(incoming: Record<string, string | string[]>): { span: HopSpan; out: HeaderMap } {
  const span = new HopSpan(incoming);
  const out = newHeaderMap();
  for (const k in incoming) out[k] = incoming[k]!;
  span.inject(out);
  return { span, out };
}

describe('ids', () => {
  it('are lowercase hex of the right length, distinct across pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = newTraceId();
      const s = newSpanId();
      expect(t).toMatch(/^[0-9a-f]{32}$/);
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      seen.add(t);
    }
    expect(seen.size).toBe(2000);
  });
});

describe('HopSpan', () => {
  it('starts a sampled trace when the request has none', () => {
    const { span, out } = forward({});
    const m = TRACEPARENT.exec(out.traceparent as string)!;
    expect(m[1]).toBe(span.traceId);
    expect(m[2]).toBe(span.spanId);
    expect(out.traceparent).toMatch(/-01$/);
    expect(span.parentId).toBe('');
    expect(out.b3).toBeUndefined();
    expect(out['x-b3-traceid']).toBeUndefined();
  });

  it('continues a W3C trace: same trace id and flags, a new parent-id, tracestate kept', () => {
    const { span, out } = forward({ traceparent: `00-${TRACE}-${PARENT}-00`, tracestate: 'congo=t61rcWkgMzE' });
    expect(span.traceId).toBe(TRACE);
    expect(span.parentId).toBe(PARENT);
    expect(out.traceparent).toBe(`00-${TRACE}-${span.spanId}-00`);
    expect(span.spanId).not.toBe(PARENT);
    expect(out.tracestate).toBe('congo=t61rcWkgMzE');
  });

  it.each([
    ['version ff', `ff-${TRACE}-${PARENT}-01`],
    ['all-zero trace id', `00-${'0'.repeat(32)}-${PARENT}-01`],
    ['all-zero parent id', `00-${TRACE}-${'0'.repeat(16)}-01`],
    ['uppercase hex', `00-${TRACE.toUpperCase()}-${PARENT}-01`],
    ['non-hex', `00-${TRACE.slice(0, 31)}g-${PARENT}-01`],
    ['short trace id', `00-${TRACE.slice(2)}-${PARENT}-01`],
    ['version 00 with a suffix', `00-${TRACE}-${PARENT}-01-extra`],
    ['two headers', [`00-${TRACE}-${PARENT}-01`, `00-${TRACE}-${PARENT}-01`]],
    ['no dashes', `00${TRACE}${PARENT}01xxx`],
  ])('ignores an invalid traceparent (%s), starts a new trace and drops tracestate', (_name, value) => {
    const { span, out } = forward({ traceparent: value, tracestate: 'congo=t61rcWkgMzE' });
    expect(span.traceId).not.toBe(TRACE);
    expect(span.parentId).toBe('');
    expect(out.traceparent).toMatch(TRACEPARENT);
    expect(out.tracestate).toBeUndefined();
  });

  it('reads a future version leniently and sends version 00', () => {
    const { span, out } = forward({ traceparent: `cc-${TRACE}-${PARENT}-01-what-the-future-will-be-like` });
    expect(span.traceId).toBe(TRACE);
    expect(out.traceparent).toBe(`00-${TRACE}-${span.spanId}-01`);
  });

  it('continues B3 multi-header in the same shape, with the incoming span as parent', () => {
    const { span, out } = forward({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '0' });
    expect(out['x-b3-traceid']).toBe(TRACE);
    expect(out['x-b3-spanid']).toBe(span.spanId);
    expect(out['x-b3-parentspanid']).toBe(PARENT);
    expect(out['x-b3-sampled']).toBe('0');
    expect(out.traceparent).toBe(`00-${TRACE}-${span.spanId}-00`);
    expect(out.b3).toBeUndefined();
  });

  it('continues a 64-bit B3 single header; traceparent gets the left-padded id', () => {
    const short = 'a3ce929d0e0e4736';
    const { span, out } = forward({ b3: `${short}-${PARENT}-d-0000000000000001` });
    expect(span.traceId).toBe(`0000000000000000${short}`);
    expect(out.b3).toBe(`${short}-${span.spanId}-d-${PARENT}`);
    expect(out.traceparent).toBe(`00-0000000000000000${short}-${span.spanId}-01`);
  });

  it('prefers B3 over traceparent (Envoy Zipkin order) and rewrites traceparent to match; tracestate of the other trace dropped', () => {
    const other = 'b7ad6b7169203331b7ad6b7169203331';
    const { span, out } = forward({ b3: `${other}-${PARENT}-1`, traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'a=b' });
    expect(span.traceId).toBe(other);
    expect(out.traceparent).toBe(`00-${other}-${span.spanId}-01`);
    expect(out.tracestate).toBeUndefined();
  });

  it('keeps tracestate when B3 wins and the traceparent beside it names the same trace', () => {
    const { span, out } = forward({ 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, traceparent: `00-${TRACE}-${PARENT}-01`, tracestate: 'a=b' });
    expect(span.traceId).toBe(TRACE);
    expect(out.tracestate).toBe('a=b');
  });

  it('falls back to traceparent when B3 is malformed, and writes the B3 header back consistent', () => {
    const { span, out } = forward({ 'x-b3-traceid': 'nothex', 'x-b3-spanid': PARENT, traceparent: `00-${TRACE}-${PARENT}-01` });
    expect(span.traceId).toBe(TRACE);
    expect(out['x-b3-traceid']).toBe(TRACE);
    expect(out['x-b3-spanid']).toBe(span.spanId);
    expect(out['x-b3-parentspanid']).toBe(PARENT);
  });

  it('keeps a B3 sampling decision sent without ids on the new trace', () => {
    const { span, out } = forward({ b3: '0' });
    expect(span.sampled).toBe(false);
    expect(out.traceparent).toMatch(/-00$/);
    expect(out.b3).toBe(`${span.traceId}-${span.spanId}-0`);
  });
});

describe('HopSpan on arbitrary input', () => {
  const HEX = '0123456789abcdefABCDEF-g0 ';
  const hexish = fc.string({ unit: fc.constantFrom(...HEX), maxLength: 70 });
  /** Valid values with one character changed, dropped or added: the near misses a parser gets wrong. */
  const mutated = (valid: string) =>
    fc.tuple(fc.nat(valid.length), fc.constantFrom(...HEX), fc.constantFrom('set', 'drop', 'add', 'keep')).map(([at, c, op]) =>
      op === 'keep' ? valid : op === 'set' ? valid.slice(0, at) + c + valid.slice(at + 1) : op === 'drop' ? valid.slice(0, at) + valid.slice(at + 1) : valid.slice(0, at) + c + valid.slice(at),
    );
  const value = (valid: string) => fc.option(fc.oneof(mutated(valid), hexish), { nil: undefined });
  const headersArb = fc.record({
    traceparent: value(`00-${TRACE}-${PARENT}-01`),
    tracestate: fc.option(fc.constant('a=b'), { nil: undefined }),
    b3: value(`${TRACE}-${PARENT}-1-${PARENT}`),
    'x-b3-traceid': value(TRACE),
    'x-b3-spanid': value(PARENT),
    'x-b3-sampled': fc.option(fc.constantFrom('0', '1', 'true', 'x'), { nil: undefined }),
  });

  it('always sends one valid traceparent, and B3 headers that agree with it', () => {
    fc.assert(
      fc.property(headersArb, (raw) => {
        const incoming: Record<string, string> = {};
        for (const [k, v] of Object.entries(raw)) if (v !== undefined) incoming[k] = v;
        const { span, out } = forward(incoming);
        const m = TRACEPARENT.exec(out.traceparent as string);
        expect(m).not.toBeNull();
        expect(m![1]).toBe(span.traceId);
        expect(m![2]).toBe(span.spanId);
        expect(span.traceId).not.toBe('0'.repeat(32));
        const pad = (id: string) => id.padStart(32, '0');
        if (out.b3 !== undefined) {
          const [t, s, sampling] = (out.b3 as string).split('-');
          expect(pad(t!)).toBe(span.traceId);
          expect(s).toBe(span.spanId);
          expect(sampling === 'd' || sampling === '1' ? '01' : '00').toBe(m![0].slice(-2));
        }
        if (out['x-b3-traceid'] !== undefined) {
          expect(pad(out['x-b3-traceid'] as string)).toBe(span.traceId);
          expect(out['x-b3-spanid']).toBe(span.spanId);
        }
        // tracestate goes on only beside a valid traceparent of the same trace.
        if (out.tracestate !== undefined) expect(incoming.traceparent?.slice(3, 35)).toBe(span.traceId);
      }),
      { numRuns: 3000 },
    );
  });
});
