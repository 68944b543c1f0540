// `pillion control` as a real child process: logs its chosen ports, serves /healthz and /proxies, exits non-zero on a bad config.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// Runs the TypeScript source through vite-node so the test checks this tree, not whatever dist/ was last built.
const VITE_NODE = fileURLToPath(new URL('../../node_modules/vite-node/vite-node.mjs', import.meta.url));
const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

const dir = mkdtempSync(join(tmpdir(), 'pillion-control-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[]) {
  const child = spawn(process.execPath, [VITE_NODE, MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const listeners: (() => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
      for (const l of listeners) l();
    } catch {
      // not a log line
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (msg: string, ms = 15_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const found = lines.find((l) => l.msg === msg);
        if (found) resolve(found);
      };
      listeners.push(check);
      check();
      setTimeout(() => reject(new Error(`no "${msg}" line; stderr: ${stderr}`)), ms);
    });
  return { child, exited, waitFor, stderr: () => stderr };
}

describe('pillion control (CLI)', () => {
  it('starts on free ports, logs them, serves the admin endpoints, and stops on SIGTERM', async () => {
    const file = join(dir, 'mesh.yaml');
    writeFileSync(file, 'services:\n  - name: web\n    ports: [{ port: 8080, protocol: http }]\n    endpoints: [{ address: 127.0.0.1, port: 18080 }]\n');
    const p = run(['control', '--config', file, '--port', '0', '--admin-port', '0']);
    try {
      const xds = await p.waitFor('xds listening');
      const adm = await p.waitFor('control admin listening');
      expect(xds.port).toBeGreaterThan(0);
      expect(adm.port).toBeGreaterThan(0);
      const health = await fetch(`http://127.0.0.1:${adm.port}/healthz`);
      expect(health.status).toBe(200);
      const proxies = (await (await fetch(`http://127.0.0.1:${adm.port}/proxies`)).json()) as { configError: unknown; proxies: unknown[] };
      expect(proxies).toMatchObject({ configError: null, proxies: [] });
      const metrics = await (await fetch(`http://127.0.0.1:${adm.port}/metrics`)).text();
      expect(metrics).toMatch(/^pillion_control_config_valid 1$/m);
    } finally {
      p.child.kill('SIGTERM');
    }
    expect(await p.exited).toBe(0);
  });

  it('exits non-zero naming the file, path and problem of a bad config', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'services:\n  - name: web\n    ports: [{ port: 8080, protocol: smtp }]\n');
    const p = run(['control', '--config', file, '--port', '0', '--admin-port', '0']);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toContain(`${file}: services[0].ports[0].protocol:`);
  });

  it('rejects a missing --config with usage', async () => {
    const p = run(['control']);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(/--config is required/);
  });
});
