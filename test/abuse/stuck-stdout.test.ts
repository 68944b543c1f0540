// A stdout nobody reads (a stuck log shipper) must not stop the proxy: the access log is bounded (its own test,
// test/e2e/access-log-bound), and the process log, which shares the pipe, must not block the event loop when
// it writes a line into a full pipe. Here the pipe is filled, then the proxy is made to log; its admin server
// and a proxied request must still answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { startAbuseSidecar, type AbuseSidecar } from './sidecar.js';

let backend: Backend;
let sidecar: AbuseSidecar;

beforeAll(async () => {
  backend = await startHttpBackend('backend');
  sidecar = await startAbuseSidecar({ backendPort: backend.port, appPort: backend.port, extraArgs: ['--access-log', 'stdout'] });
});

afterAll(async () => {
  await sidecar.close();
  await backend.close();
});

function within<T>(ms: number, p: Promise<T>): Promise<T> {
  return Promise.race([p, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms))]);
}

describe('a stdout nobody reads', () => {
  it('does not stall the proxy when it logs', async () => {
    sidecar.proc.child.stdout!.pause();
    // Fill the pipe (64 KiB) and then some with access lines.
    const path = '/' + 'x'.repeat(2000);
    for (let i = 0; i < 300; i++) await within(2_000, sidecar.get(path));
    // Each of these writes a process-log line into the full pipe.
    for (const level of ['debug', 'info', 'warn', 'info']) {
      expect((await within(2_000, request(sidecar.admin, { path: `/logging?level=${level}`, method: 'POST' }))).status).toBe(200);
    }
    expect((await within(2_000, request(sidecar.admin, { path: '/healthz' }))).status).toBe(200);
    expect(await within(2_000, sidecar.get())).toBe(200);
    sidecar.proc.child.stdout!.resume();
  });

  it('does not stop the proxy from exiting on SIGTERM', async () => {
    sidecar.proc.child.stdout!.pause();
    const path = '/' + 'x'.repeat(2000);
    for (let i = 0; i < 300; i++) await within(2_000, sidecar.get(path));
    sidecar.proc.child.kill('SIGTERM');
    // It waits up to 5 s for the log lines to go out, then drops them; it used to hang for ever (a log write
    // retried in a loop, or process.exit waiting for a libuv thread stuck in write(2)).
    expect(await within(10_000, sidecar.proc.exited)).toBe(0);
    sidecar.proc.child.stdout!.resume();
  });
});
