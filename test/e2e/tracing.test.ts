// Trace context through two real sidecars (client outbound → server inbound → app): a trace starts at the first
// hop when the request has none, each hop is a span (new span id, the caller's as parent), W3C and B3 go on
// consistent, and every access log line carries the trace id. HTTP/1.1, HTTP/2 and gRPC alike.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { h2request, request } from '../helpers/client.js';
import { echoClient, grpc, startEchoServerWith, type EchoServer } from '../helpers/grpc.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

let app: Backend;
let echo: EchoServer;
let client: RunningProxy;
let server: RunningProxy;
let grpcServer: RunningProxy;
let logDir: string;
/** An app that answers an Upgrade with 101 and the request headers it got, as JSON. */
let upgradeApp: http.Server;

beforeAll(async () => {
  app = await startHttpBackend('app');
  // Answers with the trace headers the gRPC app received (metadata), so the test sees what the last hop sent.
  echo = await startEchoServerWith({
    Unary(call: { metadata: grpc.Metadata }, cb: (err: null, reply: { text: string }) => void) {
      cb(null, { text: `${String(call.metadata.get('traceparent')[0])} ${String(call.metadata.get('tracestate')[0])}` });
    },
    Chat(call: { end(): void }) {
      call.end();
    },
  });
  upgradeApp = http.createServer();
  upgradeApp.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    socket.on('error', () => {});
    socket.end(`HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n${JSON.stringify(req.headers)}`);
  });
  await new Promise<void>((r) => upgradeApp.listen(0, '127.0.0.1', r));
  const upgradePort = (upgradeApp.address() as net.AddressInfo).port;
  const webInbound = await freePort();
  const greeterInbound = await freePort();
  const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${webInbound} }]
  - name: greeter
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${greeterInbound} }]
  - name: ws
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${upgradePort} }]
`;
  logDir = mkdtempSync(join(tmpdir(), 'pillion-trace-'));
  client = await startProxy(mesh, { service: 'client', accessLog: join(logDir, 'client.log') });
  server = await startProxy(mesh, { service: 'web', appPort: app.port, inboundPort: webInbound, accessLog: join(logDir, 'web.log') });
  grpcServer = await startProxy(mesh, { service: 'greeter', appPort: echo.port, inboundPort: greeterInbound, accessLog: join(logDir, 'greeter.log') });
});

afterAll(async () => {
  await Promise.all([client?.close(), server?.close(), grpcServer?.close()]);
  await Promise.all([app?.close(), echo?.close(), new Promise((r) => (upgradeApp === undefined ? r(undefined) : upgradeApp.close(r)))]);
  if (logDir !== undefined) rmSync(logDir, { recursive: true, force: true });
});

type Line = Record<string, string | number>;

/** The access log line of `file` whose path is `path`, waiting for the asynchronous write. */
async function logLine(file: string, path: string): Promise<Line> {
  const full = join(logDir, file);
  for (let i = 0; i < 100; i++) {
    if (existsSync(full)) {
      const lines = readFileSync(full, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
      const found = lines.find((l) => l.path === path);
      if (found !== undefined) return found;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no access log line for ${path} in ${file}`);
}

/** The request headers the app received, for a request through both sidecars. */
async function throughMesh(path: string, headers: Record<string, string> = {}): Promise<Record<string, string>> {
  const reply = await request(client.port('outbound'), { host: 'web:8080', path, headers });
  expect(reply.status).toBe(200);
  return (JSON.parse(reply.body) as { headers: Record<string, string> }).headers;
}

