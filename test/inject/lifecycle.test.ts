// The sidecar's Kubernetes hooks against a real `pillion proxy`: `wait-ready` (postStart, readiness) returns once
// /ready is 200 and fails with the reason when it is not; `drain` (preStop) puts the proxy into DRAINING so it
// refuses new connections, and the SIGTERM that follows exits it.
import { execFile } from 'node:child_process';
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

  it('wait-ready returns once the proxy is ready; drain makes it refuse new connections; SIGTERM then exits', async () => {
    const backend = await startHttpBackend('app');
    writeFileSync(join(dir, 'mesh.yaml'), `services:\n  - name: web\n    ports: [{ port: 8080, protocol: http }]\n    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]\n`);
    const proxy = runPillion(['proxy', '--config', join(dir, 'mesh.yaml'), '--service', 'web', '--admin-port', '0', '--outbound-port', '0', '--access-log', 'off']);
    procs.push(proxy);
    const admin = Number((await proxy.waitForLine((l) => l.msg === 'admin listening')).port);
    const outbound = Number((await proxy.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
    expect((await pillion(['wait-ready', '--admin-port', String(admin), '--timeout', '10s'])).code).toBe(0);
    expect((await request(outbound, { host: 'web' })).status).toBe(200);

    const drained = await pillion(['drain', '--admin-port', String(admin), '--delay', '300ms']);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.ms).toBeGreaterThanOrEqual(300);
    const ready = await fetch(`http://127.0.0.1:${admin}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain('DRAINING');
    // The readiness probe now fails, so the pod leaves the Services' endpoints.
    expect((await pillion(['wait-ready', '--admin-port', String(admin), '--timeout', '300ms'])).code).toBe(1);
    await expect(request(outbound, { host: 'web' })).rejects.toThrow();

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
