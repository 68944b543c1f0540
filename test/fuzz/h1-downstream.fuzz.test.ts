// Fuzz: the downstream HTTP/1 codec (src/http/h1-connection.ts) of a real proxy, over real sockets.
//
// Generated pipelines of valid requests (methods, paths, Host forms, headers with obs-text, content-length and
// chunked bodies with extensions and trailers, Expect: 100-continue, HTTP/1.0, connection: close) are written in
// pieces cut at random byte offsets; mutated ones (byte flips, inserted CR/LF/NUL, deleted bytes, duplicated
// header lines, smuggling shapes, huge lines, truncation) too. What the proxy must do is read off the README's
// "When the proxy answers for itself" table, applied to what llhttp (the parser the proxy runs) makes of the
// same bytes in one piece (see support.ts): each complete request is answered in order (the backend's answer,
// 404 no_route, 503 connect_failure for the service whose endpoint refuses, or 400 for a missing Host); bytes
// llhttp refuses get 400 (431 for an oversized head) and a close; `connection: close` closes after its answer;
// an unfinished request gets nothing and the connection stays open until the client leaves, which closes it at
// once. Every wait is bounded, so a hang fails the case instead of the run. Afterwards the proxy still serves,
// and its admin /metrics shows no request left active.
//
// Bugs this suite found (KNOWN BUG n) are fixed; each keeps a regression case at the end with its minimal input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RunningProxy } from '../helpers/proxy.js';
import {
  RawConn,
  FUZZ_TIMEOUT_MS,
  fuzzRuns,
  fuzzSeed,
  clientResponses,
  fieldValueArb,
  header,
  refParse,
  settleMetric,
  show,
  sleep,
  splitsArb,
  startClientProxy,
  stripPort,
  token,
  values,
  type ClientResponse,
  type RefMessage,
  type RefResult,
} from './support.js';
import { byteMutationArbs, insertLine, lineStarts, mutateBytes, type ByteMutation } from './mutations.js';
import { normalizePath } from '../../src/http/path-normalize.js';

const SEED = 0x5eed_d0;
/** The listener's max_request_headers_kb (README: 60 KiB, larger → 431). */
const MAX_HEAD = 60 * 1024;
/** Bound on every wait for an answer or a close: far above what a healthy proxy needs on loopback. */
const WAIT_MS = 3_000;

let echo: { port: number; server: http.Server };
let proxy: RunningProxy;
let port: number;

/**
 * The echo backend of test/helpers/backends.ts (method, url, headers and body back as JSON), with a head limit
 * above the proxy's 60 KiB: every head the proxy forwards reaches it, so the answer is always the proxy's doing.
 */
async function startEcho(): Promise<{ port: number; server: http.Server }> {
  const server = http.createServer({ maxHeaderSize: 256 * 1024 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ name: 'echo', method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': 'echo' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, server };
}

beforeAll(async () => {
  echo = await startEcho();
  proxy = await startClientProxy('echo', echo.port);
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy?.close();
  echo?.server.closeAllConnections();
  await new Promise((r) => echo?.server.close(r));
});

// --- generators -------------------------------------------------------------------------------------------

const ECHO_DOMAINS = new Set(
  ['echo', 'echo.default', 'echo.default.svc', 'echo.default.svc.cluster.local'].flatMap((d) => [d, `${d}:8080`]),
);

/** The `client` service's endpoint is 127.0.0.1:1, where nothing listens. */
const CLIENT_DOMAINS = new Set(
  ['client', 'client.default', 'client.default.svc', 'client.default.svc.cluster.local'].flatMap((d) => [d, `${d}:8080`]),
);

type Body =
  | { kind: 'none' }
  | { kind: 'length'; data: Buffer }
  | { kind: 'chunked'; chunks: Buffer[]; ext: boolean; trailers: [string, string][] };

interface ReqSpec {
  method: string;
  path: string;
  host: string;
  hostName: string;
  http10: boolean;
  headers: [string, string][];
  body: Body;
  close: boolean;
  expect100: boolean;
}

const fieldValue = fieldValueArb(40);
const pathChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:@";
const pathArb = fc
  .tuple(
    fc.array(fc.array(fc.constantFrom(...pathChars), { maxLength: 10 }).map((a) => a.join('')), { maxLength: 4 }),
    fc.option(fc.array(fc.constantFrom(...pathChars, '/', '?'), { maxLength: 20 }).map((a) => a.join('')), { nil: undefined }),
  )
  .map(([segments, query]) => '/' + segments.join('/') + (query === undefined ? '' : '?' + query));
const bytesArb = fc.oneof(
  { weight: 12, arbitrary: fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)) },
  // Now and then a body of several KiB, past the body stream's 16 KiB buffer (KNOWN BUG 6: a body that filled it
  // in the read that ended it left the connection paused for good).
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1_000, max: 40_000 }), fc.integer({ min: 0, max: 255 })).map(([n, b]) => Buffer.alloc(n, b)) },
);
const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Body>({ kind: 'none' }) },
  { weight: 3, arbitrary: bytesArb.map<Body>((data) => ({ kind: 'length', data })) },
  {
    weight: 3,
    arbitrary: fc
      .record({
        chunks: fc.array(bytesArb.filter((b) => b.length > 0), { maxLength: 4 }),
        ext: fc.boolean(),
        trailers: fc.array(fc.tuple(token(1, 12).map((t) => `x-t-${t}`), fieldValue), { maxLength: 2 }),
      })
      .map<Body>((b) => ({ kind: 'chunked', ...b })),
  },
);

