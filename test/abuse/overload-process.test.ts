// The overload manager in a real `pillion proxy` process: with `--overload-rss-mb` below what the process
// already uses, it is overloaded from the start: it says so once in its log, refuses new connections (counted),
// keeps its admin server answering, and stays alive.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { connectSendReset, settle, startAbuseSidecar, type AbuseSidecar } from './sidecar.js';

let backend: Backend;
let sidecar: AbuseSidecar;

beforeAll(async () => {
  backend = await startHttpBackend('backend');
  sidecar = await startAbuseSidecar({ backendPort: backend.port, appPort: backend.port, extraArgs: ['--overload-rss-mb', '1'] });
});

afterAll(async () => {
  await sidecar.close();
  await backend.close();
});

describe('pillion proxy --overload-rss-mb', () => {
  it('refuses new connections while over the threshold, and keeps its admin server', async () => {
    const line = await sidecar.proc.waitForLine((l) => typeof l.msg === 'string' && l.msg.startsWith('overloaded'));
    expect(line.cause).toBe('rss');
    await expect(sidecar.get()).rejects.toThrow();
    await connectSendReset(sidecar.inbound, 'GET / HTTP/1.1\r\nHost: web\r\n\r\n', 20);
    await settle(100);
    expect(sidecar.alive()).toBe(true);
    expect(await sidecar.metric('pillion_overload_active')).toBe(1);
    expect(await sidecar.metric('pillion_downstream_connections_rejected_total', 'reason="overload"')).toBeGreaterThanOrEqual(2);
    expect((await request(sidecar.admin, { path: '/healthz' })).status).toBe(200);
    expect(sidecar.proc.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('overloaded'))).toHaveLength(1);
  });
});
