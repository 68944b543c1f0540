// The small service the demo mesh runs: one instance per process. It answers with who it is, can fail a
// share of requests with 503 (--fail-rate) or answer late (--delay-ms), can speak HTTP/2 cleartext instead of
// HTTP/1.1 (--h2), and can call other services through its sidecar's outbound port by Host
// header (--via PORT --call backend:8080/work ...), the way an app in a mesh does. Without --via it dials
// backend:8080 itself, as an app behind transparent interception does (examples/kubernetes).
//
//   node dist/examples/demo-app.js --name backend-2 --port 0 --fail-rate 0.3
//   node dist/examples/demo-app.js --name frontend-1 --port 0 --via 15001 --call backend:8080/work --call inventory:8080/items
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    name: { type: 'string', default: 'demo' },
    port: { type: 'string', default: '0' },
    'fail-rate': { type: 'string', default: '0' },
    'delay-ms': { type: 'string', default: '0' },
    h2: { type: 'boolean', default: false },
    via: { type: 'string' },
    call: { type: 'string', multiple: true, default: [] },
    'call-timeout-ms': { type: 'string', default: '3000' },
  },
});

const name = values.name ?? 'demo';
const failRate = Number(values['fail-rate']);
const delayMs = Number(values['delay-ms']);
const viaPort = values.via ? Number(values.via) : undefined;
const callTimeoutMs = Number(values['call-timeout-ms']);
/** `host:port/path` → Host header and path, sent to 127.0.0.1:viaPort (or, without --via, to host:port itself). */
const calls = (values.call ?? []).map((c) => {
  const slash = c.indexOf('/');
  return { host: slash < 0 ? c : c.slice(0, slash), path: slash < 0 ? '/' : c.slice(slash) };
});
const agent = new Agent({ keepAlive: true, maxSockets: 32 });

interface CallResult {
  host: string;
  status: number;
  ms: number;
  error?: string;
}

function callUpstream(host: string, path: string, requestId: string | undefined): Promise<CallResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const headers: Record<string, string> = { host };
    // Propagating the request id lets the sidecars' access logs be joined across hops.
    if (requestId) headers['x-request-id'] = requestId;
    const [dialHost, dialPort] = viaPort !== undefined ? ['127.0.0.1', viaPort] : [host.replace(/:\d+$/, ''), Number(/:(\d+)$/.exec(host)?.[1] ?? 80)];
    const req = request({ host: dialHost, port: dialPort, path, agent, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ host, status: res.statusCode ?? 0, ms: performance.now() - started }));
      res.on('error', (err) => resolve({ host, status: 0, ms: performance.now() - started, error: err.message }));
    });
    req.setTimeout(callTimeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => resolve({ host, status: 0, ms: performance.now() - started, error: err.message }));
    req.end();
  });
}

type AnyReq = IncomingMessage | Http2ServerRequest;
type AnyRes = ServerResponse | Http2ServerResponse;

function send(res: AnyRes, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req: AnyReq, res: AnyRes): Promise<void> {
  req.resume();
  if (req.url === '/healthz') return send(res, 200, { ok: true, name });
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  if (failRate > 0 && Math.random() < failRate) return send(res, 503, { name, error: 'flaky instance failed this request' });
  if (calls.length === 0) return send(res, 200, { name, path: req.url });
  const rid = req.headers['x-request-id'];
  const results = await Promise.all(calls.map((c) => callUpstream(c.host, c.path, typeof rid === 'string' ? rid : undefined)));
  const failed = results.filter((r) => r.status < 200 || r.status >= 300);
  send(res, failed.length === 0 ? 200 : 502, { name, upstreams: results });
}

const onRequest = (req: AnyReq, res: AnyRes): void => {
  handle(req, res).catch((err: Error) => {
    if (!res.headersSent) send(res, 500, { name, error: err.message });
  });
};

// --h2: HTTP/2 cleartext with prior knowledge only (what a sidecar speaks to an `http2` service). Node's
// HTTP/2 session reads the socket's native handle, so one port cannot sniff and hand over to both protocols.
const http1 = values.h2 ? undefined : createServer({ keepAliveTimeout: 30_000 }, onRequest);
const http2 = values.h2 ? createH2Server({}, onRequest) : undefined;
const server = (http2 ?? http1) as NonNullable<typeof http1> | NonNullable<typeof http2>;

server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: 'demo-app listening', name, port, h2: values.h2 === true })}\n`);
});

const stop = (): void => {
  server.close();
  http1?.closeAllConnections();
  agent.destroy();
  setTimeout(() => process.exit(0), 100).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
