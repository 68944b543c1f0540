// Request authentication (envoy.filters.http.jwt_authn) from outside, with real tokens signed by keys made here:
// a good token passes (and its `<iss>/<sub>` feeds requestPrincipals), every kind of bad token gets 401
// jwt_invalid and is counted, and JWKS come from a file or from URLs, including a server that hangs and one that
// sends a huge body: both are cut at their bound, and the proxy goes on serving.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { h2request, request } from '../helpers/client.js';
import { connectH2, StreamRecorder } from '../helpers/h2-peers.js';
import { newHeaderMap } from '../../src/http/headers.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

const ISSUER = 'https://issuer.test';
let dir: string;
let app: Backend;
let key: CryptoKey;
let otherKey: CryptoKey;
let jwk: JWK;
let fileProxy: RunningProxy;
let remoteProxy: RunningProxy;
let hangProxy: RunningProxy;
let hugeProxy: RunningProxy;
let jwksServer: http.Server;
let jwksFetches = 0;
let hangingSockets = 0;
let hugeBytesSent = 0;

function serve(handler: http.RequestListener): Promise<http.Server> {
  const server = http.createServer(handler);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

function portOf(s: http.Server): number {
  return (s.address() as AddressInfo).port;
}

async function token(claims: Record<string, unknown> = {}, opts: { key?: CryptoKey; exp?: number | string; nbf?: number; kid?: string } = {}): Promise<string> {
  const jwt = new SignJWT({ aud: 'api', sub: 'alice', ...claims }).setProtectedHeader({ alg: 'ES256', kid: opts.kid ?? 'k1' }).setIssuer(ISSUER).setIssuedAt();
  jwt.setExpirationTime(opts.exp ?? '1h');
  if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf);
  return jwt.sign(opts.key ?? key);
}

/** A token with alg "none" (no signature), the classic bypass. */
function unsignedToken(): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: ISSUER, sub: 'alice', aud: 'api', exp: Math.floor(Date.now() / 1000) + 3600 })}.`;
}

const MESH = (jwks: { file: string; uri: string; hangUri: string; hugeUri: string }) => {
  const service = (name: string, source: string) => `
  - name: ${name}
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    requestAuthentication:
      jwtRules: [{ issuer: "${ISSUER}", audiences: [api], ${source} }]
    authorization:
      allow:
        - { name: alice, requestPrincipals: ["${ISSUER}/alice"] }
        - { name: public, paths: ["/public/*"] }`;
  return `services:${service('file', `jwksFile: "${jwks.file}"`)}${service('remote', `jwksUri: "${jwks.uri}"`)}${service('hang', `jwksUri: "${jwks.hangUri}", jwksTimeout: 300ms`)}${service('huge', `jwksUri: "${jwks.hugeUri}", jwksTimeout: 5s`)}\n`;
};

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-jwt-'));
  // A key the JWKS does not hold, for bad signatures.
  otherKey = (await generateKeyPair('ES256')).privateKey;
  // The key whose private half signs good tokens, under kid k1.
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  key = privateKey;
  jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
  const file = join(dir, 'jwks.json');
  writeFileSync(file, JSON.stringify({ keys: [jwk] }));
  jwksServer = await serve((req, res) => {
    if (req.url === '/jwks.json') {
      jwksFetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    } else if (req.url === '/hang') {
      hangingSockets++;
      // Never answers: the proxy's fetch timeout must end it.
    } else if (req.url === '/huge') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const pump = (): void => {
        while (!res.destroyed && hugeBytesSent < 64 * 1024 * 1024) {
          hugeBytesSent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else {
      res.writeHead(404).end();
    }
  });
  const base = `http://127.0.0.1:${portOf(jwksServer)}`;
  app = await startHttpBackend('app');
  const mesh = MESH({ file, uri: `${base}/jwks.json`, hangUri: `${base}/hang`, hugeUri: `${base}/huge` });
  fileProxy = await startProxy(mesh, { service: 'file', appPort: app.port });
  remoteProxy = await startProxy(mesh, { service: 'remote', appPort: app.port });
  hangProxy = await startProxy(mesh, { service: 'hang', appPort: app.port });
  hugeProxy = await startProxy(mesh, { service: 'huge', appPort: app.port });
});

afterAll(async () => {
  await Promise.all([fileProxy, remoteProxy, hangProxy, hugeProxy].map((p) => p?.close()));
  await app?.close();
  jwksServer?.closeAllConnections();
  await new Promise<void>((r) => (jwksServer ? jwksServer.close(() => r()) : r()));
  rmSync(dir, { recursive: true, force: true });
});