const requestArb: fc.Arbitrary<ReqSpec> = fc
  .record({
    method: fc.constantFrom('GET', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH'),
    path: pathArb,
    host: fc.constantFrom('echo', 'echo.default', 'echo.default.svc', 'echo.default.svc.cluster.local', 'echo:8080', 'ECHO', 'Echo.Default.Svc:8080', 'echo:9'),
    hostName: fc.constantFrom('Host', 'host', 'HOST'),
    v10: fc.integer({ min: 0, max: 9 }),
    headers: fc.uniqueArray(fc.tuple(token(1, 16).map((t) => `x-f-${t}`), fieldValue), {
      maxLength: 6,
      selector: ([n]) => n.toLowerCase(),
    }),
    body: bodyArb,
    close: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    expect100: fc.integer({ min: 0, max: 5 }).map((n) => n === 0),
  })
  // One in ten is HTTP/1.0 (with keep-alive unless closing); never chunked, which 1.0 does not have.
  .map(({ v10, ...r }) => ({ ...r, http10: v10 === 0 && r.body.kind !== 'chunked' }));

function serialize(r: ReqSpec): Buffer {
  let head = `${r.method} ${r.path} HTTP/1.${r.http10 ? 0 : 1}\r\n${r.hostName}: ${r.host}\r\n`;
  for (const [n, v] of r.headers) head += `${n}: ${v}\r\n`;
  if (r.close) head += 'Connection: close\r\n';
  else if (r.http10) head += 'Connection: keep-alive\r\n';
  const hasBody = r.body.kind !== 'none';
  if (r.expect100 && hasBody && !r.http10) head += 'Expect: 100-continue\r\n';
  const parts: Buffer[] = [];
  if (r.body.kind === 'length') {
    head += `Content-Length: ${r.body.data.length}\r\n\r\n`;
    parts.push(Buffer.from(head, 'latin1'), r.body.data);
  } else if (r.body.kind === 'chunked') {
    head += 'Transfer-Encoding: chunked\r\n\r\n';
    parts.push(Buffer.from(head, 'latin1'));
    for (const c of r.body.chunks) {
      parts.push(Buffer.from(`${c.length.toString(16)}${r.body.ext ? ';ext="v"' : ''}\r\n`, 'latin1'), c, Buffer.from('\r\n'));
    }
    let last = '0\r\n';
    for (const [n, v] of r.body.trailers) last += `${n}: ${v}\r\n`;
    parts.push(Buffer.from(last + '\r\n', 'latin1'));
  } else {
    parts.push(Buffer.from(head + '\r\n', 'latin1'));
  }
  return Buffer.concat(parts);
}

type Mutation =
  | ByteMutation
  | { op: 'hugeLine'; line: number; size: number }
  | { op: 'hugeUrl'; size: number }
  | { op: 'rehost'; which: number; to: string };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  ...byteMutationArbs({
    insertBytes: ['\r', '\n', '\0', ' ', '\t', '\r\n', ':', '\r\n\r\n', '\x7f', '\xff'],
    // Request-smuggling shapes and other framing-relevant lines (README: refused with 400).
    lines: [
      'Transfer-Encoding: chunked', 'Content-Length: 3', 'Content-Length: 0', 'Content-Length: -1', 'Content-Length: 1e3',
      'Content-Length: 99999999999999999999', 'Transfer-Encoding: chunked, identity', 'Transfer-Encoding: gzip',
      'Transfer-Encoding : chunked', 'Host: echo', 'Host: elsewhere', 'Host:', ' folded', '\tfolded', 'Connection: close',
      'Connection: keep-alive, x-f-a', 'Expect: 100-continue', 'x-no-colon', ': no-name', 'x-ctl: a\x01b',
    ],
  }),
  fc.record({ op: fc.constant('hugeLine' as const), line: fc.nat(), size: fc.integer({ min: 50_000, max: 70_000 }) }),
  fc.record({ op: fc.constant('hugeUrl' as const), size: fc.integer({ min: 50_000, max: 70_000 }) }),
  // Another authority: no route (404), the client service whose endpoint refuses (503), or none (400).
  fc.record({ op: fc.constant('rehost' as const), which: fc.nat(), to: fc.constantFrom('nowhere', '', 'client', 'client.default:8080', 'echo.other') }),
);

