// Opaque TCP through an egress port, the inbound listener to the app, and protocol sniffing on `auto` ports.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import * as http2 from 'node:http2';
import { freePort, startHttpBackend, startTcpEcho, deadPort, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request, h2request } from '../helpers/client.js';

let echo: Backend;
let app: Backend;
let autoApp: Backend;
let client: RunningProxy;
let server: RunningProxy;
let autoServer: RunningProxy;
let egressPort: number;
let deadEgressPort: number;

beforeAll(async () => {
  echo = await startTcpEcho();
  app = await startHttpBackend('app');
  // An app that speaks HTTP on some connections and a line protocol on others (an `auto` port).
  autoApp = await startPolyglotApp();
  const dead = await deadPort();
  egressPort = await freePort();
  deadEgressPort = await freePort();
  const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    egress:
      - { localPort: ${egressPort}, service: db, port: 5432 }
      - { localPort: ${deadEgressPort}, service: deaddb, port: 5432 }
  - name: db
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${echo.port} }]
  - name: deaddb
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${dead} }, { address: 127.0.0.1, port: ${dead} }]
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: mixed
    ports: [{ port: 9000, protocol: auto }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`;
  client = await startProxy(mesh, { service: 'client' });
  server = await startProxy(mesh, { service: 'web', appPort: app.port });
  autoServer = await startProxy(mesh, { service: 'mixed', appPort: autoApp.port });
});

afterAll(async () => {
  await Promise.all([client.close(), server.close(), autoServer.close()]);
  await Promise.all([echo.close(), app.close(), autoApp.close()]);
});

/** An app port that answers HTTP requests with their raw head as the body, and echoes anything else. */
async function startPolyglotApp(): Promise<Backend> {
  const srv = net.createServer({ allowHalfOpen: true });
  const backend: Backend = { port: 0, hits: 0, close: () => new Promise((r) => srv.close(() => r())) };
  srv.on('connection', (socket) => {
    backend.hits++;
    socket.once('data', (first: Buffer) => {
      const text = first.toString('latin1');
      if (!text.startsWith('GET ')) {
        socket.write(first);
        socket.pipe(socket);
        return;
      }
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      socket.end(`HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(head)}\r\nconnection: close\r\n\r\n${head}`);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  backend.port = (srv.address() as net.AddressInfo).port;
  return backend;
}

function tcpRoundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }, () => {
      socket.end(payload); // half-close: the echo server still answers, then closes its side
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks)));
    socket.on('error', reject);
  });
}

describe('TCP proxy', () => {
  it('pipes bytes both ways and honours half-close', async () => {
    const payload = Buffer.alloc(3 * 1024 * 1024, 7);
    payload.write('start');
    const back = await tcpRoundTrip(egressPort, payload);
    expect(back.length).toBe(payload.length);
    expect(back.equals(payload)).toBe(true);
  });

  it('closes the client connection when no endpoint accepts', async () => {
    const result = await new Promise<string>((resolve) => {
      const socket = net.connect(deadEgressPort, '127.0.0.1');
      socket.on('error', () => resolve('error'));
      socket.on('close', () => resolve('closed'));
    });
    expect(['error', 'closed']).toContain(result);
  });
});

describe('inbound listener', () => {
  it('forwards to the app on 127.0.0.1:appPort', async () => {
    const reply = await request(server.port('inbound'), { host: 'web.default:8080', path: '/in' });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).name).toBe('app');
  });

  it('accepts HTTP/2 prior knowledge on an HTTP port', async () => {
    const session = http2.connect(`http://127.0.0.1:${server.port('inbound')}`);
    try {
      const r = await h2request(session, { ':path': '/h2in', ':authority': 'web' });
      expect(r.headers[':status']).toBe(200);
      expect(JSON.parse(r.body).url).toBe('/h2in');
    } finally {
      session.close();
    }
  });
});

describe('protocol sniffing on an auto port', () => {
  it('closes a connection that hangs up before sending anything', async () => {
    const closed = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ port: autoServer.port('inbound'), host: '127.0.0.1', allowHalfOpen: true }, () => socket.end());
      socket.on('close', () => resolve(true));
      socket.on('error', () => resolve(true));
      socket.resume();
    });
    expect(closed).toBe(true);
    // Nothing is left open on the proxy's side either.
    await expect
      .poll(async () => (await (await fetch(`http://127.0.0.1:${autoServer.adminPort}/metrics`)).text()).match(/pillion_downstream_connections_active\{listener="inbound"\} (\d+)/)?.[1])
      .toBe('0');
  });

  it('sends non-HTTP bytes through as TCP', async () => {
    const back = await tcpRoundTrip(autoServer.port('inbound'), Buffer.from('\x00\x01binary hello'));
    expect(back.toString('latin1')).toBe('\x00\x01binary hello');
  });

  it('sends a request line through the HTTP chain (the request arrives re-framed, with x-forwarded-for)', async () => {
    const reply = await request(autoServer.port('inbound'), { host: 'mixed', path: '/sniffed' });
    expect(reply.status).toBe(200);
    expect(reply.body).toMatch(/^GET \/sniffed HTTP\/1.1/);
    expect(reply.body).toMatch(/x-forwarded-for: 127.0.0.1/i);
  });
});
