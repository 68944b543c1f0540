import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { openStream } from './h2-request.js';

const nodeBind = AsyncResource.prototype.bind;
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function echoServer(): Promise<{ session: http2.ClientHttp2Session; connected: Promise<void> }> {
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'x-path': headers[':path'] as string, 'x-method': headers[':method'] as string });
      stream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  session.on('error', () => {});
  cleanups.push(() => {
    session.destroy();
    server.close();
  });
  const connected = new Promise<void>((resolve) => session.once('connect', () => resolve()));
  return { session, connected };
}

function readResponse(stream: http2.ClientHttp2Stream): Promise<{ headers: http2.IncomingHttpHeaders; body: string; store: unknown }> {
  return new Promise((resolve, reject) => {
    let headers: http2.IncomingHttpHeaders = {};
    let store: unknown;
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      headers = h;
      store = als.getStore();
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve({ headers, body: Buffer.concat(chunks).toString(), store }));
    stream.on('error', reject);
  });
}

const als = new AsyncLocalStorage<string>();

describe('openStream', () => {
  it('sends requests with and without a body, before and after the session connects', async () => {
    const { session, connected } = await echoServer();
    // Before 'connect': Node queues the request until the socket is up.
    const early = openStream(session, { ':method': 'GET', ':path': '/early' }, true);
    const earlyDone = readResponse(early);
    await connected;
    const post = openStream(session, { ':method': 'POST', ':path': '/post' }, false);
    const postDone = readResponse(post);
    post.end('hello');
    const [a, b] = await Promise.all([earlyDone, postDone]);
    expect(a.headers['x-path']).toBe('/early');
    expect(b.headers['x-method']).toBe('POST');
    expect(b.body).toBe('hello');
  });

  it("keeps the caller's async context for the stream's events, as session.request() does", async () => {
    const { session, connected } = await echoServer();
    const early = als.run('before-connect', () => readResponse(openStream(session, { ':path': '/a' }, true)));
    await connected;
    const late = als.run('connected', () => readResponse(openStream(session, { ':path': '/b' }, true)));
    expect((await early).store).toBe('before-connect');
    expect((await late).store).toBe('connected');
  });

  it("leaves AsyncResource.prototype.bind as Node's, also when request() throws", async () => {
    const { session, connected } = await echoServer();
    await connected;
    openStream(session, { ':path': '/' }, true).on('error', () => {});
    expect(AsyncResource.prototype.bind).toBe(nodeBind);
    session.destroy();
    expect(() => openStream(session, { ':path': '/' }, true)).toThrow(/destroyed/i);
    expect(AsyncResource.prototype.bind).toBe(nodeBind);
    // The bound functions other code makes still carry Node's (deprecated) property.
    expect(Object.getOwnPropertyDescriptor(new AsyncResource('t').bind(() => 1), 'asyncResource')).toBeDefined();
  });
});
