// Authorization on a service's inbound listener, from outside: deny and allow rules by method, path and port over
// HTTP/1.1 and HTTP/2 (403 unauthorized, counted by policy), principal rules failing closed without mTLS, and
// network RBAC closing denied TCP connections before the app is dialled.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, startTcpEcho, type Backend } from '../helpers/backends.js';
import { h2request, request } from '../helpers/client.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

let app: Backend;
let echo: Backend;
let api: RunningProxy;
let apiPort: number;
let secure: RunningProxy;
let dbAllowed: RunningProxy;
let dbDenied: RunningProxy;
let dbPrincipal: RunningProxy;
let dbHttpOnlyDeny: RunningProxy;
let dbAllowedPort: number;
let dbDeniedPort: number;

const MESH = (ports: { api: number; dbAllowed: number; dbDenied: number }) => `
services:
  - name: api
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      deny:
        - { name: no-delete, methods: [DELETE] }
        - { name: no-admin, paths: ["/admin/*"] }
      allow:
        - { name: reads, methods: [GET, HEAD] }
        - { name: posts-here, methods: [POST], ports: [${ports.api}] }
        - { name: puts-elsewhere, methods: [PUT], ports: [1] }
        - { name: reports, paths: ["*.csv"] }
  - name: secure
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      allow: [{ principals: ["spiffe://cluster.local/ns/default/sa/frontend"] }]
  - name: db-allowed
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      deny: [{ name: other-port, ports: [1] }]
      allow: [{ name: this-port, ports: [${ports.dbAllowed}] }, { name: http-only, methods: [GET] }]
  - name: db-denied
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      deny: [{ name: this-port, ports: [${ports.dbDenied}] }]
  - name: db-principal
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      allow: [{ namespaces: [default] }]
  - name: db-http-deny
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      deny: [{ name: no-delete, methods: [DELETE] }]
`;

beforeAll(async () => {
  app = await startHttpBackend('app');
  echo = await startTcpEcho();
  const [a, b, c] = await freePorts(3);
  const ports = { api: a!, dbAllowed: b!, dbDenied: c! };
  const mesh = MESH(ports);
  api = await startProxy(mesh, { service: 'api', appPort: app.port, inboundPort: ports.api });
  apiPort = api.port('inbound');
  secure = await startProxy(mesh, { service: 'secure', appPort: app.port });
  dbAllowed = await startProxy(mesh, { service: 'db-allowed', appPort: echo.port, inboundPort: ports.dbAllowed });
  dbDenied = await startProxy(mesh, { service: 'db-denied', appPort: echo.port, inboundPort: ports.dbDenied });
  dbPrincipal = await startProxy(mesh, { service: 'db-principal', appPort: echo.port });
  dbHttpOnlyDeny = await startProxy(mesh, { service: 'db-http-deny', appPort: echo.port });
  dbAllowedPort = dbAllowed.port('inbound');
  dbDeniedPort = dbDenied.port('inbound');
});

afterAll(async () => {
  await Promise.all([api, secure, dbAllowed, dbDenied, dbPrincipal, dbHttpOnlyDeny].map((p) => p?.close()));
  await Promise.all([app?.close(), echo?.close()]);
});

/** Distinct free ports: all held open at once, so the OS cannot hand out one twice. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<net.Server>((resolve) => {
      const s = net.createServer();
      s.listen(0, '0.0.0.0', () => resolve(s));
    })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

async function metrics(p: RunningProxy): Promise<string> {
  return (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
}

function counter(text: string, protocol: string, decision: string, policy: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`pillion_rbac_decisions_total{protocol="${protocol}",decision="${decision}",policy="${policy}"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

/** Bytes written, then what came back before the proxy closed the connection (bounded by a timeout). */
function tcpExchange(port: number, payload: string): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data, closed: false });
    }, 2_000);
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (c: Buffer) => {
      data += c.toString();
      if (data === payload) {
        clearTimeout(timer);
        socket.destroy();
        resolve({ data, closed: false });
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data, closed: true });
    });
  });
}

