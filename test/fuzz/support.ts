// Shared pieces of the fuzz suite: a reference HTTP/1 parser (the oracle), a raw socket client whose every wait
// is bounded, a metrics reader, the HTTP/1 generators both codec fuzzers use, and a proxy in front of one backend.
// (The byte-level mutations of HTTP/1 messages are in mutations.ts.)
//
// The oracle is Node's llhttp in strict mode, driven directly through `_http_common` here, independently of
// the proxy's own wrapper (src/http/h1-parser.ts): it is the parser the proxy runs on both sides, so it says
// exactly which bytes form a message, which are an error and which are still incomplete. The fuzz then checks
// what the proxy does with that (answers, order, closes, hangs), which is where the bugs live.
import { createRequire } from 'node:module';
import * as http from 'node:http';
import * as net from 'node:net';
import fc from 'fast-check';
import { startProxy, type RunningProxy, type StartProxyOptions } from '../helpers/proxy.js';

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  execute(data: Buffer): number | (Error & { code: string; bytesParsed: number });
  finish(): undefined | (Error & { code: string; bytesParsed: number });
  close(): void;
  [index: number]: unknown;
}

const common = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: {
    new (): NativeParser;
    REQUEST: number;
    RESPONSE: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kLenientNone: number;
  };
  methods: readonly string[];
};
const { HTTPParser } = common;

export interface RefMessage {
  /** Request: method name; response: undefined. */
  method?: string;
  url?: string;
  status?: number;
  major: number;
  minor: number;
  /** Flat [name, value, ...] as llhttp delivers them. */
  lines: string[];
  keepAlive: boolean;
  upgrade: boolean;
  body: Buffer;
  trailers: string[];
  complete: boolean;
}

export interface RefResult {
  messages: RefMessage[];
  /** llhttp's error code (HPE_*) when the bytes are invalid, with the messages before it in `messages`. */
  error: string | null;
  /** Where the error is (llhttp's bytesParsed). */
  errorAt: number;
  /** The parser stopped without an error before the end of the input (an upgrade / 101 head). */
  stoppedEarly: boolean;
}

export interface RefOptions {
  maxHeaderSize?: number;
  /** Responses: which of them answer a HEAD (index among final, non-1xx responses). */
  isHead?: (finalIndex: number) => boolean;
  /** Responses: the input ends with the connection closing (ends a close-delimited body). */
  eof?: boolean;
}

/** Parse `input` as llhttp does in strict mode, in one go. */
export function refParse(kind: 'request' | 'response', input: Buffer, opts: RefOptions = {}): RefResult {
  const parser = new HTTPParser();
  parser.initialize(kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {}, opts.maxHeaderSize ?? 0, HTTPParser.kLenientNone);
  const messages: RefMessage[] = [];
  let pendingLines: string[] = [];
  let pendingUrl = '';
  let current: RefMessage | null = null;
  let finals = 0;
  parser[HTTPParser.kOnHeaders] = (lines: string[], url: string) => {
    // After a head, header lines are trailers (chunked); before it, parts of a long head.
    if (current !== null) current.trailers.push(...lines);
    else {
      pendingLines.push(...lines);
      pendingUrl += url;
    }
  };
  parser[HTTPParser.kOnHeadersComplete] = (
    major: number, minor: number, lines: string[] | undefined, method: number | undefined, url: string | undefined,
    status: number | undefined, _msg: string | undefined, upgrade: boolean, keepAlive: boolean,
  ) => {
    const m: RefMessage = {
      ...(kind === 'request' ? { method: common.methods[method!] ?? '?', url: url || pendingUrl } : { status: status! }),
      major, minor, lines: lines ?? pendingLines, keepAlive, upgrade, body: Buffer.alloc(0), trailers: [], complete: false,
    };
    pendingLines = [];
    pendingUrl = '';
    current = m;
    messages.push(m);
    if (kind === 'response' && status! >= 200) {
      const head = opts.isHead?.(finals) ?? false;
      finals++;
      if (head) return 1;
    }
    return 0;
  };
  parser[HTTPParser.kOnBody] = (chunk: Buffer) => {
    if (current !== null) current.body = Buffer.concat([current.body, Buffer.from(chunk)]);
  };
  parser[HTTPParser.kOnMessageComplete] = () => {
    if (current !== null) current.complete = true;
    current = null;
  };
  let error: string | null = null;
  let errorAt = -1;
  let stoppedEarly = false;
  const ret = parser.execute(input);
  if (typeof ret === 'object') {
    error = ret.code;
    errorAt = ret.bytesParsed;
  }
  else if (ret < input.length) stoppedEarly = true;
  if (error === null && !stoppedEarly && opts.eof) {
    const fin = parser.finish();
    if (typeof fin === 'object') error = fin.code;
  }
  parser.close();
  return { messages, error, errorAt, stoppedEarly };
}

