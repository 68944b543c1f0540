// Two `pillion control` replicas on one mesh file and one --ca-dir, as examples/kubernetes runs them: a proxy with
// `--xds A,B` connected to A fails over to B when A dies, and B's resend is a no-op. Both replicas version the
// config by its content, so the proxy's ACKed versions stay the same, its config (and each resource's
// last_updated) is unchanged, at most one identical response per type is applied, and traffic keeps flowing.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as tls from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';

/** The name sidecars dial in Kubernetes (examples/kubernetes): it must be in the TLS port's certificate. */
const SERVICE_NAME = 'pillion-control.pillion-system.svc';
let dir: string;
let backend: Backend;
const procs: PillionProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-replicas-'));
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
    policy: { mtls: DISABLE }
`,
  );
});

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

async function control(): Promise<{ proc: PillionProcess; secure: number; admin: number }> {
  const proc = runPillion(['control', '--config', join(dir, 'mesh.yaml'), '--port', '0', '--admin-port', '0', '--secure-port', '0', '--ca-dir', join(dir, 'ca'), '--cert-ttl', '1h', '--server-name', SERVICE_NAME]);
  procs.push(proc);
  const secure = Number((await proc.waitForLine((l) => l.msg === 'xds TLS and certificate service listening')).port);
  const admin = Number((await proc.waitForLine((l) => l.msg === 'control admin listening')).port);
  return { proc, secure, admin };
}

/** pillion_xds_updates_total by `type,result`. */
async function updates(admin: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^pillion_xds_updates_total\{type="(\w+)",result="(\w+)"\} (\d+)$/gm)) out[`${m[1]},${m[2]}`] = Number(m[3]);
  return out;
}

const configDump = async (admin: number): Promise<string> => (await fetch(`http://127.0.0.1:${admin}/config_dump`)).text();

async function configVersion(controlAdmin: number): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${controlAdmin}/metrics`)).text();
  return /^pillion_control_config_version_info\{version="(\w+)"\} 1$/m.exec(text)?.[1] ?? 'none';
}

describe('two control server replicas', () => {
  it('a proxy fails over from A to B with the same versions, no new config, and traffic flowing', async () => {
    const a = await control();
    // B after A: A created the CA, B loads the same root (in Kubernetes both mount one Secret).
    const b = await control();
    expect(await configVersion(a.admin)).toBe(await configVersion(b.admin));

    const token = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [...NODE_FLAGS, MAIN, 'token', '--ca-dir', join(dir, 'ca'), '--namespace', 'default', '--service-account', 'web'], (err, out) => (err ? reject(err) : resolve(out))),
    );
    writeFileSync(join(dir, 'web.token'), token);
    const proxy = runPillion([
      'proxy', '--service', 'web', '--xds', `127.0.0.1:${a.secure},127.0.0.1:${b.secure}`, '--xds-ca', join(dir, 'ca', 'root-cert.pem'),
      '--token', join(dir, 'web.token'), '--admin-port', '0', '--outbound-port', '0', '--access-log', 'off',
    ]);
    procs.push(proxy);
    const admin = Number((await proxy.waitForLine((l) => l.msg === 'admin listening')).port);
    const outbound = Number((await proxy.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
    await proxy.waitForLine((l) => l.msg === 'proxy ready', 15_000);
    expect((await request(outbound, { host: 'backend' })).status).toBe(200);

    const acksBefore = proxy.lines.filter((l) => l.msg === 'xds ACK');
    const versions = new Set(acksBefore.map((l) => l.version));
    expect(versions).toEqual(new Set([await configVersion(a.admin)]));
    const dumpBefore = await configDump(admin);
    const before = await updates(admin);

    a.proc.child.kill('SIGKILL');
    await a.proc.exited;
    // Traffic during the outage: the proxy serves its last good config.
    expect((await request(outbound, { host: 'backend' })).status).toBe(200);
    await proxy.waitForLine((l) => l.msg === 'xds ACK' && l.server === `127.0.0.1:${b.secure}`, 15_000);
    // Let B send whatever it would; a storm would show within this window.
    await new Promise((r) => setTimeout(r, 1_500));

    const acksAfter = proxy.lines.filter((l) => l.msg === 'xds ACK').slice(acksBefore.length);
    expect(acksAfter.length).toBeGreaterThan(0);
    expect(acksAfter.every((l) => l.server === `127.0.0.1:${b.secure}` && versions.has(l.version))).toBe(true);
    expect(proxy.lines.some((l) => l.msg === 'xds NACK')).toBe(false);
    // At most one identical response per type, each an ACK.
    const after = await updates(admin);
    const delta = Object.entries(after).map(([key, n]) => [key, n - (before[key] ?? 0)] as const);
    expect(delta.filter(([key, d]) => key.endsWith(',nack') && d !== 0)).toEqual([]);
    expect(delta.filter(([, d]) => d > 1)).toEqual([]);
    // Nothing new applied: every resource has the bytes (and the last_updated) it had from A.
    expect(await configDump(admin)).toBe(dumpBefore);
    expect((await request(outbound, { host: 'backend' })).status).toBe(200);
    const proxies = (await (await fetch(`http://127.0.0.1:${b.admin}/proxies`)).json()) as { proxies?: { configVersion?: string }[] } | { configVersion?: string }[];
    expect(JSON.stringify(proxies)).toContain([...versions][0]);
  });

  it('--server-name puts the Service name into the TLS port\'s certificate, verified against the shared root', async () => {
    const b = await control();
    const verify = (): Promise<boolean> =>
      new Promise<boolean>((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: b.secure, servername: SERVICE_NAME, ca: readFileSync(join(dir, 'ca', 'root-cert.pem')), ALPNProtocols: ['h2'] }, () => {
          resolve(socket.authorized);
          socket.destroy();
        });
        socket.on('error', reject);
      });
    // The first TLS connection right after the port starts is reset (grpc-js installs the serving certificate
    // asynchronously; proxies retry): a few bounded attempts.
    let verified = false;
    for (let attempt = 0; ; attempt++) {
      try {
        verified = await verify();
        break;
      } catch (err) {
        if (attempt >= 4) throw err;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    expect(verified).toBe(true);
  });
});
