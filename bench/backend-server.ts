// Benchmark backend, run as its own process so it has its own core time: HTTP/1.1 (`/small`, `/large`),
// HTTP/2 cleartext (prior knowledge, for h2load; also a gRPC echo service for bench/grpc-load.ts) and a TCP sink
// that counts bytes and acknowledges at the end.
// Binds 127.0.0.1 on the given ports (0 = any) and prints one JSON line with the bound ports.
import { createServer as createHttpServer } from 'node:http';
import { createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import { GRPC_STREAM_PATH, GRPC_UNARY_PATH } from './grpc-load.js';

const { values } = parseArgs({
  options: {
    'http-port': { type: 'string', default: '0' },
    'h2-port': { type: 'string', default: '0' },
    'tcp-port': { type: 'string', default: '0' },
  },
});

const SMALL = Buffer.from('{"ok":true,"service":"bench-backend","size":"small"}');
const LARGE = Buffer.alloc(1 << 20, 'x');
const NOT_FOUND = Buffer.from('not found\n');

function pick(path: string | undefined): Buffer | undefined {
  if (path === undefined) return undefined;
  if (path.startsWith('/small')) return SMALL;
  if (path.startsWith('/large')) return LARGE;
  if (path === '/' || path.startsWith('/?')) return SMALL;
  return undefined;
}

const http1 = createHttpServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const body = pick(req.url);
  // Drain any request body before answering, so keep-alive connections stay usable.
  req.resume();
  if (!body) {
    res.writeHead(404, { 'content-type': 'text/plain', 'content-length': NOT_FOUND.length });
    res.end(NOT_FOUND);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
});
http1.headersTimeout = 0;
http1.requestTimeout = 0;

const GRPC_HEAD = { 'content-type': 'application/grpc' };
const GRPC_OK = { 'grpc-status': '0' };

/**
 * gRPC echo: every byte of the request (length-prefixed messages) goes back as it arrives, then trailers with
 * grpc-status 0. A unary call gets its one message back; a bidirectional stream gets each message as it comes.
 */
function grpcEcho(req: Http2ServerRequest, res: Http2ServerResponse): void {
  res.writeHead(200, GRPC_HEAD);
  req.on('data', (chunk: Buffer) => res.write(chunk));
  req.on('end', () => {
    res.addTrailers(GRPC_OK);
    res.end();
  });
}

const h2 = createH2Server({ settings: { maxConcurrentStreams: 1000 } }, (req, res) => {
  if (req.url === GRPC_UNARY_PATH || req.url === GRPC_STREAM_PATH) return grpcEcho(req, res);
  const body = pick(req.url);
  req.resume();
  if (!body) {
    res.writeHead(404, { 'content-type': 'text/plain', 'content-length': NOT_FOUND.length });
    res.end(NOT_FOUND);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
});

// TCP sink: counts every byte; on the client's half-close answers `ok <bytes>\n` and closes.
const tcp = createTcpServer({ allowHalfOpen: true }, (sock) => {
  let n = 0;
  sock.on('data', (chunk: Buffer) => {
    n += chunk.length;
  });
  sock.on('end', () => sock.end(`ok ${n}\n`));
  sock.on('error', () => sock.destroy());
});

function listen(server: Server | ReturnType<typeof createH2Server>, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

const ports = {
  http: await listen(http1, Number(values['http-port'])),
  h2: await listen(h2, Number(values['h2-port'])),
  tcp: await listen(tcp, Number(values['tcp-port'])),
};
process.stdout.write(`${JSON.stringify({ msg: 'backend listening', ...ports })}\n`);

const stop = (): void => {
  http1.closeAllConnections();
  http1.close();
  h2.close();
  tcp.close();
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
