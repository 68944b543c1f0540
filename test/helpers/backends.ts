// Real upstream servers for tests: HTTP/1.1, HTTP/2 cleartext and TCP echo, on 127.0.0.1 with OS-picked ports.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';

export interface Backend {
  port: number;
  /** Requests (or connections, for TCP) served so far. */
  hits: number;
  close(): Promise<void>;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function closer(server: net.Server & { closeAllConnections?: () => void }, sockets: Set<net.Socket>): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
}

function track(server: net.Server): Set<net.Socket> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return sockets;
}

export type H1Handler = (req: http.IncomingMessage, res: http.ServerResponse, backend: Backend) => void;

/** Default handler: echoes method, url, selected headers and the body as JSON, tagged with `name`. */
export async function startHttpBackend(name: string, handler?: H1Handler): Promise<Backend> {
  const server = http.createServer();
  const sockets = track(server);
  const backend: Backend = { port: 0, hits: 0, close: closer(server, sockets) };
  server.on('request', (req, res) => {
    backend.hits++;
    if (handler !== undefined) return handler(req, res, backend);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name });
      res.end(body);
    });
  });
  backend.port = await listen(server);
  return backend;
}

export async function startH2Backend(name: string): Promise<Backend> {
  const server = http2.createServer();
  const sockets = track(server);
  const backend: Backend = { port: 0, hits: 0, close: closer(server, sockets) };
  server.on('stream', (stream, headers) => {
    backend.hits++;
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-backend': name });
      stream.end(JSON.stringify({ name, path: headers[':path'], authority: headers[':authority'], body: Buffer.concat(chunks).toString() }));
    });
  });
  backend.port = await listen(server);
  return backend;
}

export async function startTcpEcho(): Promise<Backend> {
  const server = net.createServer({ allowHalfOpen: true });
  const sockets = track(server);
  const backend: Backend = { port: 0, hits: 0, close: closer(server, sockets) };
  server.on('connection', (socket) => {
    backend.hits++;
    socket.pipe(socket);
  });
  backend.port = await listen(server);
  return backend;
}

/** A port with nothing listening (bound then closed). */
export async function deadPort(): Promise<number> {
  const server = net.createServer();
  const port = await listen(server);
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** A port free now (bound then closed), for a listener a test must name before it starts (a sidecar's inbound). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
