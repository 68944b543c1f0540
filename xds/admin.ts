// Control server admin HTTP (DESIGN.md §3): GET /metrics, /healthz, /proxies (connected proxies, ACKed and NACKed versions).
import { createServer, type ServerResponse } from 'node:http';
import { listenAdmin } from '../src/admin/listen.js';
import type { Registry } from 'prom-client';

export interface ControlAdminOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly registry: Registry;
  /** The /proxies document, built when asked. */
  readonly proxies: () => unknown;
}

export interface ControlAdmin {
  readonly port: number;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startControlAdmin(opts: ControlAdminOptions): Promise<ControlAdmin> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://admin').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain', 'method not allowed\n');
      return;
    }
    switch (path) {
      case '/healthz':
        send(res, 200, 'text/plain', 'ok\n');
        return;
      case '/proxies': {
        // Each entry is bounded (names summarized past a few dozen, node fields and NACK messages cut), but a
        // throw here would be an uncaught exception in the request handler: answer 500 instead, always.
        let body: string;
        try {
          body = `${JSON.stringify(opts.proxies(), null, 2)}\n`;
        } catch (err) {
          send(res, 500, 'text/plain', `cannot build /proxies: ${(err as Error).message}\n`);
          return;
        }
        send(res, 200, 'application/json', body);
        return;
      }
      case '/metrics':
        opts.registry.metrics().then(
          (text) => send(res, 200, opts.registry.contentType, text),
          (err: Error) => send(res, 500, 'text/plain', `${err.message}\n`),
        );
        return;
      default:
        send(res, 404, 'text/plain', 'not found: try /metrics, /healthz or /proxies\n');
    }
  });
  return listenAdmin(server, opts.host, opts.port);
}