function bearer(t: string): Record<string, string> {
  return { authorization: `Bearer ${t}` };
}

async function metric(p: RunningProxy, result: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`pillion_jwt_authn_total{provider="jwt-0",result="${result}"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

describe('JWT from a JWKS file', () => {
  it('accepts a good token, feeds requestPrincipals, and strips the token before the app', async () => {
    const r = await request(fileProxy.port('inbound'), { host: 'file', path: '/items', headers: bearer(await token()) });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).headers.authorization).toBeUndefined();
  });

  it('a good token of another subject is authenticated but not authorized: 403', async () => {
    const r = await request(fileProxy.port('inbound'), { host: 'file', path: '/items', headers: bearer(await token({ sub: 'bob' })) });
    expect(r.status).toBe(403);
    expect(r.headers['x-pillion-reason']).toBe('unauthorized');
  });

  it('no token: allowed where the policy needs none, 403 where it needs alice', async () => {
    expect((await request(fileProxy.port('inbound'), { host: 'file', path: '/public/x' })).status).toBe(200);
    const r = await request(fileProxy.port('inbound'), { host: 'file', path: '/items' });
    expect(r.status).toBe(403);
  });

  const bad: [string, () => Promise<string> | string, string][] = [
    ['alg none', unsignedToken, 'alg_not_allowed'],
    ['a bad signature (another key, same kid)', () => token({}, { key: otherKey }), 'bad_signature'],
    ['the wrong audience', () => token({ aud: 'someone-else' }), 'wrong_audience'],
    ['an expired token', () => token({}, { exp: Math.floor(Date.now() / 1000) - 3600 }), 'expired'],
    ['a token not valid yet', () => token({}, { nbf: Math.floor(Date.now() / 1000) + 3600 }), 'not_yet_valid'],
    ['an unknown key id', () => token({}, { kid: 'nope' }), 'unknown_key'],
    ['garbage', () => 'a.b.c', 'malformed'],
  ];

  it.each(bad)('refuses %s with 401 jwt_invalid, counted', async (_what, make, result) => {
    const before = await metric(fileProxy, result);
    const hits = app.hits;
    const r = await request(fileProxy.port('inbound'), { host: 'file', path: '/public/x', headers: bearer(await make()) });
    expect(r.status).toBe(401);
    expect(r.headers['x-pillion-reason']).toBe('jwt_invalid');
    expect(r.body).toContain('Jwt verification fails');
    expect(app.hits).toBe(hits);
    expect(await metric(fileProxy, result)).toBe(before + 1);
  });

  it('a good token beside a second Authorization header: 401 malformed, over HTTP/1.1 and HTTP/2 (the app could read the other)', async () => {
    const good = await token();
    const before = await metric(fileProxy, 'malformed');
    const hits = app.hits;
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ port: fileProxy.port('inbound'), host: '127.0.0.1' });
      let data = '';
      socket.on('error', reject);
      socket.on('data', (d) => (data += d.toString('latin1')));
      socket.on('end', () => resolve(data));
      socket.write(`GET /items HTTP/1.1\r\nhost: file\r\nauthorization: Bearer ${good}\r\nauthorization: Bearer forged\r\nconnection: close\r\n\r\n`);
    });
    expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
    expect(raw.toLowerCase()).toContain('x-pillion-reason: jwt_invalid');
    // Our own codec as the client: node:http2 refuses to send authorization twice.
    const { session } = await connectH2(fileProxy.port('inbound'));
    try {
      const rec = new StreamRecorder();
      session.request('GET', 'http', 'file', '/items', Object.assign(newHeaderMap(), { authorization: [`Bearer ${good}`, 'Bearer forged'] }), true, rec);
      await rec.done;
      expect(rec.head?.status).toBe(401);
    } finally {
      session.destroy();
    }
    expect(app.hits).toBe(hits);
    expect(await metric(fileProxy, 'malformed')).toBe(before + 2);
  });

  it('HTTP/2: good token 200, bad token 401', async () => {
    const session = http2.connect(`http://127.0.0.1:${fileProxy.port('inbound')}`);
    try {
      const good = await h2request(session, { ':path': '/items', ':authority': 'file', ...bearer(await token()) });
      expect(good.headers[':status']).toBe(200);
      const badReply = await h2request(session, { ':path': '/items', ':authority': 'file', ...bearer(unsignedToken()) });
      expect(badReply.headers[':status']).toBe(401);
      expect(badReply.headers['x-pillion-reason']).toBe('jwt_invalid');
    } finally {
      session.close();
    }
  });
});

