// Path rules cannot be dodged by spelling the path another way: the inbound listener normalizes the request path
// (dot segments, escaped unreserved characters, `\`, the fragment) before routing and RBAC, as Envoy's
// normalize_path (Istio's default), and the app gets the normalized path. HTTP/1.1, HTTP/2, Upgrade, absolute-form.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { h2request } from '../helpers/client.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

const MESH = `
services:
  - name: api
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      deny:
        - { name: no-admin, paths: ["/admin", "/admin/*"] }
        - { name: no-secret, paths: ["/secret"] }
        - { name: no-delete, methods: [DELETE] }
      allow:
        - { name: reads, methods: [GET] }
        - { name: reports, paths: ["*.csv"] }
`;

let app: Backend;
let api: RunningProxy;
let port: number;

beforeAll(async () => {
  app = await startHttpBackend('app');
  api = await startProxy(MESH, { service: 'api', appPort: app.port });
  port = api.port('inbound');
});

afterAll(async () => {
  await api?.close();
  await app?.close();
});

/** One raw HTTP/1.1 request (the target exactly as written); its status and the path the app saw (null: none). */
function raw(target: string, method = 'GET', extra = ''): Promise<{ status: number; appPath: string | null }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => socket.destroy(new Error(`no answer to ${method} ${target}`)), 5_000);
    socket.on('connect', () => socket.write(`${method} ${target} HTTP/1.1\r\nHost: api\r\n${extra}Connection: close\r\n\r\n`));
    socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(data)?.[1] ?? 0);
      const url = /"url":"((?:[^"\\]|\\.)*)"/.exec(data)?.[1];
      resolve({ status, appPath: url === undefined ? null : (JSON.parse(`"${url}"`) as string) });
    });
  });
}

describe('inbound path normalization before RBAC', () => {
  const denied: [target: string, why: string][] = [
    ['/public/../admin/x', 'a parent segment'],
    ['/./admin', 'a current segment'],
    ['/%61dmin/x', 'an escaped unreserved character'],
    ['/public/%2e%2E/admin/x', 'an escaped parent segment'],
    ['/public/..\\admin/x', 'a backslash'],
    ['/../../admin', 'parent segments above the root (clamped)'],
  ];

  it.each(denied)('HTTP/1.1 GET %s → 403 (%s)', async (target) => {
    const before = app.hits;
    expect((await raw(target)).status).toBe(403);
    expect(app.hits).toBe(before);
  });

  it('an exact path rule is not dodged by a fragment; a suffix rule is not met by one', async () => {
    const before = app.hits;
    expect((await raw('/secret#x')).status).toBe(403);
    // POST is allowed only for *.csv: a fragment spelling ".csv" is no report.
    expect((await raw('/private#.csv', 'POST', 'content-length: 0\r\n')).status).toBe(403);
    expect(app.hits).toBe(before);
  });

  it('absolute-form and Upgrade requests are normalized alike', async () => {
    const before = app.hits;
    expect((await raw('http://api/public/../admin/x')).status).toBe(403);
    expect((await raw('/public/%2e%2e/admin/x', 'GET', 'Upgrade: websocket\r\nConnection: Upgrade\r\n')).status).toBe(403);
    expect(app.hits).toBe(before);
  });

  it('the app gets the normalized path; the query and escaped reserved characters are left alone', async () => {
    expect(await raw('/public/./../items/%7Euser/a%2Fb?next=/../admin#frag')).toEqual({ status: 200, appPath: '/items/~user/a%2Fb?next=/../admin' });
    expect(await raw('/items/x/..')).toEqual({ status: 200, appPath: '/items/' });
    expect(await raw('/items?q=/admin/x')).toEqual({ status: 200, appPath: '/items?q=/admin/x' });
  });

  it('as Istio BASE: no slash merging, escaped slashes kept, case kept (these are not /admin)', async () => {
    for (const target of ['//admin/x', '/admin%2Fx', '/admin;x', '/ADMIN/x']) expect(await raw(target), target).toEqual({ status: 200, appPath: target });
  });

  it('a lower-case method is no DELETE: the parser refuses it (400), the app never sees it', async () => {
    const before = app.hits;
    expect((await raw('/items', 'delete')).status).toBe(400);
    expect(app.hits).toBe(before);
  });

  it('a NUL escape is a 400; a malformed escape reaches the app as sent (as Envoy passes it on)', async () => {
    const before = app.hits;
    expect((await raw('/admin%00/x')).status).toBe(400);
    expect(app.hits).toBe(before);
    for (const target of ['/x%zz', '/x%4']) expect(await raw(target), target).toEqual({ status: 200, appPath: target });
  });

  it('HTTP/2: the same normalization of :path', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      for (const path of ['/public/../admin/x', '/%61dmin/x', '/secret#x']) {
        const r = await h2request(session, { ':method': 'GET', ':path': path, ':authority': 'api' });
        expect([path, r.headers[':status']]).toEqual([path, 403]);
      }
      const ok = await h2request(session, { ':method': 'GET', ':path': '/items/./%78', ':authority': 'api' });
      expect(ok.headers[':status']).toBe(200);
      expect((JSON.parse(ok.body) as { url: string }).url).toBe('/items/x');
      const bad = await h2request(session, { ':method': 'GET', ':path': '/x%00', ':authority': 'api' });
      expect(bad.headers[':status']).toBe(400);
    } finally {
      session.close();
    }
  });
});
