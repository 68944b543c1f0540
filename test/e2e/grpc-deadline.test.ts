// A gRPC caller's deadline past what a Node timer can hold (grpc-timeout can say up to 99999999H; a timer over
// 2^31 - 1 ms fires after 1 ms): the call runs to its answer, with no timer re-armed every millisecond and no
// warning flood.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

let proxy: RunningProxy;
let server: http2.Http2Server;

beforeAll(async () => {
  // A unary gRPC answer (one empty message, grpc-status 0) after 200 ms.
  server = http2.createServer();
  server.on('error', () => {});
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.resume();
    setTimeout(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.alloc(5));
    }, 200);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: greeter
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${(server.address() as AddressInfo).port} }]
`,
    { service: 'client' },
  );
});

afterAll(async () => {
  await proxy.close();
  await new Promise<void>((r) => server.close(() => r()));
});

/** One unary call with `grpc-timeout`; resolves with the grpc-status the client saw. */
function call(timeout: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
    session.on('error', reject);
    const stream = session.request({
      ':method': 'POST',
      ':path': '/echo.Echo/Unary',
      ':authority': 'greeter:50051',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': timeout,
    });
    let status: string | undefined;
    stream.on('error', () => {});
    stream.on('response', (h) => {
      if (h['grpc-status'] !== undefined) status = String(h['grpc-status']);
    });
    stream.on('trailers', (t) => {
      status = String(t['grpc-status']);
    });
    stream.on('close', () => {
      session.destroy();
      resolve(status);
    });
    stream.resume();
    stream.end(Buffer.alloc(5));
  });
}

describe('a gRPC deadline longer than a Node timer', () => {
  it('720H (30 days) and 99999999S: answered OK, no timer overflow', async () => {
    const overflows: string[] = [];
    const onWarning = (w: Error): void => {
      if (w.name === 'TimeoutOverflowWarning') overflows.push(w.message);
    };
    process.on('warning', onWarning);
    try {
      expect(await call('720H')).toBe('0');
      expect(await call('99999999S')).toBe('0');
      // Warnings are emitted on the next tick.
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      process.off('warning', onWarning);
    }
    expect(overflows).toEqual([]);
  });
});
