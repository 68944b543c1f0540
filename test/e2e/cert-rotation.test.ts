// Certificate rotation with the mesh CA, as real processes: certificates live 4 s, so the sidecars renew every ~2 s.
// A TCP stream opened through both sidecars' mTLS hop before a renewal keeps flowing after it, and the server
// sidecar presents its new certificate (a new serial on /config_dump) to new connections.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { freePort, startTcpEcho, type Backend } from '../helpers/backends.js';
import { startMeshWithCa, type MeshWithCa } from '../helpers/mesh-ca.js';

let mesh: MeshWithCa;
let echo: Backend;
let egressPort: number;
let echoAdmin: number;

async function serial(admin: number): Promise<string> {
  const dump = (await (await fetch(`http://127.0.0.1:${admin}/config_dump?format=pillion`)).json()) as {
    config: { secrets: { name: string; certificates: { serial: string }[] }[] };
  };
  return dump.config.secrets.find((s) => s.name === 'default')!.certificates[0]!.serial;
}

/** Sends `text` on `socket` and resolves with what comes back (the echo), bounded in time. */
function roundTrip(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no echo of ${text} in 3 s`)), 3_000);
    socket.once('data', (d: Buffer) => {
      clearTimeout(timer);
      resolve(d.toString());
    });
    socket.write(text);
  });
}

beforeAll(async () => {
  echo = await startTcpEcho();
  const echoInbound = await freePort();
  egressPort = await freePort();
  mesh = await startMeshWithCa(
    `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    egress: [{ localPort: ${egressPort}, service: echo, port: 9000 }]
  - name: echo
    ports: [{ port: 9000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${echoInbound} }]
`,
    ['--cert-ttl', '4s'],
  );
  echoAdmin = (await mesh.sidecar('echo', 'default', ['--app-port', String(echo.port), '--inbound-port', String(echoInbound)])).admin;
  await mesh.sidecar('client', 'default', ['--inbound-port', '0']);
}, 60_000);

afterAll(async () => {
  await mesh.close();
  await echo.close();
});

describe('certificate rotation (processes, 4 s certificates)', () => {
  it('keeps an open TCP stream through the mTLS hop across renewals; new connections get the new certificate', async () => {
    const socket = net.connect(egressPort, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('connect', () => r()));
    try {
      expect(await roundTrip(socket, 'before')).toBe('before');
      const first = await serial(echoAdmin);
      // Renewal at half-life (~2 s); wait for a serial the server sidecar did not have when the stream opened.
      const deadline = Date.now() + 10_000;
      let now = first;
      while (now === first && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        now = await serial(echoAdmin);
      }
      expect(now, 'the server sidecar never renewed').not.toBe(first);
      // The stream opened under the old certificate still flows.
      expect(await roundTrip(socket, 'after')).toBe('after');
      // And a new connection goes through the hop with the new certificate.
      const fresh = net.connect(egressPort, '127.0.0.1');
      fresh.on('error', () => {});
      await new Promise<void>((r) => fresh.once('connect', () => r()));
      expect(await roundTrip(fresh, 'fresh')).toBe('fresh');
      fresh.destroy();
    } finally {
      socket.destroy();
    }
  }, 30_000);
});
