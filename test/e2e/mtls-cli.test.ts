// `pillion proxy --config mesh.yaml --cert --key --ca` as real processes: two sidecars with identities from
// files talk mTLS (STRICT by default); a sidecar without an identity keeps plaintext, says so at startup, and is
// refused by the STRICT one; --cert without --key and --ca is a usage error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { runPillion, type PillionProcess } from '../helpers/process.js';
import { TestCa } from '../tls/test-ca.js';

const TD = 'spiffe://cluster.local/ns/default/sa';
let ca: TestCa;
let app: Backend;
let dir: string;
let meshFile: string;
const procs: PillionProcess[] = [];

function start(service: string, extra: string[]): PillionProcess {
  const p = runPillion(['proxy', '--config', meshFile, '--service', service, '--admin-port', '0', '--outbound-port', '0', '--access-log', 'off', ...extra]);
  procs.push(p);
  return p;
}

const outboundOf = async (p: PillionProcess) => Number((await p.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
const identity = (service: string) => {
  const c = ca.issue({ spiffeId: `${TD}/${service}`, cn: service });
  return ['--cert', c.certFile, '--key', c.keyFile, '--ca', ca.caFile];
};

let backendInbound: number;

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app');
  dir = mkdtempSync(join(tmpdir(), 'pillion-mtls-cli-'));
  meshFile = join(dir, 'mesh.yaml');
  backendInbound = await freePort();
  writeFileSync(
    meshFile,
    `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendInbound} }]
    policy: { retries: { attempts: 0 } }
`,
  );
  const backend = start('backend', ['--app-port', String(app.port), '--inbound-port', String(backendInbound), ...identity('backend')]);
  await backend.waitForLine((l) => l.msg === 'proxy ready');
}, 30_000);

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await app?.close();
  ca?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('pillion proxy --cert --key --ca', () => {
  it('talks mTLS between two sidecars with identities from files', async () => {
    const frontend = start('frontend', ['--inbound-port', '0', ...identity('frontend')]);
    const loaded = await frontend.waitForLine((l) => String(l.msg).startsWith('workload identity loaded'));
    expect(loaded.spiffeId).toBe(`${TD}/frontend`);
    const port = await outboundOf(frontend);
    await frontend.waitForLine((l) => l.msg === 'proxy ready');
    const res = await request(port, { host: 'backend:8080', path: '/' });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-forwarded-client-cert']).toContain(`URI=${TD}/frontend`);
  });

  it('keeps plaintext without an identity, says so loudly, and the STRICT peer refuses it', async () => {
    const plain = start('frontend', ['--inbound-port', '0']);
    const warning = await plain.waitForLine((l) => String(l.msg).includes('enforced only by proxies with a workload identity'));
    expect(warning.level).toBe(40);
    const port = await outboundOf(plain);
    await plain.waitForLine((l) => l.msg === 'proxy ready');
    const res = await request(port, { host: 'backend:8080', path: '/' });
    expect(res.status).toBe(503);
  });

  it('refuses --cert without --key and --ca', async () => {
    const p = runPillion(['proxy', '--config', meshFile, '--service', 'frontend', '--cert', '/nonexistent']);
    expect(await p.exited).not.toBe(0);
    expect(p.stderr).toContain('--cert, --key and --ca go together');
  });
});
