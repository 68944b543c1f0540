// The floor of our HTTP/2 codec: h2load (10 connections x 10 streams, a few seconds) against (a) a node:http2
// server and (b) a server on H2Session, both answering a small 200 in this process. Prints req/s and this
// process's CPU time per request (process.cpuUsage deltas: h2load is another process, so it is the server's).
// (c) the client role: H2Session clients in this process (same connections x streams) against an H2Session
// server in a child process, CPU per request of the client side.
// Run: npm run build && node dist/bench/h2-session-micro.js [--seconds 5] [--conns 10] [--streams 10]
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import { newHeaderMap } from '../src/http/headers.js';
import { H2Session, type H2SessionOwner } from '../src/h2/session.js';
import type { H2Stream, H2StreamOwner } from '../src/h2/stream.js';
import type { HeaderMap } from '../src/http/headers.js';
import type { DecodedHead } from '../src/h2/hpack.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    conns: { type: 'string', default: '10' },
    streams: { type: 'string', default: '10' },
    serve: { type: 'boolean', default: false },
  },
});
const SECONDS = Math.min(Math.max(Number(values.seconds), 1), 60);
const CONNS = Math.min(Math.max(Number(values.conns), 1), 100);
const STREAMS = Math.min(Math.max(Number(values.streams), 1), 100);

const BODY = Buffer.from('{"ok":true,"service":"bench-backend","size":"small"}');
const RESPONSE_HEADERS = newHeaderMap();
RESPONSE_HEADERS['content-type'] = 'application/json';
RESPONSE_HEADERS['content-length'] = String(BODY.length);

/** Server role owner: answers every request at once; a request body (none from h2load) is ignored. */
const owner: H2SessionOwner = {
  onStream(_session: H2Session, stream: H2Stream, _head: DecodedHead, endStream: boolean): void {
    stream.respond(200, RESPONSE_HEADERS, false);
    stream.write(BODY);
    stream.end(null);
    if (!endStream) stream.reset(0); // the request body is not wanted (h2load sends none)
  },
  onRemoteSettings(): void {},
  onGoaway(): void {},
  onSessionClose(): void {},
};

const OPTIONS = { maxConcurrentStreams: 100, maxHeaderListSize: 65_536, maxHeaderCount: 100 };

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function h2load(port: number): Promise<string> {
  const args = ['-D', String(SECONDS), '--warm-up-time', '1', '-c', String(CONNS), '-m', String(STREAMS), `http://127.0.0.1:${port}/small`];
  return new Promise((resolve, reject) => {
    execFile('h2load', args, { timeout: (SECONDS + 20) * 1000, maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(stdout);
    });
  });
}

interface Result {
  name: string;
  reqPerSec: number;
  succeeded: number;
  cpuUsPerReq: number;
}

async function measure(name: string, server: net.Server): Promise<Result> {
  const port = await listen(server);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const out = await h2load(port);
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  server.close();
  const rps = Number(/finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const succeeded = Number(/requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded/.exec(out)?.[1] ?? NaN);
  // Requests served during the warm-up second are not in h2load's totals: estimate them at the measured rate.
  const served = succeeded + rps * Math.max(0, wallMs / 1000 - SECONDS);
  return { name, reqPerSec: rps, succeeded, cpuUsPerReq: (cpu.user + cpu.system) / served };
}

function nodeServer(): net.Server {
  const server = http2.createServer({ settings: { maxConcurrentStreams: 100 } });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'application/json', 'content-length': BODY.length });
    stream.end(BODY);
  });
  server.on('error', () => {});
  return server as unknown as net.Server;
}

function ourServer(): net.Server {
  const server = net.createServer((socket) => {
    new H2Session(socket, 'server', OPTIONS, owner);
  });
  server.on('error', () => {});
  return server;
}

// ---- (c) client role ------------------------------------------------------------------------------------

const REQUEST_HEADERS = newHeaderMap();
REQUEST_HEADERS['user-agent'] = 'h2-session-micro';
REQUEST_HEADERS.accept = '*/*';

