// Clients that reset their connection at the worst moment: before a byte (a TCP probe, a port scan), after a
// CONNECT or an Upgrade nobody routes, in the middle of a sniff. Each one once killed the sidecar with an
// unhandled 'error' event; after each, the process must be alive and serve a normal request.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { connectSendReset, settle, startAbuseSidecar, type AbuseSidecar } from './sidecar.js';

let backend: Backend;
let app: Backend;
let sidecar: AbuseSidecar;

beforeAll(async () => {
  backend = await startHttpBackend('backend');
  app = await startHttpBackend('app');
  sidecar = await startAbuseSidecar({ backendPort: backend.port, appPort: app.port });
});

// Each case gets a live sidecar, so one case that kills it does not fail the others.
beforeEach(async () => {
  if (sidecar.alive()) return;
  await sidecar.close();
  sidecar = await startAbuseSidecar({ backendPort: backend.port, appPort: app.port });
});

afterAll(async () => {
  await sidecar.close();
  await backend.close();
  await app.close();
});

async function expectStillServing(): Promise<void> {
  await settle(150);
  expect(sidecar.alive(), `sidecar exited; stderr: ${sidecar.proc.stderr}`).toBe(true);
  expect(await sidecar.get()).toBe(200);
}

describe('a client that resets its connection', () => {
  it('before sending a byte, on a sniffed listener (TCP probe, port scan)', async () => {
    for (let i = 0; i < 5; i++) await connectSendReset(sidecar.inbound, '', 20);
    await expectStillServing();
  });

  it('before sending a byte, on an HTTP-only listener', async () => {
    for (let i = 0; i < 5; i++) await connectSendReset(sidecar.outbound, '', 20);
    await expectStillServing();
  });

  it('halfway through the bytes the sniffer needs', async () => {
    await connectSendReset(sidecar.inbound, 'GE', 50);
    await connectSendReset(sidecar.inbound, 'PRI * HTTP/2', 50);
    await expectStillServing();
  });

  it('after a CONNECT request', async () => {
    await connectSendReset(sidecar.outbound, 'CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n', 50);
    await connectSendReset(sidecar.outbound, 'CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n', 0);
    await expectStillServing();
  });

  it('after an Upgrade (WebSocket, h2c) with no route', async () => {
    const ws = 'GET /chat HTTP/1.1\r\nHost: nowhere\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    const h2c = 'GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n';
    for (const head of [ws, h2c]) {
      await connectSendReset(sidecar.outbound, head, 50);
      await connectSendReset(sidecar.outbound, head, 0);
      await connectSendReset(sidecar.inbound, head, 50);
    }
    await expectStillServing();
  });

  it('after an Upgrade whose upstream accepted it', async () => {
    const ws = 'GET /chat HTTP/1.1\r\nHost: backend\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    for (let i = 0; i < 3; i++) await connectSendReset(sidecar.outbound, ws, i * 20);
    await expectStillServing();
  });
});
