// The floor of our HTTP/2 codec: h2load (10 connections x 10 streams, a few seconds) against (a) a node:http2
// server and (b) a server on H2Session, both answering a small 200 in this process. Prints req/s and this
// process's CPU time per request (process.cpuUsage deltas: h2load is another process, so it is the server's).
// Run: npm run build && node dist/bench/h2-session-micro.js [--seconds 5] [--conns 10] [--streams 10]
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { execFile } from 'node:child_process';
import { parseArgs } from 'node:util';
import type { AddressInfo } from 'node:net';
import { newHeaderMap } from '../src/http/headers.js';
import { H2Session, type H2SessionOwner, type H2Stream } from '../src/h2/session.js';
import type { DecodedHead } from '../src/h2/hpack.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    conns: { type: 'string', default: '10' },
    streams: { type: 'string', default: '10' },
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

async function main(): Promise<void> {
  console.log(`h2load -D ${SECONDS} --warm-up-time 1 -c ${CONNS} -m ${STREAMS}, small 200, server in this process (pid ${process.pid})`);
  const results = [await measure('node:http2', nodeServer()), await measure('H2Session', ourServer())];
  for (const r of results) {
    console.log(`${r.name.padEnd(12)} ${r.reqPerSec.toFixed(0).padStart(8)} req/s  ${r.cpuUsPerReq.toFixed(1).padStart(6)} µs CPU/req  (${r.succeeded} succeeded)`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