/** One connection of the load: keeps STREAMS requests in flight until `stopAt`. Shared methods, no closures. */
class LoadConnection implements H2SessionOwner, H2StreamOwner {
  session: H2Session | null = null;
  done = 0;
  failed = 0;
  inFlight = 0;
  stopAt = 0;
  onIdle: (() => void) | null = null;

  start(): void {
    for (let i = 0; i < STREAMS; i++) this.next();
  }
  next(): void {
    const s = this.session!;
    if (performance.now() >= this.stopAt || !s.canOpen) {
      if (this.inFlight === 0) this.onIdle?.();
      return;
    }
    this.inFlight++;
    s.request('GET', 'http', 'bench', '/small', REQUEST_HEADERS, true, this);
  }
  onStream(): void {}
  onRemoteSettings(): void {}
  onGoaway(): void {}
  onSessionClose(): void {}
  onHead(_stream: H2Stream, _head: DecodedHead, endStream: boolean): void {
    if (endStream) this.finish(true);
  }
  onData(): void {}
  onEnd(_stream: H2Stream, _trailers: HeaderMap | null): void {
    this.finish(true);
  }
  onReset(): void {
    this.finish(false);
  }
  onDrain(): void {}
  finish(ok: boolean): void {
    this.inFlight--;
    if (ok) this.done++;
    else this.failed++;
    this.next();
  }
}

async function measureClient(): Promise<Result> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve'], { stdio: ['ignore', 'pipe', 'inherit'] });
  child.on('error', () => {});
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      child.once('exit', () => reject(new Error('the server child exited')));
    });
    const conns: LoadConnection[] = [];
    for (let i = 0; i < CONNS; i++) {
      const c = new LoadConnection();
      const socket = net.connect(port, '127.0.0.1');
      c.session = new H2Session(socket, 'client', OPTIONS, c);
      conns.push(c);
    }
    const run = async (ms: number): Promise<{ done: number; failed: number; cpuUs: number; wallMs: number }> => {
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await Promise.all(
        conns.map(
          (c) =>
            new Promise<void>((resolve) => {
              c.done = 0;
              c.failed = 0;
              c.stopAt = t0 + ms;
              c.onIdle = resolve;
              c.start();
            }),
        ),
      );
      const cpu = process.cpuUsage(cpu0);
      return { done: conns.reduce((n, c) => n + c.done, 0), failed: conns.reduce((n, c) => n + c.failed, 0), cpuUs: cpu.user + cpu.system, wallMs: performance.now() - t0 };
    };
    await run(1000); // warm-up
    const r = await run(SECONDS * 1000);
    for (const c of conns) c.session!.close();
    return { name: 'client role', reqPerSec: (r.done * 1000) / r.wallMs, succeeded: r.done, cpuUsPerReq: r.cpuUs / r.done };
  } finally {
    child.kill();
  }
}

async function main(): Promise<void> {
  if (values.serve) {
    const server = ourServer();
    const port = await listen(server);
    process.stdout.write(`${port}\n`);
    return;
  }
  console.log(`h2load -D ${SECONDS} --warm-up-time 1 -c ${CONNS} -m ${STREAMS}, small 200, server in this process (pid ${process.pid})`);
  const results = [await measure('node:http2', nodeServer()), await measure('H2Session', ourServer())];
  for (const r of results) {
    console.log(`${r.name.padEnd(12)} ${r.reqPerSec.toFixed(0).padStart(8)} req/s  ${r.cpuUsPerReq.toFixed(1).padStart(6)} µs CPU/req  (${r.succeeded} succeeded)`);
  }
  console.log(`H2Session clients in this process (${CONNS} conns x ${STREAMS} streams, ${SECONDS} s) against an H2Session server in a child process:`);
  const c = await measureClient();
  console.log(`${c.name.padEnd(12)} ${c.reqPerSec.toFixed(0).padStart(8)} req/s  ${c.cpuUsPerReq.toFixed(1).padStart(6)} µs CPU/req  (${c.succeeded} completed)`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
