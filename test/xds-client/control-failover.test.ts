// Real control servers and a real proxy: with the serving control server killed, traffic continues unchanged,
// the proxy fails over to the next server of its list, and config edits reach it there; a restarted server
// takes it back. A request loop runs the whole time and must see no failure.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import * as http from 'node:http';
import { startControlServer, type ControlServer } from '../../xds/server.js';
import type { Proxy } from '../../src/proxy.js';
import type { AdsClient } from '../../src/xds/ads-client.js';
import { startXdsProxy } from './xds-proxy.js';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { meshYaml } from './fixtures.js';

async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 8_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('control server failover', () => {
  let dir: string;
  let file: string;
  let backend: Backend;
  let extra: Backend;
  let first: ControlServer;
  let second: ControlServer;
  let firstPort: number;
  let proxy: Proxy;
  let ads: AdsClient;
  const outcomes = { ok: 0, failed: 0 };
  let looping = true;
  let loop: Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'pillion-failover-'));
    file = join(dir, 'mesh.yaml');
    backend = await startHttpBackend('backend');
    extra = await startHttpBackend('extra');
    writeFileSync(file, meshYaml(backend.port));
    first = await startControlServer({ configFile: file, port: 0, adminPort: 0, logger: pino({ level: 'silent' }) });
    firstPort = first.port;
    second = await startControlServer({ configFile: file, port: 0, adminPort: 0, logger: pino({ level: 'silent' }) });
    ({ proxy, ads } = await startXdsProxy([`127.0.0.1:${first.port}`, `127.0.0.1:${second.port}`]));
    await ads.whenWarm();
    const port = proxy.listeners().find((l) => l.name === 'outbound')!.port;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    // Bounded: at most ~20 s of requests, stopped by the last test.
    const stopAt = Date.now() + 20_000;
    loop = (async () => {
      while (looping && Date.now() < stopAt) {
        try {
          const r = await request(port, { host: 'backend', agent });
          if (r.status === 200) outcomes.ok++;
          else outcomes.failed++;
        } catch {
          outcomes.failed++;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      agent.destroy();
    })();
  });

  afterAll(async () => {
    looping = false;
    await loop;
    await ads?.stop();
    await proxy?.stop();
    await first?.close();
    await second?.close();
    await backend?.close();
    await extra?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const outbound = () => proxy.listeners().find((l) => l.name === 'outbound')!.port;

  it('starts on the first server of the list', () => {
    expect(ads.connectedServer).toBe(`127.0.0.1:${firstPort}`);
  });

  it('keeps serving when the control server dies, then fails over to the next one and takes edits from it', async () => {
    const before = outcomes.ok;
    await first.close();
    await until(() => ads.connectedServer === `127.0.0.1:${second.port}`);
    writeFileSync(file, meshYaml(backend.port, { extraPort: extra.port }));
    await second.reload();
    await until(async () => (await request(outbound(), { host: 'extra' })).status === 200);
    expect(outcomes.ok).toBeGreaterThan(before);
    expect(outcomes.failed).toBe(0);
  });

  it('resyncs with a restarted server, without dropping a request', async () => {
    first = await startControlServer({ configFile: file, port: firstPort, adminPort: 0, logger: pino({ level: 'silent' }) });
    await second.close();
    await until(() => ads.connectedServer === `127.0.0.1:${firstPort}`);
    const okBefore = outcomes.ok;
    await until(() => outcomes.ok > okBefore + 5);
    // The restarted server has the same file, so the same versions: the proxy keeps everything it had.
    expect((await request(outbound(), { host: 'extra' })).status).toBe(200);
    looping = false;
    await loop;
    expect(outcomes.failed).toBe(0);
    expect(outcomes.ok).toBeGreaterThan(10);
  });
});
