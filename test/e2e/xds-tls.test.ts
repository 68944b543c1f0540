// The mesh CA end to end, as real processes: `pillion control --ca-dir` serves xDS over TLS on its secure port,
// `pillion token` mints a token, and `pillion proxy --xds-ca --token` gets its config over TLS and its workload
// certificate; a proxy given another CA's root cannot connect and says why.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';

let dir: string;
let control: PillionProcess;
let securePort: number;
const procs: PillionProcess[] = [];

function pillion(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [...NODE_FLAGS, MAIN, ...args], (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-xds-tls-'));
  writeFileSync(
    join(dir, 'mesh.yaml'),
    `services:
  - name: web
    namespace: shop
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`,
  );
  control = runPillion(['control', '--config', join(dir, 'mesh.yaml'), '--port', '0', '--admin-port', '0', '--ca-dir', join(dir, 'ca'), '--secure-port', '0', '--cert-ttl', '1h']);
  procs.push(control);
  securePort = Number((await control.waitForLine((l) => l.msg === 'xds TLS and certificate service listening')).port);
});

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
});

function proxy(extra: string[]): PillionProcess {
  const p = runPillion([
    'proxy', '--service', 'web', '--namespace', 'shop', '--xds', `127.0.0.1:${securePort}`,
    '--admin-port', '0', '--inbound-port', '0', '--outbound-port', '0', '--app-port', '1', ...extra,
  ]);
  procs.push(p);
  return p;
}

describe('mesh CA and xDS over TLS (processes)', () => {
  it('pillion token prints a token; the proxy gets its config over TLS and a certificate for its identity', async () => {
    const minted = await pillion(['token', '--ca-dir', join(dir, 'ca'), '--namespace', 'shop', '--service-account', 'web', '--ttl', '10m']);
    expect(minted.code).toBe(0);
    expect(minted.stdout).toMatch(/^pt1\.[\w-]+\.[\w-]+\n$/);
    expect(statSync(join(dir, 'ca', 'root-key.pem')).mode & 0o777).toBe(0o600);
    writeFileSync(join(dir, 'web.token'), minted.stdout);

    const p = proxy(['--xds-ca', join(dir, 'ca', 'root-cert.pem'), '--token', join(dir, 'web.token')]);
    const admin = Number((await p.waitForLine((l) => l.msg === 'admin listening')).port);
    await p.waitForLine((l) => l.msg === 'proxy ready');
    const issued = await p.waitForLine((l) => l.msg === 'workload certificate issued');
    expect(issued.identity).toBe('spiffe://cluster.local/ns/shop/sa/web');
    const metrics = await (await fetch(`http://127.0.0.1:${admin}/metrics`)).text();
    const expiry = Number(/^pillion_workload_cert_expiry_timestamp_seconds (\S+)$/m.exec(metrics)?.[1]);
    expect(expiry * 1000).toBeGreaterThan(Date.now() + 50 * 60_000);
    expect(expiry * 1000).toBeLessThanOrEqual(Date.now() + 60 * 60_000);
    expect(metrics).toMatch(/pillion_workload_cert_renewals_total\{result="success"\} 1/);
  });

  it('a proxy whose token is for another identity installs no certificate, and says whose token it is', async () => {
    const minted = await pillion(['token', '--ca-dir', join(dir, 'ca'), '--namespace', 'shop', '--service-account', 'admin']);
    writeFileSync(join(dir, 'admin.token'), minted.stdout);
    const p = proxy(['--xds-ca', join(dir, 'ca', 'root-cert.pem'), '--token', join(dir, 'admin.token'), '--node-id', 'impostor']);
    const line = await p.waitForLine((l) => l.msg === 'cannot obtain a workload certificate');
    expect(String(line.reason)).toContain('ns/shop/sa/admin');
    expect(String(line.reason)).toContain('runs as ns/shop/sa/web');
  });

  it('a proxy given another CA as --xds-ca does not connect, and says the certificate is the problem', async () => {
    const other = join(dir, 'other-ca');
    // Any start of `pillion token` creates only the token key; a second control server creates another root.
    const otherControl = runPillion(['control', '--config', join(dir, 'mesh.yaml'), '--port', '0', '--admin-port', '0', '--ca-dir', other, '--secure-port', '0']);
    procs.push(otherControl);
    await otherControl.waitForLine((l) => l.msg === 'xds TLS and certificate service listening');
    const p = proxy(['--xds-ca', join(other, 'root-cert.pem')]);
    const line = await p.waitForLine((l) => l.msg === 'xds: cannot reach control server');
    expect(String(line.reason)).toMatch(/certificate/i);
    expect(String(line.hint)).toContain('--xds-ca must be the mesh root');
    expect(p.lines.some((l) => l.msg === 'xds connected')).toBe(false);
  });

  it('refuses --token without --xds-ca (a token is never sent in plaintext)', async () => {
    const res = await pillion(['proxy', '--service', 'web', '--xds', '127.0.0.1:1', '--token', join(dir, 'web.token')]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--token needs --xds-ca');
  });
});
