// An upstream that never completes the TCP handshake: the proxy gives up after connectTimeout and answers
// 503 connect_failure instead of hanging. The peer is a Python socket that listens with a backlog of 0 and
// never accepts (Node cannot listen without accepting), its one queue slot filled by the test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

let peer: ChildProcess;
let filler: net.Socket;
let proxy: RunningProxy;

beforeAll(async () => {
  peer = spawn('python3', ['-c', "import socket,time\ns=socket.socket();s.bind(('127.0.0.1',0));s.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(60)"], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve) => peer.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  filler = net.connect(port, '127.0.0.1');
  await new Promise((r) => filler.once('connect', r));
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: blackhole
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${port} }]
    policy: { connectTimeout: 300ms, timeout: 900ms }
  - name: blackhole2
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${port} }]
    policy: { connectTimeout: 300ms, timeout: 900ms }
`,
    { service: 'client' },
  );
});

afterAll(async () => {
  await proxy.close();
  filler.destroy();
  peer.kill();
});

describe('connect timeout', () => {
  it('answers 503 connect_failure when the connect timeout (300 ms) passes, before the route timeout (900 ms)', async () => {
    const reply = await request(proxy.port('outbound'), { host: 'blackhole' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('connect_failure');
    expect(reply.body).toContain('connect timeout after 300 ms');
  });

  it('the same for an HTTP/2 upstream', async () => {
    const reply = await request(proxy.port('outbound'), { host: 'blackhole2' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('connect_failure');
    expect(reply.body).toContain('connect timeout after 300 ms');
  });
});