function mutate(input: Buffer, m: Mutation): Buffer {
  switch (m.op) {
    case 'hugeLine':
      return insertLine(input, m.line, `x-huge: ${'h'.repeat(m.size)}`);
    case 'rehost': {
      const hosts = lineStarts(input).filter((at) => /^host:/i.test(input.subarray(at, at + 5).toString('latin1')));
      if (hosts.length === 0) return input;
      const at = hosts[m.which % hosts.length]! + 5;
      const end = input.indexOf('\r\n', at);
      return Buffer.concat([input.subarray(0, at), Buffer.from(` ${m.to}`), input.subarray(end)]);
    }
    case 'hugeUrl': {
      const sp = input.indexOf(' /');
      if (sp < 0) return input;
      return Buffer.concat([input.subarray(0, sp + 2), Buffer.alloc(m.size, 'u'), input.subarray(sp + 2)]);
    }
    default:
      return mutateBytes(input, m);
  }
}

// --- the oracle --------------------------------------------------------------------------------------------

type Expectation =
  | { kind: 'echo'; msg: RefMessage; path: string }
  | { kind: 'local'; status: number; reason: string; msg: RefMessage };

/** What the proxy answers to one request llhttp parsed (README table; routing as the README describes). */
function expectationFor(m: RefMessage): Expectation {
  let url = m.url ?? '';
  const hosts = values(m.lines, 'host');
  let authority = hosts.length === 1 ? hosts[0]! : '';
  // Absolute-form: the URL's authority wins over Host.
  if (url.charCodeAt(0) !== 47 && url !== '*') {
    const schemeEnd = url.indexOf('://');
    if (schemeEnd > 0) {
      const pathStart = url.indexOf('/', schemeEnd + 3);
      authority = pathStart < 0 ? url.slice(schemeEnd + 3) : url.slice(schemeEnd + 3, pathStart);
      url = pathStart < 0 ? '/' : url.slice(pathStart);
    }
  }
  if (authority === '' && m.major === 1 && m.minor >= 1) return { kind: 'local', status: 400, reason: 'bad_request', msg: m };
  const a = authority.toLowerCase();
  const routed = (domains: Set<string>) => (domains.has(a) || domains.has(stripPort(a))) && url.startsWith('/');
  // Paths are normalized before routing (src/http/path-normalize.ts, unit-tested there with Envoy's cases): the
  // backend sees the normalized path; a `%00` is a 400.
  const normalized = url.startsWith('/') ? normalizePath(url) : url;
  if (normalized === null) return { kind: 'local', status: 400, reason: 'bad_request', msg: m };
  if (routed(ECHO_DOMAINS)) return { kind: 'echo', msg: m, path: normalized };
  if (routed(CLIENT_DOMAINS)) return { kind: 'local', status: 503, reason: 'connect_failure', msg: m };
  return { kind: 'local', status: 404, reason: 'no_route', msg: m };
}

interface Plan {
  /** Answers owed, in order: one per complete request (and an early one for an unfinished request the proxy
   * answers itself before its body is in). */
  answers: Expectation[];
  /** After them: the connection stays open, closes, gets an error reply and closes, or (Upgrade/CONNECT) is
   * not judged here. */
  tail: 'open' | 'close' | 'error' | 'loose';
  /** Index of the first answer that has to be delimited by the close (so nothing can follow it). */
  closeAfter: number | null;
  errorStatus?: number;
  /** The request whose body the bad bytes are in (head parsed, not complete). */
  partial?: Expectation;
}

