// Proxy admin HTTP server (DESIGN.md §3): metrics, readiness, config dump, clusters, listeners, logging, drain.
// Paths Envoy also has answer in Envoy's shapes, so an Envoy user's scripts run unchanged; ours stay reachable
// with ?format=pillion.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenAdmin } from './listen.js';
import type { AdminSource, MetricsRegistry } from './types.js';
import { clustersJson, clustersText, type BreakersOf } from './envoy-clusters.js';
import { envoyConfigDump } from './envoy-config-dump.js';
import { envoyStats, statsText } from './envoy-stats.js';
import { serverInfo } from './server-info.js';

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
  ['/server_info', { method: 'GET', handler: (s, _q, res) => json(res, 200, serverInfo(s, Date.now())) }],
  ['/stats', { method: 'GET', handler: stats }],
  ['/stats/prometheus', { method: 'GET', handler: metrics }],
  ['/config_dump', { method: 'GET', handler: configDump }],
  ['/clusters', { method: 'GET', handler: clusters }],
  ['/listeners', { method: 'GET', handler: (s, _q, res) => json(res, 200, s.listeners()) }],
  // The route tables as the data path reads them (inline ones included), for `pillion ctl routes`.
  ['/routes', { method: 'GET', handler: (s, _q, res) => json(res, 200, [...s.snapshot().routeConfigs.values()]) }],
  ['/logging', { method: 'POST', handler: logging }],
  ['/drain', { method: 'POST', handler: drain }],
  ['/workers', { method: 'GET', handler: workers }],
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

/** With --concurrency N > 1, the primary's and every worker's metrics, aggregated. */
function registryOf(source: AdminSource): Promise<MetricsRegistry> {
  return source.aggregateMetrics?.() ?? Promise.resolve(source.registry);
}

async function metrics(source: AdminSource, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const registry = await registryOf(source);
  const body = await registry.metrics();
  res.writeHead(200, { 'content-type': registry.contentType });
  res.end(body);
}

/** The worker processes (--concurrency): pid, state, config generation applied, restarts. */
function workers(source: AdminSource, _req: IncomingMessage, res: ServerResponse): void {
  json(res, 200, { concurrency: source.concurrency ?? 1, primary_pid: process.pid, workers: source.workers?.() ?? [] });
}

/** Whether the proxy is ready to serve (Envoy's LIVE), and the state's name: /ready here, /healthz/ready on the status port. */
export function readiness(source: Pick<AdminSource, 'state'>): { readonly ready: boolean; readonly body: string } {
  const state = source.state();
  return { ready: state === 'LIVE', body: `${state}\n` };
}

/** Envoy's /ready: the server state's name, 200 only for LIVE. */
function ready(source: AdminSource, _req: IncomingMessage, res: ServerResponse): void {
  const { ready, body } = readiness(source);
  text(res, ready ? 200 : 503, body);
}

function configDump(source: AdminSource, _req: IncomingMessage, res: ServerResponse, url: URL): void {
  const q = url.searchParams;
  if (q.get('format') === 'pillion') {
    json(res, 200, { version: source.snapshot().version, config: source.configDump() });
    return;
  }
  const answer = envoyConfigDump(source.configDumpSource(), { resource: q.get('resource'), mask: q.get('mask'), includeEds: q.has('include_eds') });
  if (answer.status === 200) json(res, 200, answer.body);
  else text(res, answer.status, `${answer.message}\n`);
}

/** Envoy's text by default, Envoy's JSON with ?format=json, ours (what `pillion ctl clusters` reads) with ?format=pillion. */
async function clusters(source: AdminSource, _req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const format = url.searchParams.get('format');
  const status = source.liveClusters === undefined ? source.clusters() : await source.liveClusters();
  if (format === 'pillion') {
    json(res, 200, status);
    return;
  }
  const snapshot = source.snapshot();
  const breakers: BreakersOf = (name) => snapshot.clusters.get(name)?.circuitBreakers;
  if (format === 'json') json(res, 200, clustersJson(status, breakers));
  else text(res, 200, clustersText(status, breakers));
}

const MAX_FILTER_LENGTH = 256;
/** A group followed by a quantifier, or a backreference: the shapes of catastrophic backtracking. */
const BACKTRACKING = /\)[*+?{]|\\[1-9]|\\k</;

/** Envoy's /stats: `name: value` lines, ?format=json, ?format=prometheus, ?filter=<regex> on the names. */
async function stats(source: AdminSource, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const q = url.searchParams;
  if (q.get('format') === 'prometheus') {
    await metrics(source, req, res);
    return;
  }
  let filter: RegExp | null = null;
  const pattern = q.get('filter');
  if (pattern !== null && pattern !== '') {
    // Envoy matches with RE2, which never backtracks; JavaScript's engine can, for ever, on a pattern like (a+)+$,
    // and that would wedge the proxy. So: short patterns, no quantified groups, no backreferences.
    const unsafe = pattern.length > MAX_FILTER_LENGTH ? `longer than ${MAX_FILTER_LENGTH} characters` : BACKTRACKING.test(pattern) ? 'a quantified group or a backreference' : null;
    if (unsafe !== null) {
      text(res, 400, `filter refused: ${unsafe} (it could make the match run for ever)\n`);
      return;
    }
    try {
      filter = new RegExp(pattern);
    } catch (err) {
      text(res, 400, `invalid regex: ${(err as Error).message}\n`);
      return;
    }
  }
  const all = await envoyStats(await registryOf(source), filter);
  if (q.get('format') === 'json') json(res, 200, { stats: all });
  else text(res, 200, statsText(all));
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

function drain(source: AdminSource, _req: IncomingMessage, res: ServerResponse, url: URL, logger: AdminLogger): void {
  // ?inboundonly as Envoy's /drain_listeners: the preStop drain, outbound keeps serving the app until SIGTERM.
  const inboundOnly = url.searchParams.has('inboundonly');
  // 202: draining has started; it finishes when in-flight requests do, which the caller need not wait for.
  source.drain({ inboundOnly }).then(
    () => logger.info({}, 'drained'),
    (err: unknown) => logger.warn({ err }, 'drain failed'),
  );
  json(res, 202, { draining: true, scope: inboundOnly ? 'inbound' : 'all' });
}

/** Pretty JSON with a trailing newline: operators read these with curl. */
function json(res: ServerResponse, status: number, body: unknown): void {
  const payload = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

/** A plain-text answer with its length (the status port answers the same way). */
export function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
