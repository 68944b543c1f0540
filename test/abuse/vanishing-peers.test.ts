// Peers that vanish without a word: a backend process SIGKILLed before and in the middle of its response, an
// HTTP/2 upstream that closes its TCP connection (FIN, no GOAWAY) mid-stream, upstreams that accept and never
// answer, and client processes SIGKILLed mid-request. Each answer is the one README's "When the proxy answers
// for itself" table gives (503 upstream_reset / connect_failure, 504 upstream_timeout; a response that had
// started is cut, never passed off as complete); after each, nothing is left in flight and a plain request works.
import { spawn, type ChildProcess } from 'node:child_process';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { startAbuseSidecar, type AbuseSidecar, type AbuseSidecarOptions } from './sidecar.js';
import {
  baseline,
  ERR,
  eventually,
  F,
  frame,
  headersFrames,
  listen,
  RawH2Client,
  requestBlock,
  rstStream,
  settleToBaseline,
  sleep,
  startRawH2Server,
  T,
  type Baseline,
  type RawH2Server,
} from './util.js';

const ROUTE_TIMEOUT_MS = 600;

// ==== a backend in its own process, to SIGKILL ============================================================

const KILLABLE = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  if (req.url === '/stream') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first chunk\\n');
    setInterval(() => res.write('more\\n'), 20);
    return;
  }
  if (req.url === '/hang') return;
  res.end('ok');
});
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

function startKillable(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['-e', KILLABLE], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`killable backend exited (${code})`)));
  });
}

async function sigkill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

// ==== an HTTP/2 upstream that hangs up (FIN, no GOAWAY) when told to =========================================

type H2FinMode = 'ok' | 'fin-before-response' | 'fin-mid-response' | 'bad-hpack';

/** A minimal hand-written HTTP/2 server: SETTINGS, ACKs, and per request what `mode` says. */
async function startH2Fin(): Promise<RawH2Server & { mode: H2FinMode }> {
  const server = await startRawH2Server((socket, f) => {
    if (f.type !== T.HEADERS || (f.flags & F.END_HEADERS) === 0) return;
    const status200 = Buffer.from([0x88]); // HPACK static table entry 8, `:status: 200`
    switch (state.mode) {
      case 'ok':
        socket.write(Buffer.concat([frame(T.HEADERS, F.END_HEADERS, f.stream, status200), frame(T.DATA, F.END_STREAM, f.stream, Buffer.from('ok'))]));
        break;
      case 'fin-before-response':
        socket.end();
        break;
      case 'fin-mid-response':
        socket.write(Buffer.concat([frame(T.HEADERS, F.END_HEADERS, f.stream, status200), frame(T.DATA, 0, f.stream, Buffer.from('partial'))]));
        setTimeout(() => socket.end(), 30);
        break;
      case 'bad-hpack':
        // An index past both tables: the proxy's HPACK decoder refuses it, GOAWAY(COMPRESSION_ERROR).
        socket.write(frame(T.HEADERS, F.END_HEADERS, f.stream, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])));
        break;
    }
  });
  const state = Object.assign(server, { mode: 'ok' as H2FinMode });
  return state;
}

// ==== a client in its own process, to SIGKILL ===============================================================

const CLIENT = `
const port = Number(process.env.PORT);
if (process.env.PROTO === 'h2') {
  const s = require('node:http2').connect('http://127.0.0.1:' + port);
  const st = s.request({ ':method': 'POST', ':path': '/hold', ':authority': 'backend' });
  st.write('part of a body');
  st.on('response', () => {});
} else {
  const req = require('node:http').request({ host: '127.0.0.1', port, method: 'POST', path: '/hold', headers: { host: 'backend', 'content-length': '1000' } });
  req.write('part of a body');
  req.on('error', () => {});
}
setInterval(() => {}, 1000);
`;

// ==== the sidecar ===========================================================================================

let backend: Backend;
let app: Backend;
let sidecar: AbuseSidecar;
let sidecarOptions: AbuseSidecarOptions;
let killablePort: number;
let killable: ChildProcess;
let h2fin: Awaited<ReturnType<typeof startH2Fin>>;
let silent: net.Server;
const silentSockets = new Set<net.Socket>();
/** /hold requests the backend has open: a client that vanishes must have its request cancelled here. */
let holding = 0;
let holdsSeen = 0;
/** /hold requests the backend saw end ('end': the body complete), which no vanished client's request may. */
let holdsCompleted = 0;
/** A stock Node HTTP/2 upstream: its /hold streams open now, and those that saw END_STREAM (a complete request). */
let h2up: http2.Http2Server;
const h2upSessions = new Set<http2.ServerHttp2Session>();
let h2upHolding = 0;
let h2upCompleted = 0;

