// The mesh CA across a restart, as real processes: `pillion control --ca-dir` stopped and started again with the
// same directory keeps its root. Seen as a proxy sees it: the certificate service's TLS is trusted with the root
// the first process served, and the chains both processes issue end in the same root (same fingerprint).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';
import { createCertificate, makeCsr } from '../ca/helpers.js';

let dir: string;
let caDir: string;
let running: PillionProcess | null = null;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-ca-restart-'));
  caDir = join(dir, 'ca');
  writeFileSync(
    join(dir, 'mesh.yaml'),
    `services:
  - name: api
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`,
  );
});

afterAll(async () => {
  if (running !== null) {
    running.child.kill('SIGKILL');
    await running.exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

async function startControl(): Promise<number> {
  const p = runPillion(['control', '--config', join(dir, 'mesh.yaml'), '--port', '0', '--admin-port', '0', '--ca-dir', caDir, '--secure-port', '0']);
  running = p;
  return Number((await p.waitForLine((l) => l.msg === 'xds TLS and certificate service listening', 20_000)).port);
}

async function stopControl(): Promise<void> {
  const p = running!;
  running = null;
  p.child.kill('SIGTERM');
  await p.exited;
}

/** A token from the `pillion token` CLI, as an operator mints one. */
function token(): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [...NODE_FLAGS, MAIN, 'token', '--ca-dir', caDir, '--namespace', 'default', '--service-account', 'api', '--ttl', '10m'], (err, stdout) =>
      err ? reject(err) : resolve(stdout.trim()),
    ),
  );
}

/** A workload certificate chain from the CA at `port`, trusting only `rootPem` for its TLS. */
async function issue(port: number, rootPem: string): Promise<string[]> {
  const res = await createCertificate(`127.0.0.1:${port}`, { rootPem, token: await token(), csrPem: (await makeCsr()).csrPem });
  if (!res.ok) throw new Error(`CreateCertificate failed: ${res.details}`);
  return res.chain;
}

describe('mesh CA restarted with the same --ca-dir (processes)', () => {
  it('keeps the same root: the restarted CA is trusted with the first root and chains to it', async () => {
    const firstPort = await startControl();
    const rootPem = readFileSync(join(caDir, 'root-cert.pem'), 'utf8');
    const root = new X509Certificate(rootPem);
    const firstChain = await issue(firstPort, rootPem);
    expect(new X509Certificate(firstChain.at(-1)!).fingerprint256).toBe(root.fingerprint256);
    await stopControl();

    const secondPort = await startControl();
    // The TLS of the restarted certificate service verifies against the first process's root...
    const secondChain = await issue(secondPort, rootPem);
    // ...and what it issues chains to the same root, signed by its key.
    expect(new X509Certificate(secondChain.at(-1)!).fingerprint256).toBe(root.fingerprint256);
    expect(new X509Certificate(secondChain[0]!).verify(root.publicKey)).toBe(true);
    expect(readFileSync(join(caDir, 'root-cert.pem'), 'utf8')).toBe(rootPem);
    await stopControl();
  }, 60_000);
});