/** Case-insensitive lookup in flat header lines: every value of `name`. */
export function values(lines: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) if (lines[i]!.toLowerCase() === name) out.push(lines[i + 1]!);
  return out;
}

export function header(lines: readonly string[], name: string): string | undefined {
  return values(lines, name)[0];
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

/** A raw client connection that keeps every byte it receives; every wait is bounded. */
export class RawConn {
  readonly socket: net.Socket;
  data = Buffer.alloc(0);
  closed = false;
  readonly closedP: Promise<void>;
  constructor(port: number) {
    this.socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    this.socket.on('data', (d: Buffer) => (this.data = Buffer.concat([this.data, d])));
    this.socket.on('error', () => {});
    this.closedP = new Promise((resolve) => this.socket.on('close', () => { this.closed = true; resolve(); }));
  }
  /** Writes `input` in the pieces `cuts` gives (byte offsets), with a pause between them so they arrive as
   * separate reads. */
  async sendInPieces(input: Buffer, cuts: readonly number[], pauseMs: number): Promise<void> {
    const points = [...new Set(cuts.map((c) => c % (input.length + 1)))].sort((a, b) => a - b);
    let at = 0;
    for (const p of [...points, input.length]) {
      if (p <= at) continue;
      if (this.closed) return;
      this.socket.write(input.subarray(at, p));
      at = p;
      if (pauseMs > 0) await sleep(pauseMs);
      else await tick();
    }
  }
  /** Resolves true once `predicate` holds, false after `timeoutMs`. */
  async until(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) return false;
      await sleep(2);
    }
    return true;
  }
  destroy(): void {
    this.socket.destroy();
  }
}

/** A final response as a client parses it, with whether it was complete before the bytes ran out. */
export interface ClientResponse {
  status: number;
  lines: string[];
  body: Buffer;
  complete: boolean;
  trailers: string[];
}

/**
 * Parses what a client received: the final responses (1xx skipped), the i-th answering `methods[i]`. `eof` says
 * the connection has closed (ends a close-delimited body). `error` is set when the bytes are not valid HTTP.
 * `dataAfterClose` reads on after a response that said `connection: close` (the proxy sends its 400 for a bad
 * pipelined request after such a response; see h1-downstream.fuzz.test.ts).
 */
export function clientResponses(
  bytes: Buffer,
  methods: readonly string[],
  eof: boolean,
  dataAfterClose = false,
): { responses: ClientResponse[]; error: string | null } {
  let r = refParse('response', bytes, { isHead: (i) => methods[i] === 'HEAD', eof });
  let all = r.messages;
  let rest = bytes;
  while (dataAfterClose && r.error === 'HPE_CLOSED_CONNECTION') {
    // Start over with a fresh parser where llhttp refused to read past the close (bytesParsed counts the
    // refused byte itself).
    rest = rest.subarray(Math.max(0, r.errorAt - 1));
    // What follows a `connection: close` answer can only be the proxy's own error reply (never to a HEAD).
    r = refParse('response', rest, { eof });
    all = [...all, ...r.messages];
  }
  const responses = all
    .filter((m) => m.status! >= 200 || m.status === 101)
    .map((m) => ({ status: m.status!, lines: m.lines, body: m.body, complete: m.complete, trailers: m.trailers }));
  return { responses, error: r.error };
}

