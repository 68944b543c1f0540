// Starts a real Pillion proxy in this process from a mesh config (YAML text), on ports the OS picks.
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadLocalSnapshot } from '../../src/config/local.js';
import { Proxy } from '../../src/proxy.js';
import type { NodeInfo } from '../../xds/compiler.js';

export interface RunningProxy {
  proxy: Proxy;
  /** Bound port of a listener by name (`outbound`, `inbound`, `outbound:19080`). */
  port(listener: string): number;
  adminPort: number;
  close(): Promise<void>;
}

export interface StartProxyOptions {
  service: string;
  namespace?: string;
  appPort?: number;
  admin?: boolean;
  accessLog?: string;
}

export async function startProxy(meshYaml: string, opts: StartProxyOptions): Promise<RunningProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'pillion-test-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshYaml);
  const node: NodeInfo = {
    id: `test~${opts.service}`,
    service: opts.service,
    namespace: opts.namespace ?? 'default',
    serviceAccount: opts.service,
    ...(opts.appPort === undefined ? {} : { appPort: opts.appPort }),
    inboundPort: 0,
    outboundPort: 0,
  };
  const local = loadLocalSnapshot(file, node);
  const proxy = new Proxy({
    adminPort: opts.admin === false ? -1 : 0,
    logger: pino({ level: 'silent' }),
    accessLog: opts.accessLog ?? 'off',
    processMetrics: false,
    drainTimeoutMs: 2_000,
  });
  await proxy.startAdmin();
  const result = await proxy.apply(local.resources, 'test');
  if (!result.applied) throw new Error(`config rejected: ${JSON.stringify(result.errors)}`);
  return {
    proxy,
    adminPort: proxy.adminPort,
    port(name: string): number {
      const l = proxy.listeners().find((x) => x.name === name);
      if (l === undefined) throw new Error(`no listener ${name}: ${proxy.listeners().map((x) => x.name).join(', ')}`);
      return l.port;
    },
    async close() {
      await proxy.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
