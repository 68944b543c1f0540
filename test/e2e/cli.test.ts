// `pillion proxy` as a real process: bad config fails fast and names the field; SIGTERM drains in-flight
// requests before exiting 0; the admin endpoints answer; the access log has one line per request; memory grown by a
// burst of traffic goes back to the kernel once the traffic stops.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { runPillion, type PillionProcess } from '../helpers/process.js';

let dir: string;
let slow: Backend;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-cli-'));
  slow = await startHttpBackend('slow', (_req, res) => {
    setTimeout(() => res.end('finished'), 400);
  });
});

afterAll(async () => {
  await slow.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `pillion proxy` for service `web`, whose mesh has one other service on 127.0.0.1:port; ports picked by the OS. */
function webSidecarFor(service: string, port: number, extraArgs: string[] = []): PillionProcess {
  const file = join(dir, `${service}.yaml`);
  writeFileSync(
    file,
    `services:
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: ${service}
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${port} }]
`,
  );
  return runPillion([
    'proxy', '--config', file, '--service', 'web', '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0',
    ...extraArgs,
  ]);
}

describe('pillion proxy (process)', () => {
  it('exits non-zero on a bad mesh config, naming the file, the field path and the problem', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'services:\n  - name: web\n    ports: [{ port: 8080, protocol: http }]\n    policy: { timeout: 5 }\n');
    const proc = runPillion(['proxy', '--config', file, '--service', 'web', '--admin-port', '0']);
    const code = await proc.exited;
    expect(code).not.toBe(0);
    expect(proc.stderr).toContain(file);
    expect(proc.stderr).toContain('services[0].policy.timeout');
    expect(proc.stderr).toMatch(/duration/);
  });

  it('prints usage for --help and exits 0', async () => {
    const proc = runPillion(['proxy', '--help']);
    expect(await proc.exited).toBe(0);
  });

  it('rejects unknown flags with usage', async () => {
    const proc = runPillion(['proxy', '--bogus']);
    expect(await proc.exited).toBe(2);
    expect(proc.stderr).toContain('usage: pillion proxy');
  });

  it('serves, answers admin endpoints, logs access lines, and drains on SIGTERM', async () => {
    const proc = webSidecarFor('slow', slow.port);
    try {
      const outbound = Number((await proc.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
      const admin = Number((await proc.waitForLine((l) => l.msg === 'admin listening')).port);
      await proc.waitForLine((l) => l.msg === 'proxy ready');

      expect((await fetch(`http://127.0.0.1:${admin}/ready`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${admin}/healthz`)).status).toBe(200);
      const clusters = (await (await fetch(`http://127.0.0.1:${admin}/clusters?format=pillion`)).json()) as { name: string }[];
      expect(clusters.map((c) => c.name)).toContain('slow.default:8080');
      const dump = (await (await fetch(`http://127.0.0.1:${admin}/config_dump?format=pillion`)).json()) as Record<string, unknown>;
      expect(JSON.stringify(dump)).toContain('slow.default:8080');

      const first = await request(outbound, { host: 'slow', path: '/one' });
      expect(first.body).toBe('finished');
      const access = await proc.waitForLine((l) => l.type === 'access' && l.path === '/one');
      expect(access).toMatchObject({ method: 'GET', status: 200, upstream_cluster: 'slow.default:8080', response_flags: '-' });

      // A chunked upload has no length to copy from its headers: bytes_received counts the body that went upstream.
      const upload = await request(outbound, {
        host: 'slow',
        path: '/upload',
        method: 'POST',
        headers: { 'transfer-encoding': 'chunked' },
        body: 'x'.repeat(3000),
      });
      expect(upload.status).toBe(200);
      const uploadLine = await proc.waitForLine((l) => l.type === 'access' && l.path === '/upload');
      expect(uploadLine).toMatchObject({ method: 'POST', status: 200, bytes_received: 3000, bytes_sent: 8 });
      const noRoute = await request(outbound, { host: 'nowhere', path: '/lost' });
      expect(noRoute.status).toBe(404);
      const noRouteLine = await proc.waitForLine((l) => l.type === 'access' && l.path === '/lost');
      expect(noRouteLine).toMatchObject({ status: 404, bytes_sent: Buffer.byteLength(noRoute.body), response_flags: 'NR' });

      // A request in flight when SIGTERM arrives still completes; then the process exits 0.
      const inFlight = request(outbound, { host: 'slow', path: '/two' });
      await new Promise((r) => setTimeout(r, 100));
      proc.child.kill('SIGTERM');
      const second = await inFlight;
      expect(second.status).toBe(200);
      expect(second.body).toBe('finished');
      expect(await proc.exited).toBe(0);
    } finally {
      proc.child.kill('SIGKILL');
    }
  });
});

describe('pillion proxy memory after a burst (process)', () => {
  it('returns memory to the kernel once traffic stops', async () => {
    // 1 MiB responses: the proxy's socket buffers and heap grow well past the 4 MiB that warrants a release.
    // Chunked, so they go through the parser's per-chunk buffers: a content-length body this large is read into
    // a few pooled buffers instead and may not grow the process enough.
    const big = Buffer.alloc(1 << 20, 'x');
    const bulk = await startHttpBackend('bulk', (_req, res) => {
      res.write(big);
      res.end();
    });
    const proc = webSidecarFor('bulk', bulk.port, ['--access-log', 'off', '--log-level', 'debug']);
    try {
      const outbound = Number((await proc.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
      await proc.waitForLine((l) => l.msg === 'proxy ready');
      for (let round = 0; round < 4; round++) {
        const replies = await Promise.all(Array.from({ length: 8 }, () => request(outbound, { host: 'bulk', path: '/big' })));
        for (const r of replies) expect(r.body.length).toBe(1 << 20);
      }
      const release = await proc.waitForLine((l) => l.msg === 'traffic stopped: returned unused memory to the kernel', 18_000);
      expect(Number(release.rssAfterMiB)).toBeLessThan(Number(release.rssBeforeMiB));
    } finally {
      proc.child.kill('SIGKILL');
      await bulk.close();
    }
  }, 40_000);
});
