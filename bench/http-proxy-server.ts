// The http-proxy (npm) peer: a reverse proxy to one upstream with a keep-alive agent, in its own process.
// Aborts are propagated both ways, since http-proxy leaks upstream sockets when a client aborts otherwise.
import { Agent, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import httpProxy from 'http-proxy';

const { values } = parseArgs({
  options: { port: { type: 'string', default: '0' }, target: { type: 'string' } },
});
if (!values.target) throw new Error('--target http://127.0.0.1:PORT is required');

const agent = new Agent({ keepAlive: true, maxSockets: 64 });
const proxy = httpProxy.createProxyServer({ target: values.target, agent, xfwd: false });

proxy.on('proxyReq', (proxyReq, req) => {
  req.once('aborted', () => proxyReq.destroy());
});
proxy.on('error', (_err, _req, res) => {
  if ('writeHead' in res && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('bad gateway\n');
  } else {
    res.destroy();
  }
});

const server = createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 60_000;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.listen(Number(values.port), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ msg: 'http-proxy listening', port })}\n`);
});

const stop = (): void => {
  server.closeAllConnections();
  server.close();
  agent.destroy();
  setTimeout(() => process.exit(0), 200).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
