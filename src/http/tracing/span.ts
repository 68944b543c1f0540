// This proxy hop as a span of the request's trace, as Envoy's HTTP connection manager makes one: the trace id and
// sampling decision come from the request (B3 or W3C Trace Context) or a new trace starts here; the hop gets a new
// span id, and the request it sends upstream names that span as its parent. Spans are not exported: the context is
// propagated and written to the access log (trace_id, span_id, parent_span_id).
//
// Which context wins: B3 when it carries valid ids (the single `b3` header before the x-b3-* ones), else a valid
// `traceparent`: the order of Envoy's Zipkin tracer with W3C fallback (envoyproxy/envoy#40525). Whatever came in,
// `traceparent` goes out; each B3 encoding the request used goes out too, rewritten to the same trace and span, so
// the two never disagree downstream. `tracestate` goes on only beside the traceparent it came with (W3C Trace
// Context §3.3.1: a vendor that restarts the trace drops it).
import type { RequestHeaders } from '../context.js';
import { newHeaderMap, type HeaderMap } from '../headers.js';
import { newSpanId, newTraceId } from './ids.js';

const DASH = 0x2d;
const INVALID = 0;
const ZERO = 1;
const NONZERO = 2;

/**
 * Classifies `s[start, end)` as hex: INVALID (a non-hex character), ZERO (all '0') or NONZERO. W3C allows only
 * lowercase; `upper` also takes uppercase (B3 implementations are lenient, Envoy's among them).
 */
function hexKind(s: string, start: number, end: number, upper: boolean): number {
  let nonzero = false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (c !== 0x30) nonzero = true;
    } else if ((c >= 0x61 && c <= 0x66) || (upper && c >= 0x41 && c <= 0x46)) {
      nonzero = true;
    } else {
      return INVALID;
    }
  }
  return nonzero ? NONZERO : ZERO;
}

/** A B3 sampling state character ('0', '1', 'd'): 0 deny, 1 accept, 2 debug, -1 not one. */
function b3Sampling(c: number): number {
  return c === 0x30 ? 0 : c === 0x31 ? 1 : c === 0x64 ? 2 : -1;
}

/**
 * `{version}-{trace-id}-{parent-id}-{trace-flags}` (W3C Trace Context §3.2). Version ff is invalid; a later version
 * is read leniently: its first four fields as version 00's, and anything after a dash at 55 ignored.
 */
function validTraceparent(v: string): boolean {
  const len = v.length;
  if (len < 55) return false;
  if (hexKind(v, 0, 2, false) === INVALID || (v.charCodeAt(0) === 0x66 && v.charCodeAt(1) === 0x66)) return false;
  const version00 = v.charCodeAt(0) === 0x30 && v.charCodeAt(1) === 0x30;
  if (version00 ? len !== 55 : len > 55 && v.charCodeAt(55) !== DASH) return false;
  if (v.charCodeAt(2) !== DASH || v.charCodeAt(35) !== DASH || v.charCodeAt(52) !== DASH) return false;
  return hexKind(v, 3, 35, false) === NONZERO && hexKind(v, 36, 52, false) === NONZERO && hexKind(v, 53, 55, false) !== INVALID;
}

/** B3 encodings the request used; each is written back in its own shape. */
const B3_SINGLE = 1;
const B3_MULTI = 2;

/** The sampling decision when nothing upstream of us made one: sample, as Envoy's default random_sampling (100 %). */
const DEFAULT_SAMPLED = true;

export class HopSpan {
  /** 32 lowercase hex characters. */
  traceId = '';
  /** This hop's span: the parent-id of the request sent upstream. */
  readonly spanId = newSpanId();
  /** The caller's span id, '' when the trace started at this hop. */
  parentId = '';
  sampled = DEFAULT_SAMPLED;
  /** B3 debug ('d', x-b3-flags: 1): forwarded as it came. */
  private debug = false;
  /** The trace id as B3 carried it (16 or 32 hex, lowercase) when B3 won, else traceId. */
  private b3TraceId = '';
  private b3Forms = 0;
  /** The incoming tracestate belongs to the trace that goes on. */
  private keepTracestate = false;
  /** A sampling decision B3 sent without ids (`b3: 0`, a lone x-b3-sampled): -1 none. */
  private b3Decision = -1;

  constructor(headers: RequestHeaders) {
    const single = headers.b3;
    if (single !== undefined) this.b3Forms |= B3_SINGLE;
    const multiTrace = headers['x-b3-traceid'];
    const multiSampled = headers['x-b3-sampled'];
    const multiFlags = headers['x-b3-flags'];
    if (multiTrace !== undefined || multiSampled !== undefined || multiFlags !== undefined || headers['x-b3-spanid'] !== undefined) {
      this.b3Forms |= B3_MULTI;
    }
    const traceparent = headers.traceparent;
    if (
      (typeof single === 'string' && this.fromB3Single(single)) ||
      ((this.b3Forms & B3_MULTI) !== 0 && this.fromB3Multi(multiTrace, headers['x-b3-spanid'], multiSampled, multiFlags))
    ) {
      // B3 won: a tracestate still goes on when its traceparent names the same trace (a client sending both).
      if (headers.tracestate !== undefined && typeof traceparent === 'string') {
        this.keepTracestate = validTraceparent(traceparent) && traceparent.startsWith(this.traceId, 3);
      }
      return;
    }
    if (typeof traceparent === 'string' && this.fromTraceparent(traceparent, headers.tracestate !== undefined)) return;
    this.traceId = newTraceId();
    this.b3TraceId = this.traceId;
    if (this.b3Decision >= 0) {
      this.sampled = this.b3Decision > 0;
      this.debug = this.b3Decision === 2;
    }
  }