describe('W3C trace context across two sidecars', () => {
  it('starts a trace at the outbound sidecar; one trace id end to end, each hop a span with the previous as parent', async () => {
    const seen = await throughMesh('/new');
    const m = TRACEPARENT.exec(seen.traceparent ?? '');
    expect(m).not.toBeNull();
    const [, traceId, parentOfApp, flags] = m!;
    expect(flags).toBe('01');
    const out = await logLine('client.log', '/new');
    const inb = await logLine('web.log', '/new');
    expect(out.trace_id).toBe(traceId);
    expect(inb.trace_id).toBe(traceId);
    expect(out.parent_span_id).toBe('-');
    expect(inb.parent_span_id).toBe(out.span_id);
    expect(parentOfApp).toBe(inb.span_id);
    expect(out.span_id).not.toBe(inb.span_id);
    // x-request-id: made at the first hop, kept by the second.
    expect(seen['x-request-id']).toBe(out.request_id);
    expect(inb.request_id).toBe(out.request_id);
  });

  it("keeps the caller's trace id and flags, replaces the parent-id, passes tracestate on", async () => {
    const seen = await throughMesh('/continued', { traceparent: `00-${TRACE}-${PARENT}-00`, tracestate: 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE' });
    const [, traceId, parent, flags] = TRACEPARENT.exec(seen.traceparent ?? '')!;
    expect(traceId).toBe(TRACE);
    expect(flags).toBe('00');
    expect(parent).not.toBe(PARENT);
    expect(seen.tracestate).toBe('rojo=00f067aa0ba902b7,congo=t61rcWkgMzE');
    const out = await logLine('client.log', '/continued');
    expect(out.trace_id).toBe(TRACE);
    expect(out.parent_span_id).toBe(PARENT);
    expect(parent).toBe((await logLine('web.log', '/continued')).span_id);
  });

  it('replaces a malformed traceparent with a new trace and drops its tracestate', async () => {
    const seen = await throughMesh('/malformed', { traceparent: `00-${TRACE.toUpperCase()}-${PARENT}-01`, tracestate: 'rojo=1' });
    const [, traceId] = TRACEPARENT.exec(seen.traceparent ?? '')!;
    expect(traceId).not.toBe(TRACE);
    expect(traceId).not.toBe(TRACE.toUpperCase());
    expect(seen.tracestate).toBeUndefined();
    expect((await logLine('client.log', '/malformed')).trace_id).toBe(traceId);
  });

  it('gives a request the proxy answers itself (no route) the trace id in its access log line', async () => {
    const reply = await request(client.port('outbound'), { host: 'nowhere:8080', path: '/noroute', headers: { traceparent: `00-${TRACE}-${PARENT}-01` } });
    expect(reply.status).toBe(404);
    expect((await logLine('client.log', '/noroute')).trace_id).toBe(TRACE);
  });
});

describe('B3', () => {
  it('multi-header in, multi-header out: same trace, the last hop as span, its caller as parent; traceparent agrees', async () => {
    const seen = await throughMesh('/b3multi', { 'x-b3-traceid': TRACE, 'x-b3-spanid': PARENT, 'x-b3-sampled': '1' });
    const inb = await logLine('web.log', '/b3multi');
    expect(seen['x-b3-traceid']).toBe(TRACE);
    expect(seen['x-b3-spanid']).toBe(inb.span_id);
    expect(seen['x-b3-parentspanid']).toBe(inb.parent_span_id);
    expect(seen['x-b3-sampled']).toBe('1');
    expect(seen.traceparent).toBe(`00-${TRACE}-${String(inb.span_id)}-01`);
    expect((await logLine('client.log', '/b3multi')).parent_span_id).toBe(PARENT);
    expect(seen.b3).toBeUndefined();
  });

  it('single header in (64-bit trace id), single header out; wins over a traceparent of another trace', async () => {
    const short = 'a3ce929d0e0e4736';
    const seen = await throughMesh('/b3single', { b3: `${short}-${PARENT}-0`, traceparent: `00-${TRACE}-${PARENT}-01` });
    const inb = await logLine('web.log', '/b3single');
    expect(seen.b3).toBe(`${short}-${String(inb.span_id)}-0-${String(inb.parent_span_id)}`);
    expect(seen.traceparent).toBe(`00-0000000000000000${short}-${String(inb.span_id)}-00`);
    expect(inb.trace_id).toBe(`0000000000000000${short}`);
  });
});

describe('HTTP/2 and gRPC', () => {
  it('an HTTP/2 request through both sidecars gets the same treatment', async () => {
    const session = http2.connect(`http://127.0.0.1:${client.port('outbound')}`);
    session.on('error', () => {});
    try {
      const r = await h2request(session, { ':path': '/h2', ':authority': 'web:8080', traceparent: `00-${TRACE}-${PARENT}-01` });
      expect(r.headers[':status']).toBe(200);
      const seen = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
      const inb = await logLine('web.log', '/h2');
      expect(seen.traceparent).toBe(`00-${TRACE}-${String(inb.span_id)}-01`);
      expect(inb.protocol).toBe('HTTP/1.1');
      expect((await logLine('client.log', '/h2')).protocol).toBe('HTTP/2');
    } finally {
      session.close();
    }
  });

  it('a gRPC call keeps its trace id across both sidecars, with a new parent and tracestate kept', async () => {
    const c = echoClient(client.port('outbound'), 'greeter:50051');
    try {
      const md = new grpc.Metadata();
      md.set('traceparent', `00-${TRACE}-${PARENT}-01`);
      md.set('tracestate', 'congo=t61rcWkgMzE');
      const text = await new Promise<string>((resolve, reject) =>
        c.Unary({ text: 'x' }, md, (err: Error | null, reply: { text: string }) => (err ? reject(err) : resolve(reply.text))),
      );
      const [traceparent, tracestate] = text.split(' ');
      const inb = await logLine('greeter.log', '/pillion.test.Echo/Unary');
      expect(traceparent).toBe(`00-${TRACE}-${String(inb.span_id)}-01`);
      expect(tracestate).toBe('congo=t61rcWkgMzE');
      expect(inb.trace_id).toBe(TRACE);
      expect(inb.parent_span_id).toBe((await logLine('client.log', '/pillion.test.Echo/Unary')).span_id);
    } finally {
      c.close();
    }
  });
});

describe('HTTP Upgrade', () => {
  it('an upgrade request is a span too: trace kept, its headers replaced by this hop\'s, tracestate kept', async () => {
    const sock = net.connect(client.port('outbound'), '127.0.0.1');
    sock.on('error', () => {});
    let data = '';
    sock.on('data', (d: Buffer) => (data += String(d)));
    const ended = new Promise((r) => sock.on('close', r));
    sock.write(
      `GET /ws HTTP/1.1\r\nhost: ws:8080\r\nconnection: upgrade\r\nupgrade: echo\r\ntraceparent: 00-${TRACE}-${PARENT}-01\r\n` +
        `tracestate: congo=t61rcWkgMzE\r\nx-b3-traceid: ${TRACE}\r\nx-b3-spanid: ${PARENT}\r\n\r\n`,
    );
    await ended;
    expect(data).toContain('101 Switching Protocols');
    const seen = JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4)) as Record<string, string>;
    const [, traceId, parent] = TRACEPARENT.exec(seen.traceparent ?? '')!;
    expect(traceId).toBe(TRACE);
    expect(parent).not.toBe(PARENT);
    expect(seen['x-b3-traceid']).toBe(TRACE);
    expect(seen['x-b3-spanid']).toBe(parent);
    expect(seen['x-b3-parentspanid']).toBe(PARENT);
    expect(seen.tracestate).toBe('congo=t61rcWkgMzE');
  });
});
