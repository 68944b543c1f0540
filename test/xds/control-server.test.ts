// The control server over real gRPC streams: ADS subscribe/ACK/NACK, config edits, invalid edits, /proxies, metrics.
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TYPE_URLS, decodeMessage } from '../../src/config/protos.js';
import * as grpc from '@grpc/grpc-js';
import { startControlServer, type ControlServer } from '../../xds/server.js';
import { RawAdsClient, type RawResponse } from './ads-client.js';

const LDS = TYPE_URLS.Listener;
const RDS = TYPE_URLS.RouteConfiguration;
const CDS = TYPE_URLS.Cluster;
const EDS = TYPE_URLS.ClusterLoadAssignment;

function meshYaml(opts: { backendPort?: number; maxConnections?: number } = {}): string {
  return `
trustDomain: cluster.local
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 18080 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${opts.backendPort ?? 18081} }]
    policy:
      circuitBreakers: { maxConnections: ${opts.maxConnections ?? 100} }
  - name: greeter
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: 17000 }]
`;
}

const NODE = { id: 'frontend-1', service: 'frontend', namespace: 'default', serviceAccount: 'frontend', appPort: 8080, inboundPort: 15006, outboundPort: 15001 };

let dir: string;
let file: string;
let server: ControlServer;

async function admin(path: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${server.adminPort}${path}`);
}
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function proxies(): Promise<any> {
  return (await admin('/proxies')).json();
}
async function metric(name: string): Promise<number> {
  const text = await (await admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  if (!line) throw new Error(`metric ${name} not found`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}
function names(r: RawResponse): string[] {
  return r.resources.map((x) => decodeMessage<{ name?: string; cluster_name?: string }>(x.type_url.slice(x.type_url.lastIndexOf('/') + 1), x.value)).map((m) => String(m.name ?? m.cluster_name)).sort();
}
async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Write the file in place (most editors, `echo >`). */
function edit(text: string): void {
  writeFileSync(file, text);
}
/** Save like vim/IDEs do: write a temp file and rename it over the config (the inode changes). */
function renameReplace(text: string): void {
  const tmp = join(dir, '.mesh.yaml.swp');
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-control-'));
  file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshYaml());
  server = await startControlServer({ configFile: file, port: 0, adminPort: 0, debounceMs: 20 });
});

afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('pillion control (ADS, state of the world)', () => {
  it('rejects a bad config at startup with the path of the problem', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'services:\n  - name: a\n    ports: [{ port: 99999, protocol: http }]\n');
    await expect(startControlServer({ configFile: bad, port: 0, adminPort: 0 })).rejects.toThrow(/bad\.yaml: services\[0\]\.ports\[0\]\.port: .* \(line 3\)/);
  });

  it('serves, records ACKs and NACKs, pushes only changed types, and survives invalid edits', async () => {
    const client = new RawAdsClient(server.port, NODE);
    try {
      // Subscribe like a sidecar: LDS and CDS wildcard, RDS and EDS by name.
      client.send({ type_url: LDS });
      const lds = await client.next();
      expect(lds.type_url).toBe(LDS);
      expect(lds.resources.every((r) => r.type_url === LDS)).toBe(true);
      // The proxyless api_listener `greeter.default:50051` is not sent to a sidecar's wildcard subscription.
      expect(names(lds)).toEqual(['inbound', 'outbound']);
      client.ack(lds);
      client.send({ type_url: CDS });
      const cds = await client.next();
      expect(names(cds)).toEqual(['backend.default:8080', 'frontend.default:8080', 'greeter.default:50051', 'inbound:8080']);
      client.ack(cds);
      client.send({ type_url: RDS, resource_names: ['outbound'] });
      const rds = await client.next();
      expect(names(rds)).toEqual(['outbound']);
      client.ack(rds, ['outbound']);
      const edsNames = ['backend.default:8080', 'frontend.default:8080'];
      client.send({ type_url: EDS, resource_names: edsNames });
      const eds = await client.next();
      expect(names(eds)).toEqual(edsNames);
      client.ack(eds, edsNames);
      expect(await client.collect(150)).toEqual([]);

      let p = await eventually(proxies, (v) => v.proxies[0]?.types?.eds?.versionAcked === eds.version_info);
      expect(p.configError).toBeNull();
      expect(p.configVersion).toMatch(/^[0-9a-f]{16}$/);
      // Every response carries the config version /proxies and the metric name: one string on both sides.
      expect([lds, cds, rds, eds].map((r) => r.version_info)).toEqual([p.configVersion, p.configVersion, p.configVersion, p.configVersion]);
      expect(await metric(`pillion_control_config_version_info{version="${p.configVersion}"}`)).toBe(1);
      const v1 = p.configVersion as string;
      expect(p.proxies).toHaveLength(1);
      expect(p.proxies[0]).toMatchObject({ nodeId: 'frontend-1', service: 'frontend', proxyless: false });
      expect(Date.parse(p.proxies[0].connectedSince)).toBeGreaterThan(0);
      expect(p.proxies[0].types.lds).toMatchObject({ subscribed: '*', versionSent: lds.version_info, versionAcked: lds.version_info, lastNack: null });
      expect(p.proxies[0].types.rds).toMatchObject({ subscribed: ['outbound'], versionAcked: rds.version_info });
      expect(await metric('pillion_control_connected_proxies')).toBe(1);
      expect(await metric('pillion_control_config_valid')).toBe(1);

      // An endpoint moves: only EDS changes.
      edit(meshYaml({ backendPort: 18082 }));
      const eds2 = await client.next();
      expect(eds2.type_url).toBe(EDS);
      expect(eds2.version_info).not.toBe(eds.version_info);
      const v2 = (await proxies()).configVersion as string;
      expect(eds2.version_info).toBe(v2);
      expect(v2).not.toBe(v1);
      expect(eds2.nonce).not.toBe(eds.nonce);
      client.ack(eds2, edsNames);
      expect(await client.collect(250)).toEqual([]);

      // A cluster setting changes (saved by rename-replace): only CDS. NACK it.
      renameReplace(meshYaml({ backendPort: 18082, maxConnections: 50 }));
      const cds2 = await client.next();
      expect(cds2.type_url).toBe(CDS);
      expect(await client.collect(150)).toEqual([]);
      client.send({ type_url: CDS, version_info: cds.version_info, response_nonce: cds2.nonce, error_detail: { code: 3, message: 'cluster backend.default:8080: no thanks' } });
      p = await eventually(proxies, (v) => v.proxies[0].types.cds.lastNack !== null);
      expect(p.proxies[0].types.cds).toMatchObject({
        versionSent: cds2.version_info,
        versionAcked: cds.version_info,
        lastNack: { version: cds2.version_info, error: 'cluster backend.default:8080: no thanks' },
      });
      expect(await metric('pillion_control_nacks_total{type="cds"}')).toBe(1);
      // The rejected version is never resent: not on a forced reload, not on a no-op rewrite of the file.
      await server.reload();
      edit(meshYaml({ backendPort: 18082, maxConnections: 50 }) + '\n# a comment\n');
      expect(await client.collect(300)).toEqual([]);

      // An invalid edit: nothing is pushed, the error is shown, the last good config keeps serving.
      edit(meshYaml({ backendPort: 18083 }).replace('port: 50051', 'port: 99999'));
      p = await eventually(proxies, (v) => v.configError !== null);
      expect(p.configError.message).toMatch(/mesh\.yaml: services\[2\]\.ports\[0\]\.port: expected an integer/);
      expect(p.configError.problems[0].path).toBe('services[2].ports[0].port');
      expect(await metric('pillion_control_config_valid')).toBe(0);
      expect(await metric('pillion_control_config_errors_total')).toBe(1);
      expect(await client.collect(200)).toEqual([]);

      // Fixed: pushes resume with the changes since the last good config (CDS back to 100, EDS to 18083).
      renameReplace(meshYaml({ backendPort: 18083 }));
      const [a, b] = [await client.next(), await client.next()];
      expect([a.type_url, b.type_url]).toEqual([CDS, EDS]);
      // The clusters are back to what was ACKed first, under the config version of this edit; both carry it.
      const v4 = (await eventually(proxies, (v) => v.configError === null)).configVersion as string;
      expect([a.version_info, b.version_info]).toEqual([v4, v4]);
      expect(v4).not.toBe(v1);
      expect(await metric(`pillion_control_config_version_info{version="${v4}"}`)).toBe(1);
      client.ack(a);
      client.ack(b, edsNames);
      p = await eventually(proxies, (v) => v.configError === null && v.proxies[0].types.cds.versionAcked === a.version_info);
      expect(p.configError).toBeNull();
      expect(await metric('pillion_control_config_valid')).toBe(1);
      expect(await metric('pillion_control_push_duration_seconds_count')).toBeGreaterThanOrEqual(4);
      expect(await metric('pillion_control_pushes_total{type="eds"}')).toBe(3);
    } finally {
      client.close();
    }
    await eventually(() => metric('pillion_control_connected_proxies'), (v) => v === 0);
    expect(await metric('pillion_control_connected_proxies')).toBe(0);
    expect((await proxies()).proxies).toEqual([]);
  });

  it('answers a changed subscription at once, and serves api listeners by name', async () => {
    const client = new RawAdsClient(server.port, { id: 'grpc-client-1', metadata: {} });
    try {
      client.send({ type_url: LDS, resource_names: ['greeter.default:50051'] });
      const lds = await client.next();
      expect(names(lds)).toEqual(['greeter.default:50051']);
      client.ack(lds, ['greeter.default:50051']);
      client.send({ type_url: RDS, resource_names: ['greeter.default:50051'] });
      const rds = await client.next();
      expect(names(rds)).toEqual(['greeter.default:50051']);
      // A new name on the ACK: the response comes right away, with the new set.
      client.send({ type_url: RDS, resource_names: ['greeter.default:50051', 'outbound'], version_info: rds.version_info, response_nonce: rds.nonce });
      const rds2 = await client.next();
      expect(names(rds2)).toEqual(['greeter.default:50051', 'outbound']);
      const p = await proxies();
      expect(p.proxies[0]).toMatchObject({ nodeId: 'grpc-client-1', service: '', proxyless: true });
    } finally {
      client.close();
    }
  });

  it("shows a proxyless client's NACK on /proxies with its error, as a sidecar's", async () => {
    // What gRPC C-core 1.51 sent for a LEAST_REQUEST Cluster before proxyless clients had Clusters of their own.
    const error =
      'xDS response validation errors: [resource index 0: greeter.default:50051: INVALID_ARGUMENT: errors validating Cluster resource: [field:lb_policy error:LB policy is not supported]]';
    const client = new RawAdsClient(server.port, { id: 'grpc-core-nack', metadata: {} });
    try {
      client.send({ type_url: CDS, resource_names: ['greeter.default:50051'] });
      const cds = await client.next();
      expect(names(cds)).toEqual(['greeter.default:50051']);
      client.send({ type_url: CDS, resource_names: ['greeter.default:50051'], response_nonce: cds.nonce, error_detail: { code: 14, message: error } });
      const p = await eventually(proxies, (v) => v.proxies.some((x: { nodeId: string; types: { cds?: { lastNack: unknown } } }) => x.nodeId === 'grpc-core-nack' && x.types.cds?.lastNack));
      const me = p.proxies.find((x: { nodeId: string }) => x.nodeId === 'grpc-core-nack');
      expect(me).toMatchObject({ service: '', proxyless: true });
      expect(me.types.cds).toMatchObject({ versionSent: cds.version_info, versionAcked: null, lastNack: { version: cds.version_info, error } });
    } finally {
      client.close();
    }
  });

  it('gives equal versions on two control servers serving equal configs', async () => {
    const other = await startControlServer({ configFile: file, port: 0, adminPort: 0 });
    const c1 = new RawAdsClient(server.port, NODE);
    const c2 = new RawAdsClient(other.port, NODE);
    try {
      c1.send({ type_url: CDS });
      c2.send({ type_url: CDS });
      const [r1, r2] = [await c1.next(), await c2.next()];
      expect(r1.version_info).toBe(r2.version_info);
      expect(r1.nonce).not.toBe(r2.nonce);
    } finally {
      c1.close();
      c2.close();
      await other.close();
    }
  });

  it('ends a stream past a limit with its reason, counts it, and keeps /proxies small', async () => {
    const limited = await startControlServer({ configFile: file, port: 0, adminPort: 0, limits: { maxStreams: 3, maxNamesPerType: 100, maxNameLength: 64 } });
    const clients: RawAdsClient[] = [];
    const open = (node: Record<string, unknown> | typeof NODE = NODE) => {
      const c = new RawAdsClient(limited.port, node);
      clients.push(c);
      return c;
    };
    const refusals = async (limit: string) => {
      const text = await (await fetch(`http://127.0.0.1:${limited.adminPort}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`pillion_control_streams_refused_total{limit="${limit}"} `));
      return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
    };
    const ended = (c: RawAdsClient) => eventually(async () => c.status, (st) => st !== undefined);
    try {
      // 100 names (the limit) are answered, 101 end the stream with RESOURCE_EXHAUSTED and the reason.
      const a = open();
      const hundred = Array.from({ length: 100 }, (_, i) => `name-${String(i).padStart(3, '0')}`);
      a.send({ type_url: EDS, resource_names: hundred });
      expect((await a.next()).resources).toEqual([]);
      const b = open();
      b.send({ type_url: EDS, resource_names: [...hundred, 'one-more'] });
      expect(await ended(b)).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: '101 resource names for EDS; this server takes at most 100 per type per stream' });
      expect(await refusals('names_per_type')).toBe(1);
      const c = open();
      c.send({ type_url: CDS, resource_names: ['x'.repeat(65)] });
      expect(await ended(c)).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'a CDS resource name of 65 characters; this server takes at most 64' });
      // A node id past the name length: INVALID_ARGUMENT, before anything is compiled or kept.
      const d = open({ ...NODE, id: 'n'.repeat(65) });
      d.send({ type_url: LDS });
      expect(await ended(d)).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'node id of 65 characters; this server takes at most 64' });
      expect(await refusals('node_field_length')).toBe(1);

      // /proxies lists at most 32 names per type, and how many there are.
      const p = (await (await fetch(`http://127.0.0.1:${limited.adminPort}/proxies`)).json()) as { proxies: { types: { eds: { subscribed: string[]; subscribedCount: number } } }[] };
      expect(p.proxies).toHaveLength(1);
      expect(p.proxies[0]!.types.eds.subscribed).toEqual(hundred.slice(0, 32));
      expect(p.proxies[0]!.types.eds.subscribedCount).toBe(100);

      // Three streams open at most (a is one): the fourth is refused at once, whatever it sends.
      const e = open();
      e.send({ type_url: LDS });
      await e.next();
      const f = open();
      f.send({ type_url: LDS });
      await f.next();
      const g = open();
      g.send({ type_url: LDS });
      expect(await ended(g)).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'this server holds its most ADS streams (3)' });
      expect(await refusals('streams')).toBe(1);
      // A slot freed is a slot taken again.
      f.close();
      const h = await eventually(async () => {
        const c2 = open();
        c2.send({ type_url: LDS });
        return c2.next(1_000).then(() => c2, () => undefined);
      }, (v) => v !== undefined);
      expect(h).toBeDefined();
    } finally {
      for (const c of clients) c.close();
      await limited.close();
    }
  });

  it('ends a stream that sends nothing within the first-request deadline, and counts it', async () => {
    const limited = await startControlServer({ configFile: file, port: 0, adminPort: 0, limits: { maxStreams: 2, firstRequestTimeoutMs: 300 } });
    const silent = [new RawAdsClient(limited.port, NODE), new RawAdsClient(limited.port, NODE)];
    try {
      // Two silent streams hold both places; after the deadline they are gone and a proxy gets its config.
      for (const c of silent) {
        expect(await eventually(async () => c.status, (st) => st !== undefined)).toMatchObject({
          code: grpc.status.DEADLINE_EXCEEDED,
          details: 'no DiscoveryRequest with a node within 300 ms',
        });
      }
      const text = await (await fetch(`http://127.0.0.1:${limited.adminPort}/metrics`)).text();
      expect(text).toContain('pillion_control_streams_refused_total{limit="first_request_timeout"} 2');
      const proxy = new RawAdsClient(limited.port, NODE);
      silent.push(proxy);
      proxy.send({ type_url: LDS });
      expect((await proxy.next()).type_url).toBe(LDS);
    } finally {
      for (const c of silent) c.close();
      await limited.close();
    }
  });

  it('ends the stream of a client that stops reading once its unread responses pass the bound', async () => {
    // A big mesh (~1.3 MB of clusters a push), so the connection's flow-control window and socket buffers fill
    // within a few pushes; then each edit queues a whole push on the server for a client that takes nothing.
    const bigMesh = (timeoutMs: number) =>
      'services:\n' +
      Array.from({ length: 4000 }, (_, i) => `  - { name: svc-${i}-${'x'.repeat(40)}, ports: [{ port: 8080, protocol: http }], endpoints: [{ address: 127.0.0.1, port: ${20000 + (i % 1000)} }], policy: { mtls: DISABLE, connectTimeout: ${timeoutMs}ms } }`).join('\n') +
      '\n';
    const bigDir = mkdtempSync(join(tmpdir(), 'pillion-control-unread-'));
    const bigFile = join(bigDir, 'mesh.yaml');
    writeFileSync(bigFile, bigMesh(1000));
    const limited = await startControlServer({ configFile: bigFile, port: 0, adminPort: 0, debounceMs: 5, limits: { maxUnreadResponsesPerStream: 4 } });
    const stuck = new RawAdsClient(limited.port, { ...NODE, id: 'stuck-1', service: 'svc-0-' + 'x'.repeat(40) });
    try {
      stuck.send({ type_url: CDS });
      await stuck.next();
      stuck.pause();
      const refused = async () => {
        const text = await (await fetch(`http://127.0.0.1:${limited.adminPort}/metrics`)).text();
        return text.includes('pillion_control_streams_refused_total{limit="unread_responses"} 1');
      };
      for (let i = 1; i <= 40 && !(await refused()); i++) {
        writeFileSync(bigFile, bigMesh(1000 + i));
        await new Promise((r) => setTimeout(r, 150));
      }
      expect(await refused()).toBe(true);
      const listed = (await (await fetch(`http://127.0.0.1:${limited.adminPort}/proxies`)).json()) as { proxies: unknown[] };
      expect(listed.proxies).toHaveLength(0);
    } finally {
      stuck.close();
      await limited.close();
      rmSync(bigDir, { recursive: true, force: true });
    }
  }, 30_000);

  it('ends a stream whose first request carries no node with INVALID_ARGUMENT', async () => {
    const client = new RawAdsClient(server.port, null);
    client.send({ type_url: LDS });
    await eventually(async () => client.status, (s) => s !== undefined);
    expect(client.status?.code).toBe(3);
    client.close();
  });
});