/** The echo backend answers without a length (chunked); an HTTP/1.0 client then gets a body delimited by
 * the close (README), so the connection ends after that answer. */
function closeDelimited(e: Expectation): boolean {
  return e.kind === 'echo' && e.msg.major === 1 && e.msg.minor === 0 && e.msg.method !== 'HEAD';
}

function planFor(ref: RefResult): Plan {
  const answers: Expectation[] = [];
  let closeAfter: number | null = null;
  const owe = (e: Expectation) => {
    if (closeAfter === null && closeDelimited(e)) closeAfter = answers.length;
    answers.push(e);
  };
  for (const m of ref.messages) {
    if (m.upgrade) return { answers, tail: 'loose', closeAfter };
    const e = expectationFor(m);
    if (!m.complete) {
      if (ref.error !== null && ref.error !== 'HPE_CLOSED_CONNECTION') {
        return { answers, tail: 'error', closeAfter, errorStatus: ref.error === 'HPE_HEADER_OVERFLOW' ? 431 : 400, partial: e };
      }
      // Unfinished: a local answer goes out before the body is in (README: its body is then read and dropped).
      if (e.kind === 'local') {
        owe(e);
        if (!m.keepAlive) return { answers, tail: 'close', closeAfter };
      }
      return { answers, tail: 'open', closeAfter };
    }
    owe(e);
    if (!m.keepAlive) return { answers, tail: 'close', closeAfter };
  }
  if (ref.stoppedEarly) return { answers, tail: 'loose', closeAfter };
  if (ref.error !== null && ref.error !== 'HPE_CLOSED_CONNECTION') {
    return { answers, tail: 'error', closeAfter, errorStatus: ref.error === 'HPE_HEADER_OVERFLOW' ? 431 : 400 };
  }
  return { answers, tail: 'open', closeAfter };
}

/** Why `r` is not the answer `e` asks for, or null when it is. */
function mismatch(r: ClientResponse | undefined, e: Expectation, checkHeaders: boolean): string | null {
  if (r === undefined) return 'missing';
  if (!r.complete) return `incomplete ${r.status}`;
  if (e.kind === 'local') {
    const reason = header(r.lines, 'x-pillion-reason');
    return r.status === e.status && reason === e.reason ? null : `want ${e.status} ${e.reason}, got ${r.status} ${reason}`;
  }
  if (r.status !== 200 || header(r.lines, 'x-backend') !== 'echo') return `want the backend's 200, got ${r.status} ${header(r.lines, 'x-pillion-reason')}`;
  if (e.msg.method === 'HEAD') return r.body.length === 0 ? null : 'a body in the answer to HEAD';
  let seen: { method: string; url: string; body: string; headers: Record<string, string> };
  try {
    seen = JSON.parse(r.body.toString('utf8'));
  } catch {
    return `backend body is not the echo: ${show(r.body, 200)}`;
  }
  if (seen.method !== e.msg.method) return `method ${seen.method} != ${e.msg.method}`;
  if (seen.url !== e.path) return `url ${show(seen.url)} != ${show(e.path)}`;
  if (seen.body !== e.msg.body.toString('utf8')) return `body differs (${seen.body.length} vs ${e.msg.body.length} bytes)`;
  if (checkHeaders) {
    for (let i = 0; i + 1 < e.msg.lines.length; i += 2) {
      const name = e.msg.lines[i]!.toLowerCase();
      if (!name.startsWith('x-f-')) continue;
      if (seen.headers[name] !== e.msg.lines[i + 1]) return `header ${name}: ${show(seen.headers[name] ?? '(none)')} != ${show(e.msg.lines[i + 1]!)}`;
    }
  }
  return null;
}

/** Why `responses` are not exactly `want`, or null. */
function sequenceMismatch(responses: readonly ClientResponse[], want: readonly Expectation[], checkHeaders: boolean): string | null {
  if (responses.length !== want.length) return `want ${want.length} answers, got ${responses.length} (${responses.map((r) => r.status).join(',')})`;
  for (let i = 0; i < want.length; i++) {
    const why = mismatch(responses[i], want[i]!, checkHeaders);
    if (why !== null) return `answer ${i}: ${why}`;
  }
  return null;
}

interface Outcome {
  ok: boolean;
  detail: string;
}

/**
 * Sends `input` cut into pieces and judges what comes back against the plan: a bad request behind good ones
 * gets its 400 after all of their answers (README).
 */
