// End to end: the real control server (xds/server.ts) watching a mesh file, a real proxy fed only over ADS, real
// backends. An edit of the mesh file that adds a service must reach the proxy's routes without a restart.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlServer, type ControlServer } from '../../xds/server.js';
import type { Proxy } from '../../src/proxy.js';
import type { AdsClient } from '../../src/xds/ads-client.js';
import { startXdsProxy } from './xds-proxy.js';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { meshYaml } from './fixtures.js';

async function eventually<T>(probe: () => Promise<T>, ok: (t: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('proxy fed by the real control server', () => {
  let dir: string;
  let file: string;
  let backend: Backend;
  let extra: Backend;
  let control: ControlServer;
  let proxy: Proxy;
  let ads: AdsClient;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pillion-xds-e2e-'));
    file = join(dir, 'mesh.yaml');
    backend = await startHttpBackend('backend');
    extra = await startHttpBackend('extra');
    writeFileSync(file, meshYaml(backend.port));
    control = await startControlServer({ configFile: file, port: 0, adminPort: 0 });
    ({ proxy, ads } = await startXdsProxy([`127.0.0.1:${control.port}`]));
  });

  afterAll(async () => {
    await ads?.stop();
    await proxy?.stop();
    await control?.close();
    await backend?.close();
    await extra?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const outbound = () => proxy.listeners().find((l) => l.name === 'outbound')!.port;

  it('warms from the control server and serves the mesh', async () => {
    await ads.whenWarm();
    expect((await request(proxy.adminPort, { path: '/ready' })).status).toBe(200);
    const reply = await request(outbound(), { host: 'backend', path: '/a' });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).name).toBe('backend');
    const missing = await request(outbound(), { host: 'extra' });
    expect(missing.status).toBe(404);
    expect(missing.headers['x-pillion-reason']).toBe('no_route');
  });

  it('serves a route added by editing the mesh file, and the control server sees the ACKs', async () => {
    writeFileSync(file, meshYaml(backend.port, { extraPort: extra.port }));
    await control.reload();
    const reply = await eventually(() => request(outbound(), { host: 'extra', path: '/new' }), (r) => r.status === 200);
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).name).toBe('extra');
    expect((await request(outbound(), { host: 'backend' })).status).toBe(200);
    // Every type the proxy holds was ACKed (none NACKed) by the proxy's own count.
    const text = await proxy.registry.metrics();
    expect(text).toMatch(/pillion_xds_updates_total\{type="rds",result="ack"\} [2-9]/);
    expect(text).toMatch(/pillion_xds_updates_total\{type="cds",result="nack"\} 0/);
  });
});
