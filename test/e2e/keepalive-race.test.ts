// The keep-alive race: a pooled upstream connection the upstream closed just as the proxy reused it. An idempotent
// request the upstream never saw is sent once more on another connection (its body too, held by the router); a POST,
// or a request that failed on a fresh connection (the upstream's answer), is not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

interface Seen {
  connection: number;
  method: string;
  path: string;
}

let upstream: net.Server;
let proxy: RunningProxy;
let port: number;
const seen: Seen[] = [];

beforeAll(async () => {
  // A raw TCP upstream: the first request on a connection gets a valid keep-alive response (Content-Length); a
  // request on a connection that already answered one is met with a silent close, as a server whose keep-alive
  // timeout fired just as the request arrived. /slow* is answered after 100 ms. /hangup is closed on without an
  // answer, even on a fresh connection.
  let connections = 0;
  upstream = net.createServer((socket) => {
    socket.on('error', () => {});
    const connection = ++connections;
    let answered = 0;
    let buffered = '';
    socket.on('data', (d: Buffer) => {
      buffered += d.toString('latin1');
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [method = '', path = ''] = buffered.slice(0, end).split(' ');
      buffered = '';
      seen.push({ connection, method, path });
      // /partial on a reused connection: the start of a response, then (once the proxy read it) a reset.
      if (path.startsWith('/partial') && answered > 0) {
        socket.write('HTTP/1.1 200 OK\r\ncontent-le');
        setTimeout(() => socket.resetAndDestroy(), 100);
        return;
      }
      if (path === '/hangup' || answered > 0) {
        socket.destroy();
        return;
      }
      answered++;
      const body = `${method} ${path} on ${connection}`;
      const answer = `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: keep-alive\r\n\r\n${body}`;
      if (path.startsWith('/slow')) setTimeout(() => socket.write(answer), 100);
      // /then-extra: answered, then, with the connection idle in the proxy's pool, a response nobody asked for.
      else if (path === '/then-extra') {
        socket.write(answer);
        // Without a body: nothing after it that the proxy's parser could fail on.
        setTimeout(() => socket.write('HTTP/1.1 204 No Content\r\nx-smuggled: 1\r\n\r\n'), 50);
      }
      else socket.write(answer);
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upstreamPort = (upstream.address() as net.AddressInfo).port;
  // One cluster per test, so one test's pooled connections are not another's.
  const service = (name: string): string => `
  - name: ${name}
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${upstreamPort} }]`;
  const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]${service('race-get')}${service('race-post')}${service('fresh')}${service('race-twice')}${service('race-post-empty')}${service('race-put')}${service('race-partial')}${service('idle-extra')}
`;
  proxy = await startProxy(mesh, { service: 'client' });
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await new Promise<void>((r) => upstream.close(() => r()));
});

function seenPaths(path: string): Seen[] {
  return seen.filter((s) => s.path === path);
}

describe('the keep-alive race upstream', () => {
  it('replays a request without a body, that a reused connection lost before any response byte, on a new connection', async () => {
    const first = await request(port, { host: 'race-get', path: '/get-1' });
    expect(first.status).toBe(200);
    const second = await request(port, { host: 'race-get', path: '/get-2' });
    expect(second.status).toBe(200);
    expect(second.headers['x-pillion-reason']).toBeUndefined();

    const [one] = seenPaths('/get-1');
    const twice = seenPaths('/get-2');
    // Sent on the pooled connection (closed on), then once more on a new connection, which answered.
    expect(twice).toHaveLength(2);
    expect(twice[0]!.connection).toBe(one!.connection);
    expect(twice[1]!.connection).not.toBe(one!.connection);
    expect(second.body).toBe(`GET /get-2 on ${twice[1]!.connection}`);
  });

  it('replays an idempotent request with a body (PUT), held whole by the router, on a new connection', async () => {
    expect((await request(port, { host: 'race-put', path: '/put-1' })).status).toBe(200);
    const reply = await request(port, { host: 'race-put', path: '/put-2', method: 'PUT', body: 'the new state' });
    expect(reply.status).toBe(200);
    const twice = seenPaths('/put-2');
    expect(twice).toHaveLength(2);
    expect(twice[1]!.connection).not.toBe(twice[0]!.connection);
    expect(reply.body).toBe(`PUT /put-2 on ${twice[1]!.connection}`);
  });

  it('does not replay a POST whose body already went upstream: 503 upstream_reset', async () => {
    const first = await request(port, { host: 'race-post', path: '/post-1' });
    expect(first.status).toBe(200);
    const reply = await request(port, { host: 'race-post', path: '/post-2', method: 'POST', body: 'payload that went out' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_reset');
    expect(seenPaths('/post-2')).toHaveLength(1);
  });

  it('does not replay a request whose method is not idempotent, even without a body (the upstream may have acted on it)', async () => {
    expect((await request(port, { host: 'race-post-empty', path: '/empty-1' })).status).toBe(200);
    const reply = await request(port, { host: 'race-post-empty', path: '/empty-2', method: 'POST' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_reset');
    expect(seenPaths('/empty-2')).toHaveLength(1);
  });

  it('does not replay a request whose response had begun (bytes of its head, then a reset): 503, seen once', async () => {
    expect((await request(port, { host: 'race-partial', path: '/partial-1' })).status).toBe(200);
    const reply = await request(port, { host: 'race-partial', path: '/partial-2' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_reset');
    expect(seenPaths('/partial-2')).toHaveLength(1);
  });

  it('closes a pooled connection on which the upstream sent a response while it was idle; the next request goes on a new one', async () => {
    const first = await request(port, { host: 'idle-extra', path: '/then-extra' });
    expect(first.status).toBe(200);
    // The unsolicited response arrives 50 ms after the first one, with the connection idle in the pool.
    await new Promise((r) => setTimeout(r, 200));
    const next = await request(port, { host: 'idle-extra', path: '/after-extra' });
    expect(next.status).toBe(200);
    expect(next.headers['x-smuggled']).toBeUndefined();
    const [extra] = seenPaths('/then-extra');
    const after = seenPaths('/after-extra');
    // Never written on the connection the upstream desynchronised (where it would be lost and replayed).
    expect(after).toHaveLength(1);
    expect(after[0]!.connection).not.toBe(extra!.connection);
  });

  it('does not replay a request that failed on a fresh connection: 503 upstream_reset, seen once', async () => {
    const reply = await request(port, { host: 'fresh', path: '/hangup' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_reset');
    expect(seenPaths('/hangup')).toHaveLength(1);
  });

  it('replays only once: a replay lost the same way is the answer (503 upstream_reset)', async () => {
    // Two pooled connections that have each answered once (the answers are slow, so neither request finds the
    // other's connection idle): the request is lost on one, its replay on the other, and that is not replayed.
    const pair = await Promise.all([
      request(port, { host: 'race-twice', path: '/slow-a' }),
      request(port, { host: 'race-twice', path: '/slow-b' }),
    ]);
    expect(pair.map((r) => r.status)).toEqual([200, 200]);
    const pooled = [...seenPaths('/slow-a'), ...seenPaths('/slow-b')].map((s) => s.connection);
    expect(new Set(pooled).size).toBe(2);

    const reply = await request(port, { host: 'race-twice', path: '/twice-lost' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_reset');
    const lost = seenPaths('/twice-lost').map((s) => s.connection);
    expect(lost).toHaveLength(2);
    expect(new Set(lost)).toEqual(new Set(pooled));
  });
});