async function runCase(input: Buffer, cuts: readonly number[], pauseMs: number, checkHeaders: boolean): Promise<Outcome> {
  const ref = refParse('request', input, { maxHeaderSize: MAX_HEAD });
  const plan = planFor(ref);
  const conn = new RawConn(port);
  try {
    await conn.sendInPieces(input, cuts, pauseMs);
    // Every answer to a HEAD, the proxy's own included (KNOWN BUG 2, fixed), has no body; so has the error reply
    // to a HEAD whose own body was malformed (it answers that request).
    const erring = plan.tail === 'error' ? ref.messages.find((m) => !m.complete) : undefined;
    const methods = [...plan.answers.map((e) => e.msg.method ?? 'GET'), ...(erring === undefined ? [] : [erring.method ?? 'GET'])];
    // The answer before a pipelined 400 says `connection: close`, and the 400 still follows it (OBSERVATION in
    // the report: a client that honours the close never reads that 400); read on past the close to judge it.
    const parsed = () => clientResponses(conn.data, methods, conn.closed, plan.tail === 'error');
    const complete = () => parsed().responses.filter((r) => r.complete).length;
    const fail = (why: string): Outcome => ({
      ok: false,
      detail:
        `${why}\nplan: ${plan.tail} after ${plan.answers.map((a) => (a.kind === 'echo' ? 'echo' : a.status)).join(',')}` +
        ` (close-delimited at ${plan.closeAfter}; llhttp: ${ref.error ?? 'ok'})\nsent: ${show(input)}\ngot: ${show(conn.data)}`,
    });
    const ok = (): Outcome => ({ ok: true, detail: '' });

    if (plan.tail === 'loose') {
      // Upgrade / CONNECT: handed to the tunnel code; only survival and the final checks judge it.
      await conn.until(() => conn.closed, 300);
      return ok();
    }
    const closes = plan.tail !== 'open' || plan.closeAfter !== null;
    if (!closes) {
      if (!(await conn.until(() => complete() >= plan.answers.length || conn.closed, WAIT_MS))) return fail('hang: answers missing');
      await sleep(20); // anything extra would show now
      if (conn.closed) return fail('closed a connection that should stay open');
      const { responses, error } = parsed();
      if (error !== null) return fail(`client parse error ${error}`);
      const why = sequenceMismatch(responses, plan.answers, checkHeaders);
      if (why !== null) return fail(why);
      // The client leaves: the proxy must let go of the connection (and of any request in flight) at once.
      conn.socket.end();
      if (!(await conn.until(() => conn.closed, WAIT_MS))) return fail('hang: connection not closed after the client ended');
      return ok();
    }
    if (!(await conn.until(() => conn.closed, WAIT_MS))) return fail(`hang: connection not closed (tail ${plan.tail})`);
    const { responses, error } = parsed();
    if (error !== null) return fail(`client parse error ${error}`);
    // Up to and including an answer delimited by the close, and nothing after it.
    const uptoClose = plan.closeAfter === null ? null : plan.answers.slice(0, plan.closeAfter + 1);
    if (plan.tail !== 'error') {
      const why = sequenceMismatch(responses, uptoClose ?? plan.answers, checkHeaders);
      return why === null ? ok() : fail(why);
    }
    // tail 'error'. Either the answers up to a close-delimited one (the bad bytes come after it), or m answers
    // then the 400/431 (or, for a request answered early whose body then turned out bad, nothing more: README
    // "connection closed"), then the close.
    if (uptoClose !== null) {
      // Nothing may follow a body the close delimits (KNOWN BUG 4, fixed: the 400 was appended to it).
      if (sequenceMismatch(responses, uptoClose, checkHeaders) === null) return ok();
    }
    const g = plan.closeAfter ?? plan.answers.length;
    // A head both oversized and malformed: which one llhttp notices first depends on where the reads end (the
    // size is checked as each read's part of a line is handed over), so with a huge line either reply is right.
    const statuses = input.length > MAX_HEAD ? [400, 431] : [plan.errorStatus];
    const errorReply = (r: ClientResponse | undefined) =>
      r !== undefined &&
      r.complete &&
      statuses.includes(r.status) &&
      header(r.lines, 'x-pillion-reason') === (r.status === 431 ? 'headers_too_large' : 'bad_request');
    // The longest m that explains the answers (a 400 for a missing Host looks like the error reply, so try all).
    for (let m = Math.min(g, responses.length); m >= (g > 0 ? 1 : 0); m--) {
      if (sequenceMismatch(responses.slice(0, m), plan.answers.slice(0, m), checkHeaders) !== null) continue;
      const rest = responses.slice(m);
      if (rest.length !== 1) continue;
      // Every good answer before the 400 (KNOWN BUG 1, fixed: queued good requests were dropped).
      if (errorReply(rest[0])) return m === g ? ok() : fail(`${g - m} good pipelined requests not answered before the ${rest[0]!.status}`);
      if (m === plan.answers.length && plan.partial?.kind === 'local' && mismatch(rest[0], plan.partial, false) === null) return ok();
    }
    return fail(`want some of the ${g} answers, then one ${statuses.join('/')} reply (or the early answer), then the close`);
  } finally {
    conn.destroy();
  }
}