describe('JWKS from a URL', () => {
  it('fetches the keys once and uses them while cached', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await request(remoteProxy.port('inbound'), { host: 'remote', path: '/items', headers: bearer(await token()) });
      expect(r.status).toBe(200);
    }
    expect(jwksFetches).toBe(1);
    expect(await metric(remoteProxy, 'verified')).toBe(5);
  });

  it('a JWKS server that never answers: 401 within the fetch timeout, then retried later, never a hang', async () => {
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      const r = await request(hangProxy.port('inbound'), { host: 'hang', path: '/items', headers: bearer(await token()) });
      expect(r.status).toBe(401);
      expect(r.headers['x-pillion-reason']).toBe('jwt_invalid');
      expect(performance.now() - start).toBeLessThan(2_000);
    }
    // One fetch (timed out after 300 ms); the next ones wait out the retry pause instead of piling up.
    expect(hangingSockets).toBeGreaterThanOrEqual(1);
    expect(hangingSockets).toBeLessThanOrEqual(2);
    expect(await metric(hangProxy, 'jwks_unavailable')).toBe(3);
    // The proxy still serves what needs no token.
    expect((await request(hangProxy.port('inbound'), { host: 'hang', path: '/public/x' })).status).toBe(200);
  });

  it('a JWKS server that sends a huge body: cut at the size bound, 401, no crash', async () => {
    const r = await request(hugeProxy.port('inbound'), { host: 'huge', path: '/items', headers: bearer(await token()) });
    expect(r.status).toBe(401);
    // Cut soon after 1 MiB, far from the 64 MiB the server would send (the socket buffers hold some more).
    expect(hugeBytesSent).toBeLessThan(16 * 1024 * 1024);
    expect((await request(hugeProxy.port('inbound'), { host: 'huge', path: '/public/x' })).status).toBe(200);
  });
});

/** One raw HTTP/1.1 Upgrade request: the reply's status line and body, once the app (no upgrade handler) answered. */
function upgradeRequest(port: number, host: string, path: string, extra: Record<string, string>): Promise<{ status: string; body: string }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const done = (): void => {
      clearTimeout(timer);
      socket.destroy();
      // The body, chunked or not: the app's JSON echo is one object.
      const end = data.indexOf('\r\n\r\n');
      const body = end < 0 ? '' : data.slice(end + 4);
      resolve({ status: data.split('\r\n')[0] ?? '', body: body.slice(body.indexOf('{'), body.lastIndexOf('}') + 1) });
    };
    const timer = setTimeout(done, 3_000);
    let head = `GET ${path} HTTP/1.1\r\nhost: ${host}\r\nconnection: upgrade\r\nupgrade: websocket\r\n`;
    for (const [k, v] of Object.entries(extra)) head += `${k}: ${v}\r\n`;
    socket.on('connect', () => socket.write(head + '\r\n'));
    socket.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      // The app's JSON echo is whole (its last chunk, or its closing brace); a refusal closes the connection.
      if (data.includes('\r\n\r\n') && (data.endsWith('\r\n0\r\n\r\n') || data.trimEnd().endsWith('}'))) done();
    });
    socket.on('error', () => {});
    socket.on('close', done);
  });
}

describe('Upgrade requests (WebSocket) go through the same JWT check', () => {
  it('no token where alice is needed: 403; a bad token: 401; the app never dialled', async () => {
    const hits = app.hits;
    expect((await upgradeRequest(fileProxy.port('inbound'), 'file', '/items', {})).status).toBe('HTTP/1.1 403 Forbidden');
    expect((await upgradeRequest(fileProxy.port('inbound'), 'file', '/public/x', bearer(unsignedToken()))).status).toBe('HTTP/1.1 401 Unauthorized');
    expect(app.hits).toBe(hits);
  });

  it('a good token (JWKS file, and JWKS fetched: the async path) reaches the app without the token, with a request id', async () => {
    for (const [proxy, host] of [[fileProxy, 'file'], [remoteProxy, 'remote']] as const) {
      const r = await upgradeRequest(proxy.port('inbound'), host, '/items', bearer(await token()));
      expect([host, r.status]).toEqual([host, 'HTTP/1.1 200 OK']);
      const seen = JSON.parse(r.body) as { headers: Record<string, string> };
      expect(seen.headers.authorization).toBeUndefined();
      expect(seen.headers.upgrade).toBe('websocket');
      expect(seen.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
  });
});
