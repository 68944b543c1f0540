// A proxy whose native helper is missing (a build copied without src/native/build, as after an install with no
// C++ compiler): it says once at start that transparent interception is unavailable, and explicit ports still
// serve. Needs no root.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { runPillion, type PillionProcess } from '../helpers/process.js';
import pino from 'pino';
import { compileForNode } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let dir: string;
let main: string;
let backend: Backend;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-no-native-'));
  // The build, its dependencies and protos, but no src/native/build next to it.
  for (const part of ['src', 'xds']) cpSync(join(ROOT, 'dist', part), join(dir, 'dist', part), { recursive: true });
  for (const link of ['node_modules', 'proto', 'package.json']) symlinkSync(join(ROOT, link), join(dir, link));
  main = join(dir, 'dist/src/cli/main.js');
  backend = await startHttpBackend('backend');
  writeFileSync(
    join(dir, 'mesh.yaml'),
    `services:
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
`,
  );
});

afterAll(async () => {
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

function proxy(extra: string[] = []): PillionProcess {
  return runPillion(['proxy', '--config', join(dir, 'mesh.yaml'), '--service', 'web', '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0', ...extra], main);
}

describe('without the native helper', () => {
  it('warns once at start that transparent interception is unavailable, and explicit ports keep working', async () => {
    const proc = proxy();
    try {
      const outbound = Number((await proc.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
      await proc.waitForLine((l) => l.msg === 'proxy ready');
      const warnings = proc.lines.filter((l) => String(l.msg).startsWith('transparent interception unavailable'));
      expect(warnings).toHaveLength(1);
      expect(String(warnings[0]!.problem)).toMatch(/src\/native was not built/);
      const reply = await request(outbound, { host: 'backend', path: '/x' });
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.body).name).toBe('backend');
    } finally {
      proc.child.kill('SIGKILL');
      await proc.exited;
    }
  });

  it('refuses to start with --interception redirect, saying why', async () => {
    const proc = proxy(['--interception', 'redirect']);
    expect(await proc.exited).toBe(1);
    expect(proc.stderr).toContain('--interception redirect: cannot read original destinations (SO_ORIGINAL_DST): src/native was not built');
  });

  it('rejects a config with use_original_dst listeners (what --xds would NACK), naming the listener and the cause', async () => {
    // The copied build's own modules: their native-addon.ts finds no src/native/build.
    const { Proxy } = (await import(join(dir, 'dist/src/proxy.js'))) as typeof import('../../src/proxy.js');
    const proxy = new Proxy({ adminPort: -1, logger: pino({ level: 'silent' }), accessLog: 'off', processMetrics: false });
    const node = { id: 'web-1', service: 'web', namespace: 'default', serviceAccount: 'web', inboundPort: 0, outboundPort: 0, interception: 'REDIRECT' as const };
    const resources = compileForNode(parseMeshConfig('services: [{ name: web, ports: [{ port: 8080 }] }]\n'), node);
    try {
      const result = await proxy.apply(resources, 'v1');
      expect(result.applied).toBe(false);
      expect(result.errors.map((e) => e.name)).toEqual(['outbound']);
      expect(result.errors[0]!.message).toMatch(/^use_original_dst: transparent interception needs the original destination .* src\/native was not built/);
    } finally {
      await proxy.stop();
    }
  });
});