describe('downstream HTTP/1 codec fuzz', () => {
  it('answers valid pipelined requests, written in random pieces, with the backend\'s answers in order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(requestArb, { minLength: 1, maxLength: 4 }), splitsArb, async (reqs, { cuts, pauseMs }) => {
        const input = Buffer.concat(reqs.map(serialize));
        // Valid input: llhttp must agree it is valid (a generator bug otherwise), and the proxy must answer all.
        const ref = refParse('request', input, { maxHeaderSize: MAX_HEAD });
        expect(ref.error === null || ref.error === 'HPE_CLOSED_CONNECTION', `generator made invalid bytes: ${ref.error}`).toBe(true);
        const out = await runCase(input, cuts, pauseMs, true);
        expect(out.ok, out.detail).toBe(true);
      }),
      { seed: fuzzSeed(SEED), numRuns: fuzzRuns(150), endOnFailure: true },
    );
  }, FUZZ_TIMEOUT_MS);

  it('answers mutated requests as the README table says (400/431 and close, 404, or the backend) and never hangs', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(requestArb, { minLength: 1, maxLength: 3 }),
        fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
        splitsArb,
        async (reqs, mutations, { cuts, pauseMs }) => {
          let input: Buffer = Buffer.concat(reqs.map(serialize));
          for (const m of mutations) input = mutate(input, m);
          const out = await runCase(input, cuts, pauseMs, false);
          expect(out.ok, out.detail).toBe(true);
        },
      ),
      { seed: fuzzSeed(SEED + 1), numRuns: fuzzRuns(300), endOnFailure: true },
    );
  }, FUZZ_TIMEOUT_MS);

  it('still serves a normal request afterwards, with no request left active', async () => {
    const conn = new RawConn(port);
    try {
      conn.socket.write('GET /after-fuzz HTTP/1.1\r\nhost: echo\r\n\r\n');
      expect(await conn.until(() => clientResponses(conn.data, ['GET'], false).responses.some((r) => r.complete), WAIT_MS)).toBe(true);
      expect(clientResponses(conn.data, ['GET'], false).responses[0]!.status).toBe(200);
    } finally {
      conn.destroy();
    }
    expect(await settleMetric(proxy.adminPort, 'pillion_downstream_requests_active', '', 0)).toBe(0);
    expect(await settleMetric(proxy.adminPort, 'pillion_upstream_requests_active', '', 0)).toBe(0);
  });
});

