// Certificate rotation with the mesh CA, as real processes: certificates live 4 s, so the sidecars renew every ~2 s.
// A TCP stream opened through both sidecars' mTLS hop before a renewal keeps flowing after it, and the server
// sidecar presents its new certificate (a new serial on /config_dump) to new connections.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { freePort, startTcpEcho, type Backend } from '../helpers/backends.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';

let dir: string;
let echo: Backend;
let securePort: number;
let echoInbound: number;
let egressPort: number;
let echoAdmin: number;
const procs: PillionProcess[] = [];

function token(serviceAccount: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      process.execPath,
      [...NODE_FLAGS, MAIN, 'token', '--ca-dir', join(dir, 'ca'), '--namespace', 'default', '--service-account', serviceAccount],
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    ),
  );
}

async function sidecar(service: string, extra: string[]): Promise<{ proc: PillionProcess; admin: number }> {
  const file = join(dir, `${service}.token`);
  writeFileSync(file, await token(service));
  const proc = runPillion([
    'proxy', '--service', service, '--xds', `127.0.0.1:${securePort}`, '--xds-ca', join(dir, 'ca', 'root-cert.pem'), '--token', file,
    '--admin-port', '0', '--outbound-port', '0', '--access-log', 'off', ...extra,
  ]);
  procs.push(proc);
  const admin = Number((await proc.waitForLine((l) => l.msg === 'admin listening')).port);
  await proc.waitForLine((l) => l.msg === 'proxy ready');
  return { proc, admin };
}

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
  dir = mkdtempSync(join(tmpdir(), 'pillion-rotation-'));
  echo = await startTcpEcho();
  echoInbound = await freePort();
  egressPort = await freePort();
  writeFileSync(
    join(dir, 'mesh.yaml'),
    `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    egress: [{ localPort: ${egressPort}, service: echo, port: 9000 }]
  - name: echo
    ports: [{ port: 9000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${echoInbound} }]
`,
  );
  const control = runPillion([
    'control', '--config', join(dir, 'mesh.yaml'), '--port', '0', '--admin-port', '0', '--ca-dir', join(dir, 'ca'), '--secure-port', '0', '--cert-ttl', '4s',
  ]);
  procs.push(control);
  securePort = Number((await control.waitForLine((l) => l.msg === 'xds TLS and certificate service listening')).port);
  echoAdmin = (await sidecar('echo', ['--app-port', String(echo.port), '--inbound-port', String(echoInbound)])).admin;
  await sidecar('client', ['--inbound-port', '0']);
}, 60_000);

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await echo.close();
  rmSync(dir, { recursive: true, force: true });
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
