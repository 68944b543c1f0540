// A real `pillion proxy` process for the abuse suite: a crash is an exit here, not a dead test worker. The
// sidecar belongs to `web` (inbound: an `auto` port, sniffed) and sends outbound traffic to `backend`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import { startHttpBackend, type Backend, type H1Handler } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { runPillion, type PillionProcess } from '../helpers/process.js';

export interface AbuseSidecar {
  proc: PillionProcess;
  inbound: number;
  outbound: number;
  admin: number;
  /** A plain GET through the outbound listener to `backend`: what a well-behaved app does. */
  get(path?: string): Promise<number>;
  metric(name: string, labels?: string): Promise<number>;
  alive(): boolean;
  close(): Promise<void>;
}

export interface AbuseSidecarOptions {
  backendPort: number;
  appPort: number;
  extraArgs?: string[];
  /** Extra mesh YAML under the `backend` service's entry (policy etc.). */
  backendExtra?: string;
}

export async function startAbuseSidecar(opts: AbuseSidecarOptions): Promise<AbuseSidecar> {
  const dir = mkdtempSync(join(tmpdir(), 'pillion-abuse-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(
    file,
    `services:
  - name: web
    ports: [{ port: 8080, protocol: auto }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${opts.backendPort} }]
${opts.backendExtra ?? ''}`,
  );
  const proc = runPillion([
    'proxy', '--config', file, '--service', 'web', '--app-port', String(opts.appPort),
    '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0', '--access-log', 'off',
    ...(opts.extraArgs ?? []),
  ]);
  const portOf = async (listener: string): Promise<number> =>
    (await proc.waitForLine((l) => l.msg === 'listening' && l.listener === listener)).port as number;
  const [inbound, outbound] = [await portOf('inbound'), await portOf('outbound')];
  const admin = (await proc.waitForLine((l) => l.msg === 'admin server listening')).port as number;
  let exited = false;
  // eslint-disable-next-line @typescript-eslint/no-floating-promises -- exited only resolves (on 'exit')
  void proc.exited.then(() => (exited = true));
  return {
    proc,
    inbound,
    outbound,
    admin,
    async get(path = '/') {
      return (await request(outbound, { host: 'backend', path })).status;
    },
    async metric(name, labels = '') {
      const text = (await request(admin, { path: '/metrics' })).body;
      let sum = 0;
      for (const line of text.split('\n')) {
        if (!line.startsWith(name)) continue;
        const rest = line.slice(name.length);
        if (rest[0] !== ' ' && rest[0] !== '{') continue;
        if (labels !== '' && !rest.includes(labels)) continue;
        sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
    alive: () => !exited && proc.child.exitCode === null,
    async close() {
      if (!exited) {
        proc.child.kill('SIGKILL');
        await proc.exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Connects, sends `bytes` (if any), waits `afterMs`, then resets the connection (RST, not FIN). */
export function connectSendReset(port: number, bytes: string | Buffer, afterMs = 50): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      if (bytes.length > 0) socket.write(bytes);
      setTimeout(() => {
        socket.resetAndDestroy();
        resolve();
      }, afterMs);
    });
    socket.on('error', () => resolve());
  });
}

/** Resolves after `ms`; abuse cases give the proxy a moment to trip over what was sent. */
export function settle(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What useAbuseSidecar keeps for a test file: read `sidecar` in each case, it may have been restarted. */
export interface AbuseSetup {
  sidecar: AbuseSidecar;
  backend: Backend;
  app: Backend;
}

/**
 * The usual setup of an abuse test file: a `backend` HTTP server (its handler may be given), an `app` behind the
 * sidecar's inbound listener, and the sidecar, restarted before a case when an earlier one killed it (so one
 * case that crashes it does not fail the others); all closed after the file.
 */
export function useAbuseSidecar(backendHandler?: H1Handler): AbuseSetup {
  const setup = {} as AbuseSetup;
  const start = (): Promise<AbuseSidecar> => startAbuseSidecar({ backendPort: setup.backend.port, appPort: setup.app.port });
  beforeAll(async () => {
    setup.backend = await startHttpBackend('backend', backendHandler);
    setup.app = await startHttpBackend('app');
    setup.sidecar = await start();
  });
  beforeEach(async () => {
    if (setup.sidecar.alive()) return;
    await setup.sidecar.close();
    setup.sidecar = await start();
  });
  afterAll(async () => {
    await setup.sidecar?.close();
    await setup.backend?.close();
    await setup.app?.close();
  });
  return setup;
}
