// Issue 13: an alias-bomb edit of the mesh file, with `pillion control` running as a real process and a proxy fed
// by it. The edit must be refused at once with a clear message; /healthz keeps answering and the last good config
// keeps serving. (Before: a 24 KB bomb held /healthz for over 20 s at 3.4 GB RSS, then V8 ran out of heap.)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { aliasBomb } from '../config/mesh-fixture.js';
import { meshYaml } from '../xds-client/fixtures.js';
import { startXdsProxy, type XdsProxy } from '../xds-client/xds-proxy.js';

// Runs the TypeScript source through vite-node (as control-cli.test.ts does), so the test checks this tree. The
// heap cap makes a regression fail fast (the old validator needed gigabytes) instead of swapping the machine.
const VITE_NODE = fileURLToPath(new URL('../../node_modules/vite-node/vite-node.mjs', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'pillion-alias-bomb-'));
const file = join(dir, 'mesh.yaml');
let backend: Backend | undefined;
let extra: Backend | undefined;
let x: XdsProxy | undefined;
let child: ReturnType<typeof spawn> | undefined;

afterAll(async () => {
  await x?.close();
  child?.kill('SIGKILL');
  await backend?.close();
  await extra?.close();
  rmSync(dir, { recursive: true, force: true });
});

function startControl() {
  const proc = spawn(process.execPath, ['--max-old-space-size=512', VITE_NODE, MAIN, 'control', '--config', file, '--port', '0', '--admin-port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      // not a log line
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const waitFor = async (pred: (l: Record<string, unknown>) => boolean, ms = 15_000): Promise<Record<string, unknown>> => {
    const end = Date.now() + ms;
    for (;;) {
      const found = lines.find(pred);
      if (found) return found;
      if (Date.now() > end || proc.exitCode !== null) throw new Error(`no matching log line (exit ${proc.exitCode}); stderr: ${stderr.slice(0, 2000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { proc, lines, exited, waitFor };
}

/** Peak resident memory of a process so far (Linux), in MiB; undefined elsewhere. */
function peakRssMiB(pid: number): number | undefined {
  const status = `/proc/${pid}/status`;
  if (!existsSync(status)) return undefined;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(status, 'utf8'));
  return m ? Number(m[1]) / 1024 : undefined;
}

describe('pillion control and an alias-bomb edit', () => {
  it('refuses the bomb at once; /healthz keeps answering; the proxy keeps the last good config; a good edit still applies', async () => {
    backend = await startHttpBackend('backend');
    extra = await startHttpBackend('extra');
    writeFileSync(file, meshYaml(backend.port));
    const control = startControl();
    child = control.proc;
    const xdsPort = (await control.waitFor((l) => l.msg === 'xds listening')).port as number;
    const adminPort = (await control.waitFor((l) => l.msg === 'control admin listening')).port as number;
    const admin = (path: string) => fetch(`http://127.0.0.1:${adminPort}${path}`, { signal: AbortSignal.timeout(30_000) });
    const proxies = async (): Promise<any> => (await admin('/proxies')).json();

    x = await startXdsProxy([`127.0.0.1:${xdsPort}`]);
    await x.ads.whenWarm();
    const outbound = () => x!.proxy.listeners().find((l) => l.name === 'outbound')!.port;
    expect((await request(outbound(), { host: 'backend', path: '/before' })).status).toBe(200);
    const good = await proxies();
    const proxyVersion = x.proxy.current.version;

    // Poll /healthz all through the edit: the longest wait for an answer, and any failure.
    let polling = true;
    let slowestMs = 0;
    const failures: string[] = [];
    const poller = (async () => {
      while (polling) {
        const start = Date.now();
        try {
          const r = await admin('/healthz');
          await r.text();
          if (r.status !== 200) failures.push(`status ${r.status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
        slowestMs = Math.max(slowestMs, Date.now() - start);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();

    const bomb = aliasBomb(2000);
    expect(bomb.length).toBeGreaterThan(20_000);
    const editedAt = Date.now();
    writeFileSync(file, bomb);
    const rejected = await control.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('mesh config rejected'));
    const rejectedAfterMs = (rejected.time as number) - editedAt;
    expect(rejected.msg).toContain(`${file}: (yaml): YAML aliases expand the file to more than 500000 values`);
    // Keep polling a little past the rejection, then stop.
    await new Promise((r) => setTimeout(r, 500));
    polling = false;
    await poller;

    const rss = peakRssMiB(control.proc.pid!);
    console.log(`alias bomb: refused ${rejectedAfterMs} ms after the write; slowest /healthz ${slowestMs} ms; control peak RSS ${rss?.toFixed(0)} MiB`);
    // Generous bounds for a busy 2-core machine; measured ~60 ms, ~30 ms and ~125 MiB (before: no answer for 15 s+, then out of heap).
    expect(failures).toEqual([]);
    expect(slowestMs).toBeLessThan(2_000);
    expect(rejectedAfterMs).toBeLessThan(5_000);
    if (rss !== undefined) expect(rss).toBeLessThan(450);

    // The control server says why, and still serves the version it had; the proxy stays connected and unchanged.
    const after = await proxies();
    expect(after.configError.message).toContain('YAML aliases expand the file');
    expect(after.configVersion).toBe(good.configVersion);
    expect(after.proxies).toHaveLength(1);
    expect(x.proxy.current.version).toBe(proxyVersion);
    expect((await request(outbound(), { host: 'backend', path: '/after' })).status).toBe(200);
    expect(await (await admin('/metrics')).text()).toMatch(/^pillion_control_config_valid 0$/m);

    // And the next good edit goes through as usual.
    writeFileSync(file, meshYaml(backend.port, { extraPort: extra.port }));
    await control.waitFor((l) => l.msg === 'mesh config applied');
    const end = Date.now() + 5_000;
    let status = 0;
    while (Date.now() < end && (status = (await request(outbound(), { host: 'extra', path: '/new' })).status) !== 200) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe(200);

    control.proc.kill('SIGTERM');
    expect(await control.exited).toBe(0);
  }, 60_000);
});
