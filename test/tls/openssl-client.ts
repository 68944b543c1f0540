// `openssl s_client` as an independent TLS client for the mTLS tests: connects with a mesh certificate, sends one
// request, and reports what the handshake negotiated.
import { spawn } from 'node:child_process';
import type { TestCa } from './test-ca.js';

/** 'TLSv1.x CIPHER' as negotiated with 127.0.0.1:port, '' when the handshake failed. `args`: more s_client flags. */
export function negotiated(ca: TestCa, spiffeId: string, port: number, host: string, args: readonly string[]): Promise<string> {
  const cert = ca.issue({ spiffeId });
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', ca.caFile, '-cert', cert.certFile, '-key', cert.keyFile, ...args]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += String(d)));
    child.stderr.on('data', () => {});
    const timer = setTimeout(() => child.kill(), 5_000);
    child.on('close', () => {
      clearTimeout(timer);
      const m = /New, (\S+), Cipher is (\S+)/.exec(out);
      resolve(m === null || m[2] === '(NONE)' ? '' : `${m[1]} ${m[2]}`);
    });
    child.stdin.on('error', () => {});
    child.stdin.end(`GET / HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`);
  });
}
