// Priority failover seen from outside: two priority-0 endpoints and one priority-1 backup. While priority 0 is
// healthy the backup gets nothing; when priority 0 fails (its endpoints answer 503 and outlier detection ejects
// them, or EDS marks them unhealthy) requests move to the backup, and they come back when priority 0 recovers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { compileForNode, type XdsResources } from '../../xds/compiler.js';
import { decodeMessage, encodeMessage, MESSAGE_NAMES } from '../../src/config/protos.js';
import type { ClusterStatus } from '../../src/admin/types.js';

const backends: Backend[] = [];
let proxy: RunningProxy;
let port: number;
let yaml: string;
/** While true, the priority-0 backends answer 503. */
let primaryFailing = false;

function backend(name: string, primary: boolean): Promise<Backend> {
  return startHttpBackend(name, (_req, res) => {
    const status = primary && primaryFailing ? 503 : 200;
    res.writeHead(status, { 'x-backend': name });
    res.end(name);
  });
}

/** Which backend answered each of `n` requests (`name:status`). */
async function send(n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await request(port, { host: 'backend' });
    out.push(`${String(r.headers['x-backend'] ?? 'proxy')}:${r.status}`);
  }
  return out;
}

/** Sends requests until `run` in a row satisfy `ok`; false if `maxRequests` pass first. */
async function until(ok: (answer: string) => boolean, run: number, maxRequests: number): Promise<boolean> {
  let streak = 0;
  for (let i = 0; i < maxRequests; i++) {
    const [answer] = await send(1);
    streak = ok(answer!) ? streak + 1 : 0;
    if (streak >= run) return true;
  }
  return false;
}

async function clusterStatus(): Promise<ClusterStatus> {
  const all = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/clusters?format=pillion`)).json()) as ClusterStatus[];
  return all.find((c) => c.name === 'backend.default:8080')!;
}

/** The compiled resources for the test's node, with every priority-0 endpoint of `backend` marked by EDS as `health`. */
function resourcesWithPrimary(health: 'HEALTHY' | 'UNHEALTHY'): XdsResources {
  const node = { id: 'test~client', service: 'client', namespace: 'default', serviceAccount: 'client', inboundPort: 0, outboundPort: 0 };
  const compiled = compileForNode(parseMeshConfig(yaml), node);
  const endpoints = compiled.endpoints.map((r) => {
    if (r.name !== 'backend.default:8080') return r;
    const cla = decodeMessage<{ endpoints: { priority?: number; lb_endpoints: { health_status?: string }[] }[] }>(MESSAGE_NAMES.ClusterLoadAssignment, r.value);
    for (const loc of cla.endpoints) if ((loc.priority ?? 0) === 0) for (const e of loc.lb_endpoints) e.health_status = health;
    return { ...r, value: encodeMessage(MESSAGE_NAMES.ClusterLoadAssignment, cla) };
  });
  return { ...compiled, endpoints };
}

const isPrimary = (a: string) => a === 'a1:200' || a === 'a2:200';

beforeAll(async () => {
  const a1 = await backend('a1', true);
  const a2 = await backend('a2', true);
  const b = await backend('b', false);
  backends.push(a1, a2, b);
  yaml = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints:
      - { address: 127.0.0.1, port: ${a1.port}, locality: { zone: a } }
      - { address: 127.0.0.1, port: ${a2.port}, locality: { zone: a } }
      - { address: 127.0.0.1, port: ${b.port}, locality: { zone: b }, priority: 1 }
    policy:
      loadBalancer: { policy: round_robin }
      outlierDetection: { consecutive5xx: 2, interval: 200ms, baseEjectionTime: 1s, maxEjectionPercent: 100 }
`;
  proxy = await startProxy(yaml, { service: 'client' });
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await Promise.all(backends.map((b) => b.close()));
});

describe('priority failover', () => {
  it('keeps the backup idle while priority 0 is healthy, and shows priorities on /clusters', async () => {
    const answers = await send(30);
    expect(answers.every(isPrimary)).toBe(true);
    expect(new Set(answers)).toEqual(new Set(['a1:200', 'a2:200']));
    const status = await clusterStatus();
    expect(status.endpoints.map((e) => [e.zone, e.priority])).toEqual([['a', 0], ['a', 0], ['b', 1]]);
  });

  it('fails over to priority 1 when outlier detection ejects priority 0, and comes back after the ejection', async () => {
    primaryFailing = true;
    // Each 503 counts against its endpoint; once both are ejected, priority 0 has no health and the backup takes all.
    expect(await until((a) => a === 'b:200', 20, 200)).toBe(true);
    const ejected = (await clusterStatus()).endpoints.filter((e) => e.priority === 0);
    expect(ejected.every((e) => e.ejectedUntil !== null)).toBe(true);
    expect(await send(20)).toEqual(Array.from({ length: 20 }, () => 'b:200'));

    primaryFailing = false;
    // Ejections end after 1 s (the detector's 200 ms tick un-ejects); wait for both, bounded, without timing them.
    const deadline = Date.now() + 10_000;
    while ((await clusterStatus()).endpoints.some((e) => e.ejectedUntil !== null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await clusterStatus()).endpoints.every((e) => e.ejectedUntil === null)).toBe(true);
    expect((await send(20)).every(isPrimary)).toBe(true);
  });

  it('fails over when EDS marks priority 0 unhealthy, and back when it is healthy again', async () => {
    let result = await proxy.proxy.apply(resourcesWithPrimary('UNHEALTHY'), 'eds-down');
    expect(result.errors).toEqual([]);
    expect(await send(20)).toEqual(Array.from({ length: 20 }, () => 'b:200'));
    expect((await clusterStatus()).endpoints.map((e) => [e.priority, e.healthy])).toEqual([[0, false], [0, false], [1, true]]);

    result = await proxy.proxy.apply(resourcesWithPrimary('HEALTHY'), 'eds-up');
    expect(result.errors).toEqual([]);
    const answers = await send(20);
    expect(answers.every(isPrimary)).toBe(true);
  });
});