  /** `b3: {traceid}-{spanid}[-{sampling}[-{parentspanid}]]`, or a sampling decision alone. */
  private fromB3Single(v: string): boolean {
    const len = v.length;
    if (len === 1) {
      this.b3Decision = b3Sampling(v.charCodeAt(0));
      return false;
    }
    const t = len > 16 && v.charCodeAt(16) === DASH ? 16 : len > 32 && v.charCodeAt(32) === DASH ? 32 : 0;
    if (t === 0 || len < t + 17) return false;
    let sampling = -1;
    if (len > t + 17) {
      if (v.charCodeAt(t + 17) !== DASH || len < t + 19) return false;
      sampling = b3Sampling(v.charCodeAt(t + 18));
      if (sampling < 0) return false;
      // The parent span id may follow; it is the caller's own parent, not needed to continue the trace.
      if (len !== t + 19 && (len !== t + 36 || v.charCodeAt(t + 19) !== DASH || hexKind(v, t + 20, len, true) === INVALID)) return false;
    }
    if (hexKind(v, 0, t, true) !== NONZERO || hexKind(v, t + 1, t + 17, true) !== NONZERO) return false;
    this.continueB3(v.slice(0, t), v.slice(t + 1, t + 17), sampling);
    return true;
  }

  private fromB3Multi(
    trace: string | string[] | undefined,
    span: string | string[] | undefined,
    sampled: string | string[] | undefined,
    flags: string | string[] | undefined,
  ): boolean {
    const sampling = flags === '1' ? 2 : sampled === '1' || sampled === 'true' ? 1 : sampled === '0' || sampled === 'false' ? 0 : -1;
    if (typeof trace !== 'string' || typeof span !== 'string' || (trace.length !== 16 && trace.length !== 32) || span.length !== 16) {
      if (this.b3Decision < 0) this.b3Decision = sampling;
      return false;
    }
    if (hexKind(trace, 0, trace.length, true) !== NONZERO || hexKind(span, 0, 16, true) !== NONZERO) {
      if (this.b3Decision < 0) this.b3Decision = sampling;
      return false;
    }
    this.continueB3(trace, span, sampling);
    return true;
  }

  private continueB3(trace: string, span: string, sampling: number): void {
    const b3Trace = trace.toLowerCase();
    this.b3TraceId = b3Trace;
    // A 64-bit B3 trace id is the low half of the 128-bit one (left-padded, as OpenTelemetry's B3 propagator does).
    this.traceId = b3Trace.length === 32 ? b3Trace : '0000000000000000' + b3Trace;
    this.parentId = span.toLowerCase();
    if (sampling >= 0) {
      this.sampled = sampling > 0;
      this.debug = sampling === 2;
    }
  }

  private fromTraceparent(v: string, hasTracestate: boolean): boolean {
    if (!validTraceparent(v)) return false;
    this.traceId = v.slice(3, 35);
    this.b3TraceId = this.traceId;
    this.parentId = v.slice(36, 52);
    const c = v.charCodeAt(54);
    this.sampled = ((c <= 0x39 ? c - 0x30 : c - 0x57) & 1) === 1;
    this.keepTracestate = hasTracestate;
    return true;
  }

  /** Writes this hop's context on the request going upstream (`out` holds the forwarded headers already). */
  inject(out: HeaderMap): void {
    const spanId = this.spanId;
    out.traceparent = '00-' + this.traceId + '-' + spanId + (this.sampled ? '-01' : '-00');
    if (!this.keepTracestate && out.tracestate !== undefined) delete out.tracestate;
    const forms = this.b3Forms;
    if (forms === 0) return;
    const sampling = this.debug ? 'd' : this.sampled ? '1' : '0';
    if ((forms & B3_SINGLE) !== 0) {
      out.b3 = this.parentId === '' ? `${this.b3TraceId}-${spanId}-${sampling}` : `${this.b3TraceId}-${spanId}-${sampling}-${this.parentId}`;
    }
    if ((forms & B3_MULTI) !== 0) {
      out['x-b3-traceid'] = this.b3TraceId;
      out['x-b3-spanid'] = spanId;
      if (this.parentId !== '') out['x-b3-parentspanid'] = this.parentId;
      else if (out['x-b3-parentspanid'] !== undefined) delete out['x-b3-parentspanid'];
      // B3: debug implies accept and travels as x-b3-flags: 1 (forwarded as it came), without x-b3-sampled.
      if (this.debug) {
        if (out['x-b3-sampled'] !== undefined) delete out['x-b3-sampled'];
        out['x-b3-flags'] = '1';
      } else {
        out['x-b3-sampled'] = sampling;
      }
    }
  }
}

/** Every header a hop reads or rewrites for trace context. */
export const TRACE_HEADERS: ReadonlySet<string> = new Set([
  'traceparent',
  'tracestate',
  'b3',
  'x-b3-traceid',
  'x-b3-spanid',
  'x-b3-parentspanid',
  'x-b3-sampled',
  'x-b3-flags',
]);

/**
 * For a forwarder that writes the request head itself (HTTP Upgrade): the trace headers to send in place of every
 * TRACE_HEADERS line the request had, this hop being a span as for any other request.
 */
export function traceHeadersFor(headers: RequestHeaders): HeaderMap {
  const out = newHeaderMap();
  for (const name of TRACE_HEADERS) {
    const value = headers[name];
    if (value !== undefined) out[name] = value;
  }
  new HopSpan(headers).inject(out);
  return out;
}
