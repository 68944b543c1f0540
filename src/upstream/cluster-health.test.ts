// The cluster's shell around active health checking, against real listening sockets: pending endpoints still
// serve while none passes (panic), a failing endpoint leaves the balancer, and probing stops with the health
// check's removal and with the cluster's close.
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ClusterModel, HealthCheckModel } from '../config/model.js';
import { UpstreamCluster, type ClusterStatsSink } from './cluster-manager.js';
import { cluster, quietClusterStats } from './lb/test-helpers.js';

const HC: HealthCheckModel = {
  timeoutMs: 500, intervalMs: 20, noTrafficIntervalMs: 20, intervalJitterMs: 0, intervalJitterPercent: 0, initialJitterMs: 0,
  unhealthyThreshold: 1, healthyThreshold: 1,
};

function sink(): ClusterStatsSink & { probes: boolean[]; unhealthy: number } {
  const s = {
    probes: [] as boolean[],
    unhealthy: -1,
    ...quietClusterStats(),
    healthCheck(success: boolean) {
      s.probes.push(success);
    },
    endpointsUnhealthy(n: number) {
      s.unhealthy = n;
    },
  };
  return s;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

/** A TCP listener that counts connections. */
async function listener(): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let n = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    n++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const close = (): Promise<void> =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  closers.push(close);
  return { port: (server.address() as AddressInfo).port, connections: () => n, close };
}

async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function model(ports: number[], healthCheck: HealthCheckModel | null = HC): ClusterModel {
  return cluster('round_robin', {
    endpoints: ports.map((port) => ({ address: '127.0.0.1', port, weight: 1, region: '', zone: '', healthy: true })),
    ...(healthCheck ? { healthCheck } : {}),
  });
}

function picks(c: UpstreamCluster, n: number): Set<number> {
  const seen = new Set<number>();
  for (let i = 0; i < n; i++) {
    const e = c.startCall(undefined, true);
    if (e === null || typeof e === 'symbol') throw new Error('no pick');
    seen.add(e.port);
    c.endCall(e, true, 'ignored');
  }
  return seen;
}

describe('UpstreamCluster with active health checks', () => {
  it('serves every endpoint while all are pending, then only those that pass', async () => {
    const up = await listener();
    const down = await listener();
    await down.close();
    const s = sink();
    const c = new UpstreamCluster(model([up.port, down.port]), s, Math.random);
    closers.push(async () => c.destroy());
    // Before the first probes answer: every endpoint pending, none passes, so panic over both.
    expect(c.status().endpoints.map((e) => e.healthCheck)).toEqual(['pending', 'pending']);
    expect(s.unhealthy).toBe(2);
    expect(picks(c, 4)).toEqual(new Set([up.port, down.port]));
    await until(() => c.status().endpoints.every((e) => e.healthCheck !== 'pending'));
    expect(c.status().endpoints.map((e) => e.healthCheck)).toEqual(['healthy', 'unhealthy']);
    expect(s.unhealthy).toBe(1);
    expect(picks(c, 4)).toEqual(new Set([up.port]));
    expect(s.probes).toContain(true);
    expect(s.probes).toContain(false);
  });

  it('stops probing when the health check is removed (statuses forgotten) and when the cluster closes', async () => {
    const a = await listener();
    const c = new UpstreamCluster(model([a.port]), sink(), Math.random);
    await until(() => c.status().endpoints[0]!.healthCheck === 'healthy');
    c.update(model([a.port], null));
    expect(c.status().endpoints[0]!.healthCheck).toBeNull();
    await sleep(50);
    const after = a.connections();
    await sleep(150);
    expect(a.connections()).toBe(after);

    c.update(model([a.port]));
    expect(c.status().endpoints[0]!.healthCheck).toBe('pending');
    await until(() => a.connections() > after + 1);
    c.close();
    await sleep(50);
    const closed = a.connections();
    await sleep(150);
    expect(a.connections()).toBe(closed);
  });

  it('keeps an endpoint’s status across an update that keeps it, and starts a new endpoint pending', async () => {
    const a = await listener();
    const b = await listener();
    const c = new UpstreamCluster(model([a.port]), sink(), Math.random);
    closers.push(async () => c.destroy());
    await until(() => c.status().endpoints[0]!.healthCheck === 'healthy');
    c.update(model([a.port, b.port]));
    expect(c.status().endpoints.map((e) => e.healthCheck)).toEqual(['healthy', 'pending']);
    // The pending one takes no traffic while another passes.
    expect(picks(c, 4)).toEqual(new Set([a.port]));
    await until(() => c.status().endpoints[1]!.healthCheck === 'healthy');
    expect(picks(c, 4)).toEqual(new Set([a.port, b.port]));
  });
});
