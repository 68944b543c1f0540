// `pillion ctl proxies` against a real control server with a real `pillion proxy --xds` (ACKs) and a raw ADS peer
// (a NACK), and the PILLION_CONTROL / PILLION_ADMIN defaults (a flag wins over its variable).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TYPE_URLS } from '../../src/config/protos.js';
import { startControlServer, type ControlServer } from '../../xds/server.js';
import { RawAdsClient } from '../xds/ads-client.js';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';

function ctl(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    // Without the caller's PILLION_* variables: the test says which ones are set.
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PILLION_')));
    const child = spawn(process.execPath, [MAIN, 'ctl', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...base, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

const NACK_ERROR = 'cluster backend.default:8080: lb_policy MAGLEV is not supported by this client';

let dir: string;
let file: string;
let server: ControlServer;
let app: Backend;
let proxy: PillionProcess;
let proxyAdmin: number;
let nacker: RawAdsClient;
let nackedVersion: string;

function meshYaml(timeout = '5s'): string {
  return `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${app.port} }]
    policy: { timeout: ${timeout} }
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 18081 }]
`;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function proxies(): Promise<any> {
  return (await fetch(`http://127.0.0.1:${server.adminPort}/proxies`)).json();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-ctl-proxies-'));
  file = join(dir, 'mesh.yaml');
  app = await startHttpBackend('frontend-app');
  writeFileSync(file, meshYaml());
  server = await startControlServer({ configFile: file, port: 0, adminPort: 0, debounceMs: 20 });
  proxy = runPillion([
    'proxy', '--xds', `127.0.0.1:${server.port}`, '--service', 'frontend', '--node-id', 'frontend-1', '--app-port', String(app.port),
    '--admin-port', '0', '--inbound-port', '0', '--outbound-port', '0', '--access-log', 'off',
  ]);
  proxyAdmin = Number((await proxy.waitForLine((l) => l.msg === 'admin listening')).port);
  // A peer that rejects the clusters it is sent, as a client with another validator would.
  nacker = new RawAdsClient(server.port, { id: 'picky-1', service: 'backend', namespace: 'default', serviceAccount: 'backend', appPort: 18081, inboundPort: 15006, outboundPort: 15001 });
  nacker.send({ type_url: TYPE_URLS.Cluster });
  const cds = await nacker.next();
  nackedVersion = cds.version_info;
  nacker.send({ type_url: TYPE_URLS.Cluster, response_nonce: cds.nonce, error_detail: { code: 3, message: NACK_ERROR } });
  // Both connected, the proxy's four types ACKed, the peer's NACK recorded.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const doc = await proxies();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const fe = doc.proxies.find((p: any) => p.nodeId === 'frontend-1');
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const pk = doc.proxies.find((p: any) => p.nodeId === 'picky-1');
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const types = fe ? (Object.values(fe.types) as any[]) : [];
    if (types.length === 4 && types.every((t) => t.versionAcked !== null && t.versionAcked === t.versionSent) && Object.values(pk?.types ?? {}).some((t) => (t as { lastNack: unknown }).lastNack)) break;
    if (Date.now() > deadline) throw new Error(`proxies not settled: ${JSON.stringify(doc)}\n${proxy.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}, 30_000);

afterAll(async () => {
  nacker?.close();
  proxy?.child.kill('SIGTERM');
  await proxy?.exited;
  await server?.close();
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('pillion ctl proxies', () => {
  it('lists connected proxies with per-type sent and ACKed versions, and the last NACK with its error', async () => {
    const doc = await proxies();
    const { code, out, err } = await ctl(['proxies', '--control', `127.0.0.1:${server.adminPort}`]);
    expect(err).toBe('');
    expect(code).toBe(0);
    const lines = out.split('\n');
    expect(lines[0]).toBe(`mesh config: valid, version ${doc.configVersion}`);
    expect(lines[1]).toMatch(/^NODE\s+SERVICE\s+CONNECTED\s+TYPE\s+SENT\s+ACKED\s+STATE\s+LAST NACK$/);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const fe = doc.proxies.find((p: any) => p.nodeId === 'frontend-1');
    for (const [type, t] of Object.entries(fe.types) as Array<[string, { versionSent: string }]>) {
      expect(out).toMatch(new RegExp(`^frontend-1\\s+frontend\\.default\\s+\\d+s\\s+${type}\\s+${t.versionSent}\\s+${t.versionSent}\\s+ACKED\\s+-$`, 'm'));
    }
    expect(out).toMatch(
      new RegExp(`^picky-1\\s+backend\\.default\\s+\\d+s\\s+\\w+\\s+${nackedVersion}\\s+-\\s+NACKED\\s+${nackedVersion} at \\S+Z: ${NACK_ERROR.replace(/[.]/g, '\\.')}$`, 'm'),
    );
  });

  it('takes --control from PILLION_CONTROL and --admin from PILLION_ADMIN; a flag wins over its variable', async () => {
    const control = `127.0.0.1:${server.adminPort}`;
    const fromEnv = await ctl(['proxies'], { PILLION_CONTROL: control });
    expect(fromEnv.code).toBe(0);
    expect(fromEnv.out).toMatch(/^frontend-1\s/m);
    // A variable pointing nowhere loses to the flag…
    const flagWins = await ctl(['proxies', '--control', control], { PILLION_CONTROL: '127.0.0.1:9' });
    expect(flagWins.code).toBe(0);
    expect(flagWins.out).toMatch(/^picky-1\s/m);
    // …and without the flag it is what ctl dials.
    const envUsed = await ctl(['proxies'], { PILLION_CONTROL: '127.0.0.1:9' });
    expect(envUsed.code).toBe(1);
    expect(envUsed.err).toContain("cannot reach the control server's admin server at 127.0.0.1:9");

    const listeners = await ctl(['listeners'], { PILLION_ADMIN: `127.0.0.1:${proxyAdmin}` });
    expect(listeners.code).toBe(0);
    expect(listeners.out).toMatch(/^outbound\s+127\.0\.0\.1:\d+\s+outbound$/m);
    const adminEnvUsed = await ctl(['clusters'], { PILLION_ADMIN: '127.0.0.1:9' });
    expect(adminEnvUsed.err).toContain("cannot reach the proxy's admin server at 127.0.0.1:9");
    expect((await ctl(['clusters', '--admin', `127.0.0.1:${proxyAdmin}`], { PILLION_ADMIN: '127.0.0.1:9' })).out).toMatch(/^frontend\.default:8080\s/m);
    // The proxy's admin port given as the control server's: the error says which is which.
    const wrongPort = await ctl(['proxies', '--control', `127.0.0.1:${proxyAdmin}`]);
    expect(wrongPort.code).toBe(1);
    expect(wrongPort.err).toContain(`http://127.0.0.1:${proxyAdmin}/proxies: HTTP 404 (is 127.0.0.1:${proxyAdmin} the control server's admin server?)`);

    const help = await ctl(['--help']);
    expect(help.out).toContain('default $PILLION_ADMIN, else 127.0.0.1:15000');
    expect(help.out).toContain('default $PILLION_CONTROL, else 127.0.0.1:15014');
    expect(help.out).toContain('A flag wins over its environment variable');
  });

  it('says when the mesh file is invalid, with the problem, while the proxies keep their config', async () => {
    writeFileSync(file, meshYaml('5'));
    const deadline = Date.now() + 5_000;
    while ((await proxies()).configError === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    const { code, out } = await ctl(['proxies'], { PILLION_CONTROL: `127.0.0.1:${server.adminPort}` });
    expect(code).toBe(0);
    expect(out).toMatch(/^mesh config: INVALID since \S+Z; every proxy keeps the last good config \(version \w+\):\n {2}services\[0\]\.policy\.timeout: expected a duration like "250ms", got number 5 .*\(line 6\)\n/);
    expect(out).toMatch(/^frontend-1\s.*ACKED/m);
    writeFileSync(file, meshYaml());
  });
});
