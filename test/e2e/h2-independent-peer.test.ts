// Both sides of the proxy's HTTP/2 against an independent implementation: python-h2 (hyper-h2, Debian's
// python3-h2) as the client and as the upstream server (test/e2e/h2_peer.py). Its state machine raises on anything
// a conforming peer must not send (a DATA frame past the window, a frame on a closed stream, a header block it
// cannot decode), so each scenario passing means the proxy spoke HTTP/2 as a third party reads it: twenty
// concurrent uploads with padded DATA echoed whole, PING, gRPC-shaped trailers, a header block past one frame
// (CONTINUATION in and out), PRIORITY in HEADERS, a client RST_STREAM mid-response and the connection serving
// on, and a client with a 1 KiB stream window and no HPACK dynamic table. Skips, saying why, where python3-h2
// cannot be imported (.ci/run installs it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { startEchoServer, type EchoServer } from '../helpers/grpc.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const SCRIPT = join(HERE, 'h2_peer.py');
const GRPC_SCRIPT = join(HERE, 'grpc_core_client.py');

/** The first Python that imports `module` (Debian's packages live in /usr/bin/python3's dist-packages). */
function findPython(module: string, apt: string): { python: string } | { reason: string } {
  const tried: string[] = [];
  for (const python of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(python, ['-c', `import ${module}`], { encoding: 'utf8', timeout: 10_000 });
    if (r.status === 0) return { python };
    tried.push(`${python}: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`);
  }
  return { reason: `${apt} cannot be imported (${tried.join('; ')}); install it with apt-get install ${apt}` };
}

const found = findPython('h2', 'python3-h2');
const foundGrpc = findPython('grpc', 'python3-grpcio');

/** Runs a client script; not spawnSync: the proxy runs in this process and must keep serving meanwhile. */
function runScript(python: string, args: readonly string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(python, args);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill(), 60_000);
    child.on('error', (err) => (stderr += String(err)));
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

if ('reason' in found) {
  describe.skip(`HTTP/2 against python-h2: ${found.reason}`, () => {
    it('skipped', () => {});
  });
} else {
  const python = found.python;
  let server: ChildProcess;
  let proxy: RunningProxy;

  beforeAll(async () => {
    server = spawn(python, [SCRIPT, 'server'], { stdio: ['pipe', 'pipe', 'inherit'] });
    server.on('error', () => {});
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: server.stdout! }).once('line', resolve);
      server.once('exit', (code) => reject(new Error(`h2_peer.py server exited with ${code}`)));
    });
    const upstreamPort = (JSON.parse(line) as { port: number }).port;
    proxy = await startProxy(
      `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: pyh2
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${upstreamPort} }]
`,
      { service: 'client' },
    );
  });

  afterAll(async () => {
    await proxy?.close();
    server?.stdin?.end();
    server?.kill();
  });

  describe('HTTP/2 against python-h2 as the client and as the upstream', () => {
    it('every scenario completes, byte for byte, without a protocol error on either side', async () => {
      const r = await runScript(python, [SCRIPT, 'client', String(proxy.port('outbound')), 'pyh2:8080']);
      expect(r.status, `h2_peer.py client failed:\n${r.stderr}`).toBe(0);
      const results = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
      expect(results.echo).toBe(true);
      // The client's own field arrived; the proxy added x-forwarded-for and x-request-id.
      expect(String(results.echoSeen).split(',')).toEqual(expect.arrayContaining(['x-n', 'x-forwarded-for', 'x-request-id']));
      expect(results.ping).toBe(true);
      expect(results.trailers).toEqual({ 'grpc-status': '0', 'grpc-message': 'ok' });
      expect(results.longHeader).toBe(20_000);
      expect(results.afterReset).toBe('after');
      expect(results.smallWindow).toBe(true);
    });
  });
}

if ('reason' in foundGrpc) {
  describe.skip(`gRPC C-core through the proxy: ${foundGrpc.reason}`, () => {
    it('skipped', () => {});
  });
} else {
  const python = foundGrpc.python;
  let echo: EchoServer;
  let proxy: RunningProxy;

  beforeAll(async () => {
    echo = await startEchoServer('echo');
    proxy = await startProxy(
      `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: greeter
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${echo.port} }]
`,
      { service: 'client' },
    );
  });

  afterAll(async () => {
    await proxy?.close();
    await echo?.close();
  });

  describe('gRPC C-core (python3-grpcio) as the client, grpc-js as the server', () => {
    it('unary (200 at once, metadata, an error status, a 3 MiB message), bidirectional streaming and UNIMPLEMENTED', async () => {
      const r = await runScript(python, [GRPC_SCRIPT, String(proxy.port('outbound')), 'greeter:50051']);
      expect(r.status, `grpc_core_client.py failed:\n${r.stderr}`).toBe(0);
      const results = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
      expect(results).toEqual({
        unary: true,
        metadata: 'echo',
        failStatus: 'NOT_FOUND:no such thing',
        bigLength: 5 + 3 * 1024 * 1024,
        chat: true,
        unknownMethod: 'UNIMPLEMENTED',
      });
    });
  });
}
