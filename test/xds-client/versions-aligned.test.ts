// `pillion control` and `pillion proxy --xds` as real processes: the version the control server says it serves
// (configVersion on /proxies, pillion_control_config_version_info) is the string the proxy ACKed for each type (its
// /config_dump, pillion_config_version_info), and both sides label xDS types alike (lds, rds, cds, eds).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runPillion, type PillionProcess } from '../helpers/process.js';
import { meshYaml, NODE } from './fixtures.js';

type TypeLabel = 'lds' | 'rds' | 'cds' | 'eds';
/** The proxy's own JSON (/config_dump?format=pillion) keys its versions by resource kind. */
const KIND: Record<TypeLabel, string> = { lds: 'listeners', rds: 'routes', cds: 'clusters', eds: 'endpoints' };
const TYPES = Object.keys(KIND) as TypeLabel[];

interface TypeEntry {
  versionSent: string | null;
  versionAcked: string | null;
  lastNack: unknown;
}
interface Proxies {
  configVersion: string;
  proxies: { nodeId: string; types: Partial<Record<TypeLabel, TypeEntry>> }[];
}

let dir: string;
let file: string;
const procs: PillionProcess[] = [];
let controlAdmin: number;
let proxyAdmin: number;

async function getText(port: number, path: string): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  expect(r.status, path).toBe(200);
  return r.text();
}
const proxies = async (): Promise<Proxies> => JSON.parse(await getText(controlAdmin, '/proxies')) as Proxies;
const proxyVersions = async (): Promise<Record<string, string>> =>
  (JSON.parse(await getText(proxyAdmin, '/config_dump?format=pillion')) as { config: { versions: Record<string, string> } }).config.versions;

/** Label values of `label` on the samples of `metric` whose value is above 0 (and that match `extra`). */
function labelsOf(text: string, metric: string, label: string, extra = ''): string[] {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) || !line.includes(extra) || !(Number(line.slice(line.lastIndexOf(' ') + 1)) > 0)) continue;
    const m = new RegExp(`[{,]${label}="([^"]*)"`).exec(line);
    if (m) out.add(m[1]!);
  }
  return [...out].sort();
}

async function eventually<T>(probe: () => Promise<T>, ok: (t: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The proxy's entry on /proxies once every type is ACKed at what was last sent. */
async function inSync(): Promise<{ p: Proxies; me: Proxies['proxies'][number] }> {
  const p = await eventually(proxies, (v) => {
    const me = v.proxies.find((x) => x.nodeId === NODE.id);
    return me !== undefined && TYPES.every((t) => me.types[t]?.versionSent != null && me.types[t]!.versionAcked === me.types[t]!.versionSent);
  });
  return { p, me: p.proxies.find((x) => x.nodeId === NODE.id)! };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-versions-'));
  file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshYaml(18081));
  const control = runPillion(['control', '--config', file, '--port', '0', '--admin-port', '0']);
  procs.push(control);
  const xdsPort = Number((await control.waitForLine((l) => l.msg === 'xds listening')).port);
  controlAdmin = Number((await control.waitForLine((l) => l.msg === 'control admin listening')).port);
  const proxy = runPillion([
    'proxy', '--xds', `127.0.0.1:${xdsPort}`, '--service', 'frontend', '--node-id', NODE.id,
    '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0', '--access-log', 'off',
  ]);
  procs.push(proxy);
  proxyAdmin = Number((await proxy.waitForLine((l) => l.msg === 'admin listening')).port);
  await proxy.waitForLine((l) => l.msg === 'proxy ready');
});

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
});

describe('control server and proxy agree on versions and type labels', () => {
  it('the proxy ACKed, per type, the configVersion the control server serves and says it sent', async () => {
    const { p, me } = await inSync();
    expect(p.configVersion).toMatch(/^[0-9a-f]{16}$/);
    const versions = await proxyVersions();
    for (const t of TYPES) {
      expect(me.types[t]!.versionSent, t).toBe(p.configVersion);
      expect(versions[KIND[t]], t).toBe(p.configVersion);
    }
    // Envoy's /config_dump says the same.
    const dump = JSON.parse(await getText(proxyAdmin, '/config_dump?resource=dynamic_active_clusters')) as { configs: { version_info?: string }[] };
    expect(dump.configs.length).toBeGreaterThan(0);
    for (const c of dump.configs) expect(c.version_info).toBe(p.configVersion);
    expect(await getText(proxyAdmin, '/metrics')).toContain(`pillion_config_version_info{version="${p.configVersion}"} 1`);
    expect(await getText(controlAdmin, '/metrics')).toContain(`pillion_control_config_version_info{version="${p.configVersion}"} 1`);
  });

  it('labels xDS types alike on both /metrics: what the control server pushed is what the proxy ACKed', async () => {
    await inSync();
    const pushed = labelsOf(await getText(controlAdmin, '/metrics'), 'pillion_control_pushes_total', 'type');
    const acked = labelsOf(await getText(proxyAdmin, '/metrics'), 'pillion_xds_updates_total', 'type', 'result="ack"');
    expect(pushed).toEqual(['cds', 'eds', 'lds', 'rds']);
    expect(acked).toEqual(pushed);
    // And under Envoy's names on /stats.
    const stats = new Map((await getText(proxyAdmin, '/stats')).trim().split('\n').map((l) => [l.slice(0, l.lastIndexOf(':')), Number(l.slice(l.lastIndexOf(':') + 1))]));
    expect(stats.get('listener_manager.lds.update_success')).toBeGreaterThanOrEqual(1);
    expect(stats.get('cluster_manager.cds.update_success')).toBeGreaterThanOrEqual(1);
    expect(stats.get('cluster_manager.cds.update_rejected')).toBe(0);
    expect(stats.get('cluster_manager.cds.update_attempt')).toBe(stats.get('cluster_manager.cds.update_success'));
  });

  it('after an edit, the types it changed carry the new configVersion and the others keep the one they were sent at', async () => {
    const before = (await inSync()).p.configVersion;
    writeFileSync(file, meshYaml(18082)); // an endpoint moves: only EDS changes
    const after = await eventually(proxyVersions, (v) => v.endpoints !== before);
    const { p, me } = await inSync();
    expect(p.configVersion).not.toBe(before);
    expect(after.endpoints).toBe(p.configVersion);
    for (const t of TYPES) expect(after[KIND[t]], t).toBe(me.types[t]!.versionSent);
    expect([after.listeners, after.routes, after.clusters]).toEqual([before, before, before]);
    expect(await getText(proxyAdmin, '/metrics')).toContain(`pillion_config_version_info{version="${p.configVersion}"} 1`);
  });
});
