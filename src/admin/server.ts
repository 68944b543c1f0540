// Proxy admin HTTP server (DESIGN.md §3): metrics, readiness, config dump, clusters, listeners, logging, drain.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenAdmin } from './listen.js';
import type { AdminSource } from './types.js';

/** The few logger methods the admin server uses (a pino Logger fits). */
export interface AdminLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface AdminServerOptions {
  readonly host: string;
  /** 0 picks a free port; the chosen one is returned and logged. */
  readonly port: number;
  readonly logger: AdminLogger;
}

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

type Handler = (source: AdminSource, req: IncomingMessage, res: ServerResponse, url: URL, logger: AdminLogger) => void | Promise<void>;

interface Route {
  readonly method: 'GET' | 'POST';
  readonly handler: Handler;
}

const ROUTES: ReadonlyMap<string, Route> = new Map<string, Route>([
  ['/metrics', { method: 'GET', handler: metrics }],
  ['/ready', { method: 'GET', handler: ready }],
  ['/healthz', { method: 'GET', handler: (_s, _q, res) => text(res, 200, 'ok\n') }],
  ['/config_dump', { method: 'GET', handler: configDump }],
  ['/clusters', { method: 'GET', handler: (s, _q, res) => json(res, 200, s.clusters()) }],
  ['/listeners', { method: 'GET', handler: (s, _q, res) => json(res, 200, s.listeners()) }],
  // The route tables as the data path reads them (inline ones included), for `pillion ctl routes`.
  ['/routes', { method: 'GET', handler: (s, _q, res) => json(res, 200, [...s.snapshot().routeConfigs.values()]) }],
  ['/logging', { method: 'POST', handler: logging }],
  ['/drain', { method: 'POST', handler: drain }],
]);

export async function startAdminServer(source: AdminSource, opts: AdminServerOptions): Promise<AdminServer> {
  const { logger } = opts;
  const server: Server = createServer((req, res) => {
    // handle() answers its own errors with a 500; this is for a failure while doing so.
    handle(source, req, res, logger).catch((err: unknown) => {
      logger.warn({ err, path: req.url }, 'admin request failed');
      res.destroy();
    });
  });
  const listening = await listenAdmin(server, opts.host, opts.port);
  logger.info({ host: opts.host, port: listening.port }, 'admin server listening');
  return listening;
}

async function handle(source: AdminSource, req: IncomingMessage, res: ServerResponse, logger: AdminLogger): Promise<void> {
  try {
    const url = new URL(req.url ?? '/', 'http://admin');
    const route = ROUTES.get(url.pathname);
    if (route === undefined) {
      json(res, 404, { error: 'not_found', message: `no admin endpoint ${url.pathname}`, endpoints: [...ROUTES.keys()] });
      return;
    }
    // HEAD is GET without a body (node:http drops the body for HEAD responses).
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    if (method !== route.method) {
      res.setHeader('allow', route.method === 'GET' ? 'GET, HEAD' : route.method);
      json(res, 405, { error: 'method_not_allowed', message: `${url.pathname} takes ${route.method}` });
      return;
    }
    await route.handler(source, req, res, url, logger);
  } catch (err) {
    logger.warn({ err, path: req.url }, 'admin request failed');
    if (!res.headersSent) json(res, 500, { error: 'internal', message: err instanceof Error ? err.message : String(err) });
    else res.destroy();
  }
}

async function metrics(source: AdminSource, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await source.registry.metrics();
  res.writeHead(200, { 'content-type': source.registry.contentType });
  res.end(body);
}

function ready(source: AdminSource, _req: IncomingMessage, res: ServerResponse): void {
  if (source.isReady()) text(res, 200, 'ready\n');
  else text(res, 503, 'not ready\n');
}

function configDump(source: AdminSource, _req: IncomingMessage, res: ServerResponse): void {
  json(res, 200, { version: source.snapshot().version, config: source.configDump() });
}

function logging(source: AdminSource, _req: IncomingMessage, res: ServerResponse, url: URL, logger: AdminLogger): void {
  const level = url.searchParams.get('level');
  if (level === null || level === '') {
    json(res, 400, { error: 'bad_request', message: 'missing ?level= (fatal, error, warn, info, debug, trace, silent)' });
    return;
  }
  if (!source.setLogLevel(level)) {
    json(res, 400, { error: 'bad_request', message: `unknown log level ${JSON.stringify(level)}` });
    return;
  }
  logger.info({ level }, 'log level changed');
  json(res, 200, { level });
}

function drain(source: AdminSource, _req: IncomingMessage, res: ServerResponse, _url: URL, logger: AdminLogger): void {
  // 202: draining has started; it finishes when in-flight requests do, which the caller need not wait for.
  source.drain().then(
    () => logger.info({}, 'drained'),
    (err: unknown) => logger.warn({ err }, 'drain failed'),
  );
  json(res, 202, { draining: true });
}

/** Pretty JSON with a trailing newline: operators read these with curl. */
function json(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
