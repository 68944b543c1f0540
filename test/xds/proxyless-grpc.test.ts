// Proof against an independent xDS client: @grpc/grpc-js-xds resolves xds:///greeter.default:50051 through our control server.
// grpc-js-xds keeps process-global state (bootstrap, xDS client), so every case that uses it lives in this one file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import * as grpcXds from '@grpc/grpc-js-xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlServer, type ControlServer } from '../../xds/server.js';
import { grpc, startEchoServer, type EchoServer } from '../helpers/grpc.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loaded = any;

const TARGET = 'xds:///greeter.default:50051';

const POLICIES = {
  least_request: '{ policy: least_request, choiceCount: 3 }',
  round_robin: '{ policy: round_robin }',
  random: '{ policy: random }',
  // The calls carry no x-user: each is hashed at random, and they spread.
  ring_hash: '{ policy: ring_hash, hashOn: { header: x-user }, minRingSize: 64 }',
} as const;

function meshYaml(backendPort: number | readonly number[], lb?: string): string {
  const ports = typeof backendPort === 'number' ? [backendPort] : backendPort;
  return `
services:
  - name: greeter
    namespace: default
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [${ports.map((p) => `{ address: 127.0.0.1, port: ${p} }`).join(', ')}]
${lb ? `    policy: { loadBalancer: ${lb}, outlierDetection: { consecutive5xx: 3 }, circuitBreakers: { maxRequests: 100 } }\n` : ''}  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 18080 }]
`;
}

function unary(client: Loaded, text: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.Unary({ text }, { deadline: Date.now() + 2000 }, (err: Error | null, res: { text: string }) => (err ? reject(err) : resolve(res.text))),
  );
}

let dir: string;
let file: string;
let control: ControlServer;
let g1: EchoServer;
let g2: EchoServer;
let g3: EchoServer;
let client: Loaded;

beforeAll(async () => {
  g1 = await startEchoServer('g1');
  g2 = await startEchoServer('g2');
  g3 = await startEchoServer('g3');
  dir = mkdtempSync(join(tmpdir(), 'pillion-proxyless-'));
  file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshYaml(g1.port));
  control = await startControlServer({ configFile: file, port: 0, adminPort: 0, debounceMs: 20 });
  // grpc-js-xds reads its bootstrap once, when the first xds: channel is made.
  process.env.GRPC_XDS_BOOTSTRAP_CONFIG = JSON.stringify({
    xds_servers: [{ server_uri: `127.0.0.1:${control.port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    // grpc-js-xds 1.14's bootstrap validator insists on node.locality being present (it may be empty).
    node: { id: 'proxyless-test-client', metadata: {}, locality: {} },
  });
  grpcXds.register();
  const def = protoLoader.loadSync(fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url)), { keepCase: true });
  const Echo = (grpc.loadPackageDefinition(def) as Loaded).pillion.test.Echo;
  client = new Echo(TARGET, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await control?.close();
  await g1?.close();
  await g2?.close();
  await g3?.close();
  delete process.env.GRPC_XDS_BOOTSTRAP_CONFIG;
  rmSync(dir, { recursive: true, force: true });
});

describe('proxyless gRPC (@grpc/grpc-js-xds) against pillion control', () => {
  it('reaches the backend named in the mesh config through LDS (api_listener) → RDS → CDS → EDS', async () => {
    expect(await unary(client, 'hello')).toBe('g1:hello');
    // The client ACKed what it got: no NACK of any type.
    const p = (await (await fetch(`http://127.0.0.1:${control.adminPort}/proxies`)).json()) as Loaded;
    const me = p.proxies.find((x: Loaded) => x.nodeId === 'proxyless-test-client');
    expect(me.proxyless).toBe(true);
    for (const t of ['lds', 'rds', 'cds', 'eds']) {
      expect(me.types[t].lastNack).toBeNull();
      expect(me.types[t].versionAcked).toBe(me.types[t].versionSent);
    }
    expect(me.types.lds.subscribed).toEqual(['greeter.default:50051']);
  });

  it('follows an endpoint change in the mesh config without a restart', async () => {
    writeFileSync(file, meshYaml(g2.port));
    const deadline = Date.now() + 5000;
    let last = '';
    while (Date.now() < deadline) {
      last = await unary(client, 'again').catch((e: Error) => `error: ${e.message}`);
      if (last === 'g2:again') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(last).toBe('g2:again');
    // And it stays there: the old endpoint is gone from the assignment.
    for (let i = 0; i < 5; i++) expect(await unary(client, `n${i}`)).toBe(`g2:n${i}`);
  });

  // One channel through every policy: each edit brings new endpoints (and for ring_hash a new Cluster) it must take.
  for (const [policy, lb] of Object.entries(POLICIES)) {
    it(`${policy}: calls spread over both endpoints and follow an endpoint edit, every type ACKed`, async () => {
      writeFileSync(file, meshYaml([g1.port, g2.port], lb));
      // Until the edit arrives the calls go to the last step's g3; from the first g1 or g2 on, only to g1 and g2.
      const replies: string[] = [];
      const deadline = Date.now() + 5000;
      const servers = () => new Set(replies.slice(Math.max(0, replies.findIndex((r) => /^g[12]:/.test(r)))).map((r) => r.split(':')[0]));
      while (!(servers().has('g1') && servers().has('g2')) && Date.now() < deadline) {
        replies.push(await unary(client, 'x').catch((e: Error) => `error: ${e.message}`));
      }
      expect([...servers()].sort()).toEqual(['g1', 'g2']);

      writeFileSync(file, meshYaml([g3.port], lb));
      let last = '';
      while (last !== 'g3:y' && Date.now() < deadline + 5000) last = await unary(client, 'y').catch((e: Error) => `error: ${e.message}`);
      expect(last).toBe('g3:y');
      for (let i = 0; i < 5; i++) expect(await unary(client, `n${i}`)).toBe(`g3:n${i}`);

      const p = (await (await fetch(`http://127.0.0.1:${control.adminPort}/proxies`)).json()) as Loaded;
      const me = p.proxies.find((x: Loaded) => x.nodeId === 'proxyless-test-client');
      for (const t of ['lds', 'rds', 'cds', 'eds']) {
        expect(me.types[t].lastNack, `${t} NACK`).toBeNull();
        expect(me.types[t].versionAcked, t).toBe(me.types[t].versionSent);
      }
    });
  }
});
