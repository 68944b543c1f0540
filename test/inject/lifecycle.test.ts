// The sidecar's Kubernetes hooks against a real `pillion proxy`: `wait-ready` (postStart) returns once
// /ready is 200 and fails with the reason when it is not; `drain` (preStop) puts the proxy into DRAINING so its
// inbound listener refuses new connections while outbound keeps serving the app, and the SIGTERM that follows
// drains the rest and exits it.
import { execFile } from 'node:child_process';
import * as net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { deadPort, startHttpBackend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';

const procs: PillionProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'pillion-hooks-'));

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
});

function pillion(args: string[]): Promise<{ code: number; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) =>
    execFile(process.execPath, [...NODE_FLAGS, MAIN, ...args], { timeout: 15_000 }, (err, _out, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr, ms: Date.now() - started }),
    ),
  );
}

describe('pillion wait-ready and drain', () => {
  it('wait-ready fails after --timeout with the reason when no sidecar answers', async () => {
    const r = await pillion(['wait-ready', '--admin-port', String(await deadPort()), '--timeout', '600ms']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not ready after 600 ms \(last: connect ECONNREFUSED/);
    expect(r.ms).toBeLessThan(5_000);
  });

  it('wait-ready returns once the proxy is ready; drain closes inbound, outbound keeps serving; SIGTERM then exits', async () => {
    const backend = await startHttpBackend('app');
    writeFileSync(join(dir, 'mesh.yaml'), `services:\n  - name: web\n    ports: [{ port: 8080, protocol: http }]\n    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]\n`);
    const proxy = runPillion([
      'proxy', '--config', join(dir, 'mesh.yaml'), '--service', 'web', '--app-port', String(backend.port),
      '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0', '--access-log', 'off',
    ]);
    procs.push(proxy);
    const admin = Number((await proxy.waitForLine((l) => l.msg === 'admin listening')).port);
    const outbound = Number((await proxy.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
    const inbound = Number((await proxy.waitForLine((l) => l.msg === 'listening' && l.listener === 'inbound')).port);
    expect((await pillion(['wait-ready', '--admin-port', String(admin), '--timeout', '10s'])).code).toBe(0);
    expect((await request(outbound, { host: 'web' })).status).toBe(200);
    // A peer's keep-alive connection, idle when the drain starts.
    const peer = net.connect(inbound, '127.0.0.1');
    peer.on('error', () => {});
    const peerClosed = new Promise<void>((resolve) => peer.once('close', () => resolve()));
    peer.setEncoding('utf8');
    peer.write('GET /before HTTP/1.1\r\nhost: web\r\n\r\n');
    await new Promise<void>((resolve) => peer.once('data', () => resolve()));

    const drained = await pillion(['drain', '--admin-port', String(admin), '--delay', '300ms']);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.ms).toBeGreaterThanOrEqual(300);
    const ready = await fetch(`http://127.0.0.1:${admin}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain('DRAINING');
    // wait-ready now fails too: /ready is no longer 200.
    expect((await pillion(['wait-ready', '--admin-port', String(admin), '--timeout', '300ms'])).code).toBe(1);
    // Inbound: a new connection is refused, the idle keep-alive one closed.
    await expect(request(inbound, { path: '/after' })).rejects.toThrow(/ECONNREFUSED/);
    await peerClosed;
    // Outbound: the app shutting down can still call out, on new connections too.
    for (let i = 0; i < 3; i++) expect((await request(outbound, { host: 'web', path: `/out-${i}` })).status).toBe(200);

    proxy.child.kill('SIGTERM');
    expect(await proxy.exited).toBe(0);
    await backend.close();
  });

  it('refuses a bad duration with the reason', async () => {
    const r = await pillion(['drain', '--delay', '5']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--delay: expected a duration');
  });
});