describe('HTTP authorization (envoy.filters.http.rbac)', () => {
  const cases: [method: string, path: string, status: number, why: string][] = [
    ['GET', '/items', 200, 'an allow rule matches'],
    ['HEAD', '/items', 200, 'an allow rule matches'],
    ['POST', '/items', 200, 'method and the arrival port match'],
    ['GET', '/report.csv?x=1', 200, 'a path suffix rule matches (query ignored)'],
    ['DELETE', '/items', 403, 'a deny rule matches'],
    ['GET', '/admin/users', 403, 'deny wins over the GET allow rule'],
    ['PUT', '/items', 403, 'its allow rule names another port'],
    ['PATCH', '/items', 403, 'no allow rule matches: the allow list denies the rest'],
  ];

  it.each(cases)('HTTP/1.1 %s %s → %i (%s)', async (method, path, status) => {
    const before = app.hits;
    const r = await request(apiPort, { host: 'api', method, path });
    expect(r.status).toBe(status);
    if (status === 403) {
      expect(r.headers['x-pillion-reason']).toBe('unauthorized');
      expect(r.body).toContain('RBAC: access denied');
      expect(app.hits).toBe(before);
    } else {
      expect(app.hits).toBe(before + 1);
    }
  });

  it('HTTP/2: the same rules, the same answers', async () => {
    const session = http2.connect(`http://127.0.0.1:${apiPort}`);
    try {
      for (const [method, path, status] of cases) {
        const r = await h2request(session, { ':method': method, ':path': path, ':authority': 'api' });
        expect([method, path, r.headers[':status']]).toEqual([method, path, status]);
        if (status === 403) expect(r.headers['x-pillion-reason']).toBe('unauthorized');
      }
    } finally {
      session.close();
    }
  });

  it('counts each decision under the policy that made it', async () => {
    const text = await metrics(api);
    // Each case ran once over HTTP/1.1 and once over HTTP/2.
    expect(counter(text, 'http', 'denied', 'no-delete')).toBe(2);
    expect(counter(text, 'http', 'denied', 'no-admin')).toBe(2);
    expect(counter(text, 'http', 'denied', '-')).toBe(4);
    // Policies are tried in name order (Envoy's map order): GET /report.csv is counted under reads, not reports.
    expect(counter(text, 'http', 'allowed', 'reads')).toBe(6);
    expect(counter(text, 'http', 'allowed', 'posts-here')).toBe(2);
    expect(text).toMatch(/pillion_local_replies_total\{reason="unauthorized"\} 8/);
  });

  it('principal rules match only mTLS peers: without mTLS an allow list of principals denies everyone', async () => {
    const r = await request(secure.port('inbound'), { host: 'secure', path: '/' });
    expect(r.status).toBe(403);
    expect(r.headers['x-pillion-reason']).toBe('unauthorized');
  });
});

describe('TCP authorization (envoy.filters.network.rbac)', () => {
  it('passes a connection an allow rule admits (its port)', async () => {
    const r = await tcpExchange(dbAllowedPort, 'hello');
    expect(r.data).toBe('hello');
  });

  it('closes a connection a deny rule matches, before the app is dialled', async () => {
    const before = echo.hits;
    const r = await tcpExchange(dbDeniedPort, 'hello');
    expect(r).toEqual({ data: '', closed: true });
    expect(echo.hits).toBe(before);
    const text = await metrics(dbDenied);
    expect(counter(text, 'tcp', 'denied', 'this-port')).toBe(1);
  });

  it('closes every connection when the allow list needs a namespace (mTLS) it cannot see', async () => {
    const r = await tcpExchange(dbPrincipal.port('inbound'), 'hello');
    expect(r).toEqual({ data: '', closed: true });
  });

  it('a deny rule with HTTP-only fields denies all TCP (fails closed, as Istio)', async () => {
    const r = await tcpExchange(dbHttpOnlyDeny.port('inbound'), 'hello');
    expect(r).toEqual({ data: '', closed: true });
  });
});

/** One raw HTTP/1.1 request on a fresh connection: what came back until the proxy closed it or 2 s passed. */
function rawRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(data);
    };
    const timer = setTimeout(done, 2_000);
    socket.on('connect', () => socket.write(text));
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      // The app (no upgrade handler) answers an Upgrade as a plain request: enough once its head is here.
      if (data.includes('\r\n\r\n') && !data.startsWith('HTTP/1.1 403')) done();
    });
    socket.on('error', () => {});
    socket.on('close', done);
  });
}

describe('HTTP authorization on Upgrade requests (WebSocket)', () => {
  const upgrade = (method: string, path: string): string =>
    `${method} ${path} HTTP/1.1\r\nhost: api\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n`;

  it('a deny rule refuses an Upgrade as it refuses the plain request: 403 before the app is dialled', async () => {
    for (const [method, path] of [['DELETE', '/items'], ['GET', '/admin/users'], ['PATCH', '/items']] as const) {
      const before = app.hits;
      const reply = await rawRequest(apiPort, upgrade(method, path));
      expect([method, path, reply.split('\r\n')[0]]).toEqual([method, path, 'HTTP/1.1 403 Forbidden']);
      expect(reply.toLowerCase()).toContain('x-pillion-reason: unauthorized');
      expect(app.hits).toBe(before);
    }
  });

  it('an allowed Upgrade reaches the app, and is counted under its policy', async () => {
    const before = counter(await metrics(api), 'http', 'allowed', 'reads');
    const hits = app.hits;
    const reply = await rawRequest(apiPort, upgrade('GET', '/items'));
    expect(reply.startsWith('HTTP/1.1 ')).toBe(true);
    expect(reply.startsWith('HTTP/1.1 403')).toBe(false);
    expect(app.hits).toBe(hits + 1);
    expect(counter(await metrics(api), 'http', 'allowed', 'reads')).toBe(before + 1);
  });
});
