// A mesh with its CA, as real processes: `pillion control --ca-dir` serving xDS and certificates over TLS, and
// sidecars that each get a token (`pillion token`, the CLI a user runs) and then their certificate.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { MAIN, runPillion, type PillionProcess } from './process.js';

export interface Sidecar {
  readonly proc: PillionProcess;
  readonly admin: number;
  readonly outbound: number;
}

export interface MeshWithCa {
  readonly dir: string;
  /** The control server's admin port (/metrics, /proxies). */
  readonly controlAdmin: number;
  /** Starts a sidecar with a fresh token for its namespace and service account (= service); resolves when ready. */
  sidecar(service: string, namespace: string, extra: readonly string[]): Promise<Sidecar>;
  close(): Promise<void>;
}

export async function startMeshWithCa(meshYaml: string, controlFlags: readonly string[] = []): Promise<MeshWithCa> {
  const dir = mkdtempSync(join(tmpdir(), 'pillion-mesh-ca-'));
  const procs: PillionProcess[] = [];
  writeFileSync(join(dir, 'mesh.yaml'), meshYaml);
  const caDir = join(dir, 'ca');
  const control = runPillion(['control', '--config', join(dir, 'mesh.yaml'), '--port', '0', '--admin-port', '0', '--ca-dir', caDir, '--secure-port', '0', ...controlFlags]);
  procs.push(control);
  const securePort = Number((await control.waitForLine((l) => l.msg === 'xds TLS and certificate service listening')).port);
  const controlAdmin = Number((await control.waitForLine((l) => l.msg === 'control admin listening')).port);

  const token = (namespace: string, serviceAccount: string): Promise<string> =>
    new Promise((resolve, reject) =>
      execFile(
        process.execPath,
        [...NODE_FLAGS, MAIN, 'token', '--ca-dir', caDir, '--namespace', namespace, '--service-account', serviceAccount, '--ttl', '10m'],
        (err, stdout) => (err ? reject(err) : resolve(stdout)),
      ),
    );

  return {
    dir,
    controlAdmin,
    async sidecar(service, namespace, extra) {
      const file = join(dir, `${namespace}.${service}.token`);
      writeFileSync(file, await token(namespace, service));
      const proc = runPillion([
        'proxy', '--service', service, '--namespace', namespace, '--xds', `127.0.0.1:${securePort}`, '--xds-ca', join(caDir, 'root-cert.pem'),
        '--token', file, '--admin-port', '0', '--outbound-port', '0', '--access-log', 'off', ...extra,
      ]);
      procs.push(proc);
      const admin = Number((await proc.waitForLine((l) => l.msg === 'admin listening')).port);
      const outbound = Number((await proc.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
      // 'proxy ready' waits for the config and the first certificate.
      await proc.waitForLine((l) => l.msg === 'proxy ready');
      return { proc, admin, outbound };
    },
    async close() {
      for (const p of procs) p.child.kill('SIGKILL');
      await Promise.all(procs.map((p) => p.exited));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
