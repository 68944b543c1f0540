// One probe against real sockets on 127.0.0.1: TCP connect, HTTP status line, and peers that misbehave (an
// endless body, bytes that are not HTTP, silence). Every case is bounded by the probe's own timeout.
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ProbeResult } from './health-check-state.js';
import { HealthProbe, MAX_PROBE_READ, responseStatus, type HttpProbeConfig } from './health-probe.js';

const HTTP: HttpProbeConfig = { path: '/healthz', host: 'web.default:8080', expectedStatuses: [{ start: 200, end: 201 }], retriableStatuses: [{ start: 503, end: 504 }] };

interface RawServer {
  port: number;
  /** Each connection's request bytes, and whether the probe closed it. */
  conns: { request: string; closed: Promise<void> }[];
  close(): Promise<void>;
}

const servers: RawServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A raw TCP server: `onRequest` gets each connection once its request head has arrived. */
async function rawServer(onRequest: (socket: net.Socket) => void): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  const conns: RawServer['conns'] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    const conn = { request: '', closed: new Promise<void>((r) => socket.on('close', () => r())) };
    conns.push(conn);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (d: Buffer) => {
      const before = conn.request.includes('\r\n\r\n');
      conn.request += d.toString('latin1');
      if (!before && conn.request.includes('\r\n\r\n')) onRequest(socket);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const s: RawServer = {
    port: (server.address() as AddressInfo).port,
    conns,
    close: () =>
      new Promise<void>((r) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => r());
      }),
  };
  servers.push(s);
  return s;
}

function probe(port: number, http: HttpProbeConfig | undefined, timeoutMs = 2000): Promise<{ result: ProbeResult; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => new HealthProbe('127.0.0.1', port, timeoutMs, http, (result) => resolve({ result, ms: Date.now() - started })).start());
}

async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('responseStatus', () => {
  it('reads the final status line, skipping interim 1xx heads, and gives up early on bytes that are not HTTP', () => {
    expect(responseStatus(Buffer.from('HTTP/1.1 200 OK\r\n'))).toBe(200);
    expect(responseStatus(Buffer.from('HTTP/1.0 503\r\n'))).toBe(503);
    expect(responseStatus(Buffer.from('HTTP/1.1 20'))).toBe('incomplete');
    expect(responseStatus(Buffer.from('HTT'))).toBe('incomplete');
    expect(responseStatus(Buffer.from('SSH-2.0-OpenSSH'))).toBe('invalid');
    expect(responseStatus(Buffer.from('HTTP/2 200\r\n'))).toBe('invalid');
    expect(responseStatus(Buffer.from('HTTP/1.1 100 Continue\r\n'))).toBe('incomplete');
    expect(responseStatus(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n'))).toBe(204);
    expect(responseStatus(Buffer.from('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 500 x\r\n'))).toBe(500);
  });
});

describe('HealthProbe', () => {
  it('TCP: success on connect, networkFailure on a closed port', async () => {
    const s = await rawServer(() => {});
    expect((await probe(s.port, undefined)).result).toBe('success');
    await s.conns[0]!.closed;
    expect((await probe(await deadPort(), undefined)).result).toBe('networkFailure');
  });

  it('HTTP: sends GET path with the Host header and Connection: close on a fresh connection; the status decides', async () => {
    let status = 200;
    const s = await rawServer((socket) => socket.end(`HTTP/1.1 ${status} X\r\nContent-Length: 0\r\n\r\n`));
    expect((await probe(s.port, HTTP)).result).toBe('success');
    expect(s.conns[0]!.request).toBe('GET /healthz HTTP/1.1\r\nHost: web.default:8080\r\nUser-Agent: Pillion/HC\r\nConnection: close\r\n\r\n');
    status = 500;
    expect((await probe(s.port, HTTP)).result).toBe('failure');
    status = 503;
    expect((await probe(s.port, HTTP)).result).toBe('networkFailure');
    expect(s.conns).toHaveLength(3);
  });

  it('HTTP: an endless body is never read; the probe decides on the status line and closes', async () => {
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let written = 0;
    const s = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n');
      const pump = (): void => {
        while (!socket.destroyed && socket.write(chunk)) written += chunk.length;
        if (!socket.destroyed) socket.once('drain', pump);
      };
      pump();
    });
    const { result, ms } = await probe(s.port, HTTP);
    expect(result).toBe('success');
    expect(ms).toBeLessThan(2000);
    await s.conns[0]!.closed;
    expect(written).toBeLessThan(64 * 1024 * 1024);
  });

  it('HTTP: bytes that never make a status line fail after at most MAX_PROBE_READ bytes, not at the timeout', async () => {
    const s = await rawServer((socket) => socket.write(Buffer.alloc(MAX_PROBE_READ * 4, 'HTTP/1.1 ')));
    const endless = await probe(s.port, HTTP, 5000);
    expect(endless.result).toBe('networkFailure');
    expect(endless.ms).toBeLessThan(4000);
    const t = await rawServer((socket) => socket.write('SSH-2.0-OpenSSH_9.2\r\n'));
    expect((await probe(t.port, HTTP)).result).toBe('networkFailure');
  });

  it('HTTP: a peer that accepts and never answers fails at the timeout, and its connection is closed', async () => {
    const s = await rawServer(() => {});
    const { result, ms } = await probe(s.port, HTTP, 200);
    expect(result).toBe('networkFailure');
    await s.conns[0]!.closed;
  });

  it('HTTP: a peer that closes before answering fails without waiting for the timeout', async () => {
    const s = await rawServer((socket) => socket.destroy());
    const { result, ms } = await probe(s.port, HTTP, 5000);
    expect(result).toBe('networkFailure');
    expect(ms).toBeLessThan(4000);
  });

  it('cancel: no result, and the connection is closed', async () => {
    const s = await rawServer(() => {});
    let called = false;
    const p = new HealthProbe('127.0.0.1', s.port, 5000, HTTP, () => (called = true));
    p.start();
    while (s.conns.length === 0) await new Promise((r) => setTimeout(r, 5));
    p.cancel();
    await s.conns[0]!.closed;
    expect(called).toBe(false);
  });
});