async function freePort(): Promise<number> {
  const s = net.createServer();
  const port = await listen(s);
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

beforeAll(async () => {
  backend = await startHttpBackend('backend', (req, res) => {
    if (req.url === '/hold') {
      holding++;
      holdsSeen++;
      req.resume();
      req.on('end', () => holdsCompleted++);
      res.on('close', () => holding--);
      return;
    }
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  app = await startHttpBackend('app');
  killablePort = await freePort();
  killable = await startKillable(killablePort);
  h2fin = await startH2Fin();
  silent = net.createServer((s) => {
    silentSockets.add(s);
    s.on('close', () => silentSockets.delete(s));
    s.on('error', () => {});
    s.resume(); // reads everything, answers nothing
  });
  const silentPort = await listen(silent);
  h2up = http2.createServer();
  h2up.on('session', (session) => {
    h2upSessions.add(session);
    session.on('close', () => h2upSessions.delete(session));
    session.on('error', () => {});
  });
  h2up.on('stream', (stream) => {
    stream.on('error', () => {});
    h2upHolding++;
    stream.on('close', () => h2upHolding--);
    stream.resume();
    // Node emits 'end' on a reset stream too, destroyed by then: only a live stream's 'end' was END_STREAM.
    stream.on('end', () => {
      if (!stream.destroyed) h2upCompleted++;
    });
  });
  const h2upPort = await listen(h2up);
  const timeout = `\n    policy: { timeout: ${ROUTE_TIMEOUT_MS}ms, connectTimeout: 1s }`;
  const service = (name: string, protocol: string, port: number): string =>
    `  - name: ${name}\n    ports: [{ port: 8080, protocol: ${protocol} }]\n    endpoints: [{ address: 127.0.0.1, port: ${port} }]${timeout}\n`;
  const extra = service('killable', 'http', killablePort) + service('h2fin', 'http2', h2fin.port) + service('silent', 'http', silentPort) + service('silent2', 'http2', silentPort) + service('h2up', 'http2', h2upPort);
  sidecarOptions = { backendPort: backend.port, appPort: app.port, backendExtra: extra };
  sidecar = await startAbuseSidecar(sidecarOptions);
});

beforeEach(async () => {
  // One failed case must not take the next one's backend or sidecar with it.
  if (killable.killed || killable.exitCode !== null || killable.signalCode !== null) {
    await sigkill(killable);
    killable = await startKillable(killablePort);
  }
  h2fin.mode = 'ok';
  if (sidecar.alive()) return;
  await sidecar.close();
  sidecar = await startAbuseSidecar(sidecarOptions);
});

afterAll(async () => {
  if (killable) await sigkill(killable);
  await sidecar?.close();
  await h2fin?.close();
  for (const s of silentSockets) s.destroy();
  await new Promise<void>((r) => (silent ? silent.close(() => r()) : r()));
  for (const session of h2upSessions) session.destroy();
  await new Promise<void>((r) => (h2up ? h2up.close(() => r()) : r()));
  await backend?.close();
  await app?.close();
});

async function expectRecovered(base: Baseline): Promise<void> {
  expect(sidecar.alive(), `sidecar exited; stderr: ${sidecar.proc.stderr}`).toBe(true);
  const after = await settleToBaseline(sidecar, base, { fdSlack: 4, ms: 3_000 });
  expect(after.gauges).toEqual({ requests: base.requests, connections: base.connections, upstreamRequests: base.upstreamRequests });
  expect(after.fds, `fds ${base.fds} → ${after.fds}`).toBeLessThanOrEqual(base.fds + 4);
  expect(await sidecar.get()).toBe(200);
}

/** An HTTP/1.1 GET through the proxy that reports how its response ended. */
function getStream(host: string, path: string, onFirstByte?: () => void): Promise<{ status: number; complete: boolean; body: string; reason?: string }> {
  return new Promise((resolve) => {
    const req = http.request({ host: '127.0.0.1', port: sidecar.outbound, path, agent: false, headers: { host } }, (res) => {
      let body = '';
      let first = true;
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
        if (first) onFirstByte?.();
        first = false;
      });
      res.on('end', () => resolve({ status: res.statusCode!, complete: res.complete, body, reason: res.headers['x-pillion-reason'] as string | undefined }));
      res.on('error', () => resolve({ status: res.statusCode!, complete: false, body }));
      res.on('aborted', () => resolve({ status: res.statusCode!, complete: false, body }));
    });
    req.setTimeout(10_000, () => req.destroy());
    req.on('error', () => resolve({ status: 0, complete: false, body: '' }));
    req.end();
  });
}

/** An HTTP/2 GET through the proxy on its own connection: status, x-pillion-reason and the stream's reset code. */
async function h2Get(authority: string, path: string): Promise<{ status: number; reason?: string; rst: number }> {
  const session = http2.connect(`http://127.0.0.1:${sidecar.outbound}`);
  session.on('error', () => {});
  try {
    return await new Promise((resolve) => {
      const stream = session.request({ ':path': path, ':authority': authority }, { endStream: true });
      let status = 0;
      let reason: string | undefined;
      stream.on('response', (h) => {
        status = Number(h[':status']);
        reason = h['x-pillion-reason'] as string | undefined;
      });
      stream.on('data', () => {});
      stream.on('error', () => {});
      stream.on('close', () => resolve({ status, reason, rst: stream.rstCode ?? -1 }));
    });
  } finally {
    session.close();
  }
}

describe('a backend process SIGKILLed', () => {
  it('mid-response: the client sees its response cut (HTTP/1.1), then connect_failure, then service again', async () => {
    const base = await baseline(sidecar);
    const r = await getStream('killable', '/stream', () => {
      sigkill(killable).catch(() => {});
    });
    expect(r.status).toBe(200);
    expect(r.body).toContain('first chunk');
    expect(r.complete, 'a response cut by the upstream must not look complete').toBe(false);
    const refused = await request(sidecar.outbound, { host: 'killable', path: '/' });
    expect(refused.status).toBe(503);
    expect(refused.headers['x-pillion-reason']).toBe('connect_failure');
    killable = await startKillable(killablePort);
    expect((await request(sidecar.outbound, { host: 'killable', path: '/' })).status).toBe(200);
    await expectRecovered(base);
  });

  // Was a bug (src/http/exchange.ts, resetDownstream): a failure after an HTTP/2 client's response had started was
  // answered with h2stream.close(NGHTTP2_INTERNAL_ERROR); Node's close() first ends the writable side, so when no
  // written data was still queued (the usual case) the client got END_STREAM, a clean end, and the RST_STREAM
  // that followed was void (client rstCode 0): the truncated body passed for a complete response. The same path
  // serves a route timeout mid-response. The exchange now destroys the stream with an error, which sends
  // RST_STREAM INTERNAL_ERROR alone.
  it('mid-response, an HTTP/2 client gets RST_STREAM, not a clean end', async () => {
    const base = await baseline(sidecar);
    const session = http2.connect(`http://127.0.0.1:${sidecar.outbound}`);
    session.on('error', () => {});
    try {
      const outcome = await new Promise<{ status: number; rst: number }>((resolve) => {
        const stream = session.request({ ':path': '/stream', ':authority': 'killable' }, { endStream: true });
        let status = 0;
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.once('data', () => {
          sigkill(killable).catch(() => {});
        });
        stream.on('data', () => {});
        stream.on('error', () => {});
        stream.on('close', () => resolve({ status, rst: stream.rstCode ?? -1 }));
      });
      expect(outcome.status).toBe(200);
      // (Node's client emits 'end' on a reset stream too: the reset code is what tells a cut from a clean end.)
      expect(outcome.rst, 'RST_STREAM INTERNAL_ERROR, not END_STREAM').toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
    } finally {
      session.close();
    }
    killable = await startKillable(killablePort);
    await expectRecovered(base);
  });

  it('before responding: 503 upstream_reset', async () => {
    const base = await baseline(sidecar);
    const pending = request(sidecar.outbound, { host: 'killable', path: '/hang' });
    await sleep(150);
    await sigkill(killable);
    const r = await pending;
    expect(r.status).toBe(503);
    expect(r.headers['x-pillion-reason'], r.body).toBe('upstream_reset');
    killable = await startKillable(killablePort);
    await expectRecovered(base);
  });
});

describe('an HTTP/2 upstream that closes its connection (FIN, no GOAWAY)', () => {
  it('before or mid-response: the proxy lives, drops the dead connection and serves the next requests on a fresh one', async () => {
    const base = await baseline(sidecar);
    for (const mode of ['fin-before-response', 'fin-mid-response'] as const) {
      h2fin.mode = mode;
      const r = await getStream('h2fin', `/${mode}`);
      expect(r.status === 0 || r.status === 200 || r.status >= 500, `status ${r.status}`).toBe(true);
      h2fin.mode = 'ok';
      const before = h2fin.connections;
      const replies = await Promise.all(Array.from({ length: 5 }, (_, i) => request(sidecar.outbound, { host: 'h2fin', path: `/after-${i}` })));
      expect(replies.map((x) => x.status)).toEqual([200, 200, 200, 200, 200]);
      expect(replies.every((x) => x.body === 'ok')).toBe(true);
      expect(h2fin.connections).toBe(before + 1);
    }
    await expectRecovered(base);
  });

  // Was a bug (src/upstream/http2-pool.ts, onEnd): when an HTTP/2 upstream's connection closes (FIN, no GOAWAY)
  // with a stream open, Node's client emits 'end' on that stream (then 'close' with rstCode 8, CANCEL; no
  // 'aborted', no error), and the pool took 'end' for END_STREAM. Mid-response, the client got the truncated
  // body as a complete success (HTTP/1.1: the terminating chunk; HTTP/2: END_STREAM); before any response, the
  // exchange ended with no head: an HTTP/1.1 client saw the connection closed with no answer ("socket hang
  // up"), an HTTP/2 client a bare 502 without x-pillion-reason. The pool now takes 'end' for the end of the
  // response only on a live stream (a real END_STREAM comes before Node destroys it), else waits for 'close',
  // which reports the reset. (The pool is on src/h2 now: a FIN with streams open resets them, INTERNAL_ERROR.)
  // Upstream here: HEADERS(:status 200) + DATA("partial", no END_STREAM), socket.end().
  it('mid-response, the client sees its response cut, not a complete one', async () => {
    h2fin.mode = 'fin-mid-response';
    const r = await getStream('h2fin', '/cut');
    expect(r.status).toBe(200);
    expect(r.body).toBe('partial');
    expect(r.complete, 'a response cut by the upstream must not look complete').toBe(false);
    const h2 = await h2Get('h2fin', '/cut-h2');
    expect(h2.status).toBe(200);
    expect(h2.rst, 'RST_STREAM INTERNAL_ERROR, not END_STREAM').toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });

  it('before responding, the client gets 503 upstream_reset', async () => {
    h2fin.mode = 'fin-before-response';
    const r = await getStream('h2fin', '/none');
    expect(r.status).toBe(503);
    expect(r.reason).toBe('upstream_reset');
    const h2 = await h2Get('h2fin', '/none-h2');
    expect(h2.status).toBe(503);
    expect(h2.reason).toBe('upstream_reset');
  });
});

// Was a bug (src/upstream/http2-pool.ts): when the upstream sends something nghttp2 ends the session for (a header
// block it cannot decode), the proxy's session sends GOAWAY and from then on Node neither reads nor closes it nor
// tells anyone: the request waited for the route timeout (for ever without one), and every later request to
// the endpoint was put on the same dead session (the pool saw capacity) and waited too, until the 60 s idle
// timeout, which their own streams kept from firing. The pool then checked its sessions every 250 ms for one
// nghttp2 was done with; on src/h2 the session that sends a connection error GOAWAY ends itself and its streams.
describe('an HTTP/2 upstream whose response the proxy cannot decode (the proxy ends the session)', () => {
  it('the request gets 503 upstream_reset at once, the dead connection is closed, the next requests use a fresh one', async () => {
    const base = await baseline(sidecar);
    h2fin.mode = 'bad-hpack';
    const started = Date.now();
    const r = await request(sidecar.outbound, { host: 'h2fin', path: '/bad-hpack' });
    expect(r.status, r.body).toBe(503);
    expect(r.headers['x-pillion-reason']).toBe('upstream_reset');
    expect(Date.now() - started, 'answered before the route timeout').toBeLessThan(ROUTE_TIMEOUT_MS);
    h2fin.mode = 'ok';
    const before = h2fin.connections;
    const replies = await Promise.all(Array.from({ length: 5 }, (_, i) => request(sidecar.outbound, { host: 'h2fin', path: `/after-bad-${i}` })));
    expect(replies.map((x) => x.status)).toEqual([200, 200, 200, 200, 200]);
    expect(h2fin.connections).toBe(before + 1);
    expect(await eventually(() => h2fin.open, (n) => n === 1, 2_000), 'the dead connection was closed').toBe(1);
    await expectRecovered(base);
  });
});

describe('an upstream that accepts and never answers', () => {
  it('HTTP/1.1: 504 upstream_timeout at the route timeout, and the upstream connection is let go', async () => {
    const base = await baseline(sidecar);
    const started = Date.now();
    const replies = await Promise.all(Array.from({ length: 5 }, () => request(sidecar.outbound, { host: 'silent', path: '/' })));
    const took = Date.now() - started;
    for (const r of replies) {
      expect(r.status).toBe(504);
      expect(r.headers['x-pillion-reason']).toBe('upstream_timeout');
    }
    expect(took).toBeGreaterThanOrEqual(ROUTE_TIMEOUT_MS - 50);
    expect(took).toBeLessThan(ROUTE_TIMEOUT_MS + 1_500);
    // A connection with a request that never completed is never reused: the proxy closes it.
    expect(await eventually(() => silentSockets.size, (n) => n === 0, 2_000)).toBe(0);
    await expectRecovered(base);
  });

  it('HTTP/2 (no SETTINGS ever): 504 upstream_timeout at the route timeout', async () => {
    const base = await baseline(sidecar);
    const started = Date.now();
    const replies = await Promise.all(Array.from({ length: 3 }, () => request(sidecar.outbound, { host: 'silent2', path: '/' })));
    const took = Date.now() - started;
    for (const r of replies) {
      expect(r.status).toBe(504);
      expect(r.headers['x-pillion-reason']).toBe('upstream_timeout');
    }
    expect(took).toBeLessThan(ROUTE_TIMEOUT_MS + 1_500);
    await expectRecovered(base);
  });
});

describe('a client process SIGKILLed mid-request', () => {
  for (const proto of ['h1', 'h2'] as const) {
    const name = `${proto === 'h1' ? 'HTTP/1.1' : 'HTTP/2'}: the upstream request is cancelled at once and nothing stays behind`;
    const body = async (): Promise<void> => {
      const base = await baseline(sidecar);
      const seen = holdsSeen;
      const completed = holdsCompleted;
      const child = spawn(process.execPath, ['-e', CLIENT], { env: { ...process.env, PORT: String(sidecar.outbound), PROTO: proto }, stdio: 'ignore' });
      try {
        expect(await eventually(() => holdsSeen, (n) => n > seen, 5_000), 'the request reached the backend').toBe(seen + 1);
        expect(holding).toBe(1);
        await sigkill(child);
        expect(await eventually(() => holding, (n) => n === 0, 2_000), 'the backend request was cancelled').toBe(0);
        expect(holdsCompleted, 'the backend took the truncated body for a complete request').toBe(completed);
        await expectRecovered(base);
      } finally {
        await sigkill(child);
      }
    };
    // HTTP/2 was a bug (see http2-floods.test.ts, the FIN case): the kernel closes a killed process's sockets
    // with FIN; the proxy's HTTP/2 session on an allowHalfOpen socket never learned of it, so the request to the
    // backend stayed open until the route timeout (15 s by default; never on gRPC routes) and the connection
    // until the 1 h idle timeout.
    it(name, body);
  }
});

// Was a bug (src/http/exchange.ts, src/upstream/http2-pool.ts): when an HTTP/2 client's stream went away
// mid-upload (RST_STREAM, or its connection closed), Node emitted 'end' on the request body as if the client had
// sent END_STREAM, and the proxy passed that on: an HTTP/1.1 upstream got the terminating chunk of a chunked
// body, an HTTP/2 upstream END_STREAM (and only then RST_STREAM CANCEL, sent with close(), which ends the
// writable side first), so both took the truncated upload for a complete request. The exchange now cancels
// the upstream request at the stream's 'aborted' (before that 'end'), and the HTTP/2 pool cancels with
// RST_STREAM alone and unpipes the body.
describe('an HTTP/2 client that goes away mid-upload', () => {
  for (const upstream of ['backend', 'h2up'] as const) {
    for (const how of ['RST_STREAM', 'connection closed'] as const) {
      it(`${how}, ${upstream === 'backend' ? 'HTTP/1.1' : 'HTTP/2'} upstream: the upstream request is cancelled, never completed`, async () => {
        const base = await baseline(sidecar);
        const open = (): number => (upstream === 'backend' ? holding : h2upHolding);
        const done = (): number => (upstream === 'backend' ? holdsCompleted : h2upCompleted);
        const completed = done();
        const c = new RawH2Client(sidecar.outbound);
        try {
          await c.ready;
          await c.write(Buffer.concat([headersFrames(1, requestBlock(upstream, '/hold', 'POST'), false), frame(T.DATA, 0, 1, Buffer.from('part of a body'))]));
          expect(await eventually(open, (n) => n === 1, 3_000), 'the request reached the upstream').toBe(1);
          if (how === 'RST_STREAM') await c.write(rstStream(1, ERR.CANCEL));
          else c.destroy();
          expect(await eventually(open, (n) => n === 0, 2_000), 'the upstream request was cancelled').toBe(0);
          expect(done(), 'the upstream took the truncated body for a complete request').toBe(completed);
        } finally {
          c.destroy();
        }
        await expectRecovered(base);
      });
    }
  }
});