describe('bugs the fuzz found (each fixed; kept as regression cases)', () => {
  // KNOWN BUG 1. README: "a bad request pipelined behind good ones gets its 400 after their answers". When good
  // requests are queued behind the one being answered and a bad one follows in the same read, failRequest()
  // empties the queue (h1-connection.ts `this.queue.length = 0`): the queued good requests are never answered,
  // and the 400 arrives where a pipelining client expects the answer to the first of them.
  // Minimal input: 'GET /a HTTP/1.1\r\nhost: echo\r\n\r\nGET /b HTTP/1.1\r\nhost: echo\r\n\r\nGARBAGE\r\n\r\n' in one
  // write. Got: 200 (/a), 400, close. Should be: 200 (/a), 200 (/b), 400, close.
  it('KNOWN BUG 1 (fixed): answers every good pipelined request before the 400 for a bad one behind them', async () => {
    const input = Buffer.from('GET /a HTTP/1.1\r\nhost: echo\r\n\r\nGET /b HTTP/1.1\r\nhost: echo\r\n\r\nGARBAGE\r\n\r\n');
    const out = await runCase(input, [], 0, false);
    expect(out.ok, out.detail).toBe(true);
  });

  // KNOWN BUG 2. A local reply to HEAD carries its body: H1Connection.reply() writes head + body whatever the
  // method (respond() set noBody, reply() ignores it). RFC 9110 §9.3.2: no content in a HEAD response; the
  // client reads the body bytes as the start of the next response (a desync on a keep-alive connection).
  // Minimal input: 'HEAD / HTTP/1.1\r\nhost: nowhere\r\n\r\n'. Got: 404 no_route with `content-length: 30` and
  // the 30 bytes "no route matches this request\n". Should be: the same head, no body.
  it('KNOWN BUG 2 (fixed): sends no body with a local reply to HEAD', async () => {
    const conn = new RawConn(port);
    try {
      conn.socket.write('HEAD / HTTP/1.1\r\nhost: nowhere\r\n\r\nGET / HTTP/1.1\r\nhost: nowhere\r\n\r\n');
      await conn.until(() => conn.data.includes('no route matches this request\n'), WAIT_MS);
      await sleep(50);
      const { responses, error } = clientResponses(conn.data, ['HEAD', 'GET'], false);
      expect(error, show(conn.data)).toBeNull();
      expect(responses.map((r) => [r.status, header(r.lines, 'x-pillion-reason')])).toEqual([
        [404, 'no_route'],
        [404, 'no_route'],
      ]);
    } finally {
      conn.destroy();
    }
  });

  // KNOWN BUG 4. An HTTP/1.0 keep-alive request whose answer has no length (the backend streams it chunked) gets
  // a body delimited by the close (README); when bad bytes follow it in the same read, the pending 400 is written
  // after that body (H1Connection.next() → replyAndClose), so the client reads "HTTP/1.1 400 Bad Request…" as
  // the last bytes of the backend's body: a corrupted response passed off as complete.
  // Minimal input: 'GET /a HTTP/1.0\r\nhost: echo\r\nconnection: keep-alive\r\n\r\nGARBAGE\r\n\r\n' in one write.
  // Got: 200 `connection: close`, body = the echo JSON + the raw 400 reply. Should be: the 200 with the echo
  // JSON alone, then the close (no 400 can follow a close-delimited body).
  it('KNOWN BUG 4 (fixed): writes nothing after a body delimited by the close', async () => {
    const conn = new RawConn(port);
    try {
      conn.socket.write('GET /a HTTP/1.0\r\nhost: echo\r\nconnection: keep-alive\r\n\r\nGARBAGE\r\n\r\n');
      expect(await conn.until(() => conn.closed, WAIT_MS)).toBe(true);
      const [answer] = clientResponses(conn.data, ['GET'], true).responses;
      expect(answer?.status).toBe(200);
      expect(() => JSON.parse(answer!.body.toString()), show(answer!.body)).not.toThrow();
    } finally {
      conn.destroy();
    }
  });

  // KNOWN BUG 6. A request body of 16 KiB or more whose last bytes arrive in the same read as enough of it to
  // fill the body stream (its highWaterMark, 16 KiB) stops the connection reading for good: onBody() pauses the
  // socket for backpressure, the message completes in that same read, and nothing resumes it (_read() is not
  // called on a stream that has ended; next() and onMessageComplete() leave bodyBackpressure set). The answer
  // goes out, then the next request on the keep-alive connection is never read, and neither is the client's
  // close: the connection stays until the 1 h idle timeout.
  // Minimal input, in one write: 'POST /a HTTP/1.1\r\nhost: echo\r\ncontent-length: 16384\r\n\r\n' + 16384 × 'x'; after
  // its 200, 'GET /b HTTP/1.1\r\nhost: echo\r\n\r\n' gets no answer. Should be: the 200 for /b.
  it('KNOWN BUG 6 (fixed): reads on after a large request body (the next request is answered)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 120_000 }), fc.boolean(), splitsArb, async (size, chunked, { cuts, pauseMs }) => {
        const body = Buffer.alloc(size, 'b');
        const first = chunked
          ? Buffer.concat([
              Buffer.from('POST /a HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\n'),
              ...(size === 0 ? [] : [Buffer.from(`${size.toString(16)}\r\n`), body, Buffer.from('\r\n')]),
              Buffer.from('0\r\n\r\n'),
            ])
          : Buffer.concat([Buffer.from(`POST /a HTTP/1.1\r\nhost: echo\r\ncontent-length: ${size}\r\n\r\n`), body]);
        const conn = new RawConn(port);
        try {
          await conn.sendInPieces(first, cuts, pauseMs);
          const count = (n: number) => () => clientResponses(conn.data, ['POST', 'GET'], false).responses.filter((r) => r.complete).length >= n;
          expect(await conn.until(count(1), WAIT_MS), 'first answer').toBe(true);
          conn.socket.write('GET /b HTTP/1.1\r\nhost: echo\r\n\r\n');
          expect(await conn.until(count(2), 1_000), `no answer to the request after a ${size}-byte body`).toBe(true);
        } finally {
          conn.destroy();
        }
      }),
      { seed: fuzzSeed(SEED + 3), numRuns: fuzzRuns(40), endOnFailure: true },
    );
  }, FUZZ_TIMEOUT_MS);

  // KNOWN BUG 3. A request header named `constructor` or `__proto__` (valid tokens) throws a TypeError in
  // headerMapFromFlat() (src/http/h1-parser.ts: `out[name]` finds Object.prototype's member, then
  // `prev.push(value)`), inside the parser callback: an uncaught exception, which ends a `pillion proxy`
  // process. One request from any client takes the sidecar down. The same function reads upstream response
  // heads and trailers (see h1-upstream.fuzz.test.ts). Minimal input:
  // 'GET / HTTP/1.1\r\nhost: echo\r\nconstructor: x\r\n\r\n'. Should be: the backend's 200 (the header forwarded).
  it('KNOWN BUG 3 (fixed): survives request headers named like Object.prototype members', async () => {
    const names = Object.getOwnPropertyNames(Object.prototype).filter((n) => /^[A-Za-z_]+$/.test(n));
    await survivesOnOwnProxy(
      fc.tuple(fc.constantFrom(...names), fieldValue).map(([name, value]) => `GET /p HTTP/1.1\r\nhost: echo\r\n${name}: ${value}\r\n\r\n`),
      30,
    );
  });

  // KNOWN BUG 5. A request with two `Connection` header lines throws a TypeError in connectionTokens()
  // (src/http/headers.ts: the header map holds an array there, `value.split` is not a function), called from
  // buildUpstreamHeaders() inside the parser callback: an uncaught exception, the end of a `pillion proxy`
  // process; in this process it also leaves the request counted in pillion_downstream_requests_active forever.
  // Minimal input: 'GET / HTTP/1.1\r\nhost: echo\r\nconnection: a\r\nconnection: b\r\n\r\n'. Should be: the
  // backend's 200 (both lines read as one list, RFC 9110 §5.3, their tokens dropped as hop-by-hop).
  it('KNOWN BUG 5 (fixed): survives a request with more than one Connection header line', async () => {
    await survivesOnOwnProxy(
      fc
        .array(fc.constantFrom('keep-alive', 'x-a', 'x-b, x-c', 'upgrade-not', 'te'), { minLength: 2, maxLength: 3 })
        .map((list) => `GET /c HTTP/1.1\r\nhost: echo\r\n${list.map((v) => `Connection: ${v}\r\n`).join('')}\r\n`),
      10,
    );
  }, FUZZ_TIMEOUT_MS);
});

