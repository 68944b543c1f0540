// The sidecar's status port (`pillion proxy --status-port N`, Istio's :15020): what the kubelet probes. It listens on
// every address of both families (the kubelet comes from the node, to the pod's IPv4 or IPv6 address) and serves
// only read-only answers: the proxy's readiness and the app's own probes (app-probes.ts), which peers' mTLS would
// otherwise refuse under STRICT.
import { createServer, type ServerResponse } from 'node:http';
import { Counter, type Registry } from 'prom-client';
import { listenAdmin, type ListeningServer } from './listen.js';
import { readiness, text } from './server.js';
import type { AdminLogger } from './server.js';
import type { AdminSource } from './types.js';
import { runProbe, type AppProbe, type ProbeOutcome } from './app-probes.js';

/** Probes running at once; more are answered 503 at once (a kubelet probes each container every few seconds). */
export const MAX_PROBES_IN_FLIGHT = 32;
/** Request heads are small; a client that takes longer than this to send one is cut off. */
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_HEADER_BYTES = 8192;
/** Connections open at once; a kubelet holds a few. More are closed at accept. */
export const MAX_STATUS_CONNECTIONS = 256;

export interface StatusServerOptions {
  readonly host: string;
  /** 0 picks a free port; the chosen one is returned and logged. */
  readonly port: number;
  readonly probes: ReadonlyMap<string, AppProbe>;
  readonly registry: Registry;
  readonly logger: AdminLogger & { debug(obj: object, msg?: string): void };
}

export async function startStatusServer(source: Pick<AdminSource, 'state'>, opts: StatusServerOptions): Promise<ListeningServer> {
  const { probes, logger } = opts;
  const counter = new Counter({
    name: 'pillion_app_probes_total',
    help:
      "The app's kubelet probes run by the status port (--status-port, PILLION_APP_PROBES), per configured path and " +
      'result: success (the app answered 200-399, or accepted the connection), failure (another status, refused, reset, timed out).',
    labelNames: ['path', 'result'] as const,
    registers: [opts.registry],
  });
  for (const path of probes.keys()) {
    counter.inc({ path, result: 'success' }, 0);
    counter.inc({ path, result: 'failure' }, 0);
  }
  let inFlight = 0;
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, headersTimeout: REQUEST_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
    // Never read: a prober sends no body, and each answer closes its connection.
    res.setHeader('connection', 'close');
    req.on('error', ignore);
    res.on('error', ignore);
    const path = pathOf(req.url);
    const probe = probes.get(path);
    if (path !== '/healthz/ready' && probe === undefined) return text(res, 404, `no status endpoint ${path.slice(0, 256)}\n`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return text(res, 405, `${path} takes GET or HEAD\n`);
    }
    if (probe === undefined) {
      const { ready, body } = readiness(source);
      return text(res, ready ? 200 : 503, ready ? 'ready\n' : body);
    }
    if (inFlight >= MAX_PROBES_IN_FLIGHT) {
      res.setHeader('x-pillion-reason', 'overload');
      return text(res, 503, `${MAX_PROBES_IN_FLIGHT} app probes already running\n`);
    }
    inFlight++;
    let holding = true;
    const release = (): void => {
      if (holding) inFlight--;
      holding = false;
    };
    // runProbe reports every failure through `done`, never by throwing.
    const run = runProbe(probe, req.headers['user-agent']);
    // The kubelet gave up (its timeout): stop probing the app for it.
    res.on('close', run.abort);
    run.done
      .then((outcome) => {
        release();
        res.off('close', run.abort);
        counter.inc({ path, result: outcome.ok ? 'success' : 'failure' });
        if (!outcome.ok) logger.debug({ path, status: outcome.status, ...(outcome.status === null ? { reason: outcome.message } : {}) }, 'app probe failed');
        answer(res, outcome);
      })
      .catch((err: unknown) => {
        // A slot is never lost, whatever failed.
        release();
        logger.warn({ err, path }, 'status port: answering an app probe failed');
        res.destroy();
      });
  });
  // A malformed or oversized request head, or a timeout: answer if the socket still takes it, else drop it.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    if (socket.writable) socket.end(`HTTP/1.1 ${status} Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    socket.destroy();
  });
  // One request per connection: node:http would otherwise start the handler for every request pipelined behind
  // the first (each a probe of the app) although the first answer closes the connection.
  server.maxRequestsPerSocket = 1;
  server.maxConnections = MAX_STATUS_CONNECTIONS;
  let dropped = 0;
  server.on('drop', () => {
    // Once: a flood would otherwise flood the log too.
    if (dropped++ === 0) logger.warn({ listener: 'status', maxConnections: MAX_STATUS_CONNECTIONS }, 'status port: connections past the limit are closed at accept');
  });
  const listening = await listenAdmin(server, opts.host, opts.port);
  logger.info({ listener: 'status', host: opts.host, port: listening.port, probes: [...probes.keys()] }, 'listening');
  return listening;
}

/** Socket errors of a request or response: node:http destroys the socket; there is nothing else to do. */
function ignore(): void {}

/** The path without its query; a target that is no path (`*`, an absolute URL) matches nothing. */
function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

function answer(res: ServerResponse, outcome: ProbeOutcome): void {
  if (res.destroyed || res.headersSent) return;
  if (outcome.status !== null) {
    // The app's own status, so the kubelet judges it as it would have (200-399 success); the body as far as it read.
    res.writeHead(outcome.status, { 'content-length': outcome.body.length });
    res.end(outcome.body);
    return;
  }
  res.setHeader('x-pillion-reason', 'app_probe_failed');
  text(res, 503, `app probe failed: ${outcome.message}\n`);
}
