// Clients that reset their connection at the worst moment: before a byte (a TCP probe, a port scan), after a
// CONNECT or an Upgrade nobody routes, in the middle of a sniff. Each one once killed the sidecar with an
// unhandled 'error' event; after each, the process must be alive and serve a normal request.
import { describe, expect, it } from 'vitest';
import { connectSendReset, settle, useAbuseSidecar } from './sidecar.js';

const setup = useAbuseSidecar();

async function expectStillServing(): Promise<void> {
  await settle(150);
  expect(setup.sidecar.alive(), `sidecar exited; stderr: ${setup.sidecar.proc.stderr}`).toBe(true);
  expect(await setup.sidecar.get()).toBe(200);
}

describe('a client that resets its connection', () => {
  it('before sending a byte, on a sniffed listener (TCP probe, port scan)', async () => {
    for (let i = 0; i < 5; i++) await connectSendReset(setup.sidecar.inbound, '', 20);
    await expectStillServing();
  });

  it('before sending a byte, on an HTTP-only listener', async () => {
    for (let i = 0; i < 5; i++) await connectSendReset(setup.sidecar.outbound, '', 20);
    await expectStillServing();
  });

  it('halfway through the bytes the sniffer needs', async () => {
    await connectSendReset(setup.sidecar.inbound, 'GE', 50);
    await connectSendReset(setup.sidecar.inbound, 'PRI * HTTP/2', 50);
    await expectStillServing();
  });

  it('after a CONNECT request', async () => {
    await connectSendReset(setup.sidecar.outbound, 'CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n', 50);
    await connectSendReset(setup.sidecar.outbound, 'CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n', 0);
    await expectStillServing();
  });

  it('after an Upgrade (WebSocket, h2c) with no route', async () => {
    const ws = 'GET /chat HTTP/1.1\r\nHost: nowhere\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    const h2c = 'GET / HTTP/1.1\r\nHost: nowhere\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n';
    for (const head of [ws, h2c]) {
      await connectSendReset(setup.sidecar.outbound, head, 50);
      await connectSendReset(setup.sidecar.outbound, head, 0);
      await connectSendReset(setup.sidecar.inbound, head, 50);
    }
    await expectStillServing();
  });

  it('after an Upgrade whose upstream accepted it', async () => {
    const ws = 'GET /chat HTTP/1.1\r\nHost: backend\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    for (let i = 0; i < 3; i++) await connectSendReset(setup.sidecar.outbound, ws, i * 20);
    await expectStillServing();
  });
});