/**
 * Runs each generated request on a proxy of its own (a crash leaves that connection's parser mid-message and,
 * for KNOWN BUG 5, a request counted active) and asserts an answer came and nothing was thrown. Uncaught
 * exceptions are trapped so they fail this test rather than the run (in the real process nothing catches them).
 */
async function survivesOnOwnProxy(requests: fc.Arbitrary<string>, numRuns: number): Promise<void> {
  const own = await startClientProxy('echo', echo.port);
  const uncaught: unknown[] = [];
  const trap = (e: unknown) => uncaught.push(e);
  process.prependListener('uncaughtException', trap);
  try {
    await fc.assert(
      fc.asyncProperty(requests, async (text) => {
        const conn = new RawConn(own.port('outbound'));
        try {
          conn.socket.write(text);
          const answered = await conn.until(() => clientResponses(conn.data, ['GET'], false).responses.some((r) => r.complete), 1_000);
          expect(uncaught.map(String), show(text)).toEqual([]);
          expect(answered, `no answer to ${show(text)}`).toBe(true);
          expect(clientResponses(conn.data, ['GET'], false).responses[0]!.status).toBe(200);
        } finally {
          conn.destroy();
        }
      }),
      { seed: fuzzSeed(SEED + 2), numRuns, endOnFailure: true },
    );
  } finally {
    process.removeListener('uncaughtException', trap);
    await own.close();
  }
}