/**
 * A proxy for the mesh's `client` service (whose own endpoint, 127.0.0.1:1, refuses) with one more HTTP service,
 * `name`, served by the backend on 127.0.0.1:`backendPort`.
 */
export function startClientProxy(name: string, backendPort: number, opts: Omit<StartProxyOptions, 'service'> = {}): Promise<RunningProxy> {
  return startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: ${name}
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendPort} }]
`,
    { service: 'client', ...opts },
  );
}

/** GET on the admin server. */
export function adminGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

/** Sum of a metric's samples whose labels contain `labelText` (e.g. `direction="outbound"`). */
export async function metricValue(adminPort: number, name: string, labelText = ''): Promise<number> {
  const { body } = await adminGet(adminPort, '/metrics');
  let sum = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (labelText !== '' && !rest.includes(labelText)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Polls until the gauge reads `want` (requests finish asynchronously after the last byte). */
export async function settleMetric(adminPort: number, name: string, labelText: string, want: number, timeoutMs = 3_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await metricValue(adminPort, name, labelText);
    if (v === want || Date.now() > deadline) return v;
    await sleep(20);
  }
}

/** Lower-cases, and drops a `:digits` port as the proxy's route index does (`echo:1234` matches `echo`). */
export function stripPort(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon <= 0 || colon === authority.length - 1) return authority;
  if (!/^\d+$/.test(authority.slice(colon + 1))) return authority;
  return authority.indexOf(':') === colon ? authority.slice(0, colon) : authority;
}

/** Bytes → a short printable form for failure messages. */
export function show(b: Buffer | string, max = 600): string {
  const s = typeof b === 'string' ? b : b.toString('latin1');
  const j = JSON.stringify(s.length > max ? s.slice(0, max) + `…(+${s.length - max})` : s);
  return j;
}

// --- generators (HTTP/1) -----------------------------------------------------------------------------------

const tokenChars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&\'*+.^_`|~-';

/** Header names: tchar strings of `min` to `max` characters. */
export const token = (min: number, max: number): fc.Arbitrary<string> =>
  fc.array(fc.constantFrom(...tokenChars), { minLength: min, maxLength: max }).map((a) => a.join(''));

/** Field values of up to `maxLength` bytes: visible ASCII, inner spaces and tabs, obs-text (0x80-0xff); no
 * leading/trailing whitespace. */
export const fieldValueArb = (maxLength: number): fc.Arbitrary<string> =>
  fc
    .array(fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) }, fc.integer({ min: 0x80, max: 0xff }), fc.constantFrom(0x20, 0x09)), {
      minLength: 1,
      maxLength,
    })
    .map((codes) => Buffer.from(codes).toString('latin1').replace(/^[ \t]+|[ \t]+$/g, '') || 'v');

/** Where to cut the bytes into separate writes, and how long to pause between them. */
export const splitsArb = fc.record({
  cuts: fc.array(fc.nat(), { maxLength: 8 }),
  pauseMs: fc.constantFrom(0, 0, 1, 3),
});

/**
 * The fixed seed of a property, unless FUZZ_SEED is set (to explore: `FUZZ_SEED=123 FUZZ_RUNS=5 npx vitest run
 * test/fuzz`); FUZZ_RUNS multiplies every numRuns. The committed runs stay seeded and bounded.
 */
export function fuzzSeed(fixed: number): number {
  return process.env.FUZZ_SEED === undefined ? fixed : Number(process.env.FUZZ_SEED) + fixed;
}

export function fuzzRuns(n: number): number {
  return Math.max(1, Math.round(n * Number(process.env.FUZZ_RUNS ?? 1)));
}

/** Per-test timeout for the fuzz properties: room for FUZZ_RUNS, so a long exploration is not cut off
 * mid-property (vitest does not stop a timed-out test's promise, which would then overlap the next test). */
export const FUZZ_TIMEOUT_MS = 60_000 * Math.max(1, Number(process.env.FUZZ_RUNS ?? 1));
