// A reply the proxy makes itself (route direct_response) whose body is not ASCII: HTTP/1 must send the body's
// UTF-8 bytes, as many as its content-length says, or the client waits for bytes that never come (keep-alive)
// and reads mangled text.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import * as http2 from 'node:http2';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { routeConfigFromPlain } from '../../src/config/route-config.js';
import { h2request } from '../helpers/client.js';

const TEXT = 'blocked: café 東京 🚫';
// Valid UTF-8 with a NUL, DEL and multi-byte characters: served byte for byte. Bytes that are not UTF-8 are refused
// at config load (below), never altered.
const BYTES = Buffer.from([0x00, 0x7f, 0xc3, 0xa9, 0xe6, 0x9d, 0xb1, 0xf0, 0x9f, 0x9a, 0xab]);

let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`;
  const routes = [
    { match: { prefix: '/text' }, direct_response: { status: 403, body: { inline_string: TEXT } } },
    { match: { prefix: '/bytes' }, direct_response: { status: 200, body: { inline_bytes: BYTES } } },
  ];
  proxy = await startProxy(mesh, {
    service: 'client',
    hcm: { rds: undefined, route_config: { name: 'utf8', virtual_hosts: [{ name: 'utf8', domains: ['*'], routes }] } },
  });
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
});

/** Sends raw requests on one connection and collects raw bytes until `done` says so (bounded by a deadline). */
async function raw(text: string, done: (got: Buffer) => boolean): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  try {
    socket.write(text);
    const deadline = Date.now() + 3000;
    socket.on('data', (c: Buffer) => chunks.push(c));
    while (!done(Buffer.concat(chunks))) {
      if (Date.now() > deadline) throw new Error(`timed out; got:\n${Buffer.concat(chunks).toString('latin1')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return Buffer.concat(chunks);
  } finally {
    socket.destroy();
  }
}

function bodyOf(reply: Buffer): { length: number; body: Buffer } {
  const end = reply.indexOf('\r\n\r\n');
  const head = reply.subarray(0, end).toString('latin1');
  const length = Number(/content-length: (\d+)/i.exec(head)![1]);
  return { length, body: reply.subarray(end + 4, end + 4 + length) };
}

describe('local replies with a body that is not ASCII', () => {
  it('HTTP/1: a UTF-8 direct_response body goes out as its UTF-8 bytes, and the next request on the connection is answered', async () => {
    // The proxy ends its own bodies with a newline.
    const want = Buffer.from(TEXT + '\n');
    const req = 'GET /text HTTP/1.1\r\nhost: x\r\n\r\n';
    const got = await raw(req + req, (b) => b.indexOf('HTTP/1.1 403', 1) > 0 && b.length >= 2 * b.indexOf('HTTP/1.1 403', 1));
    const first = bodyOf(got);
    expect(first.length).toBe(want.length);
    expect(first.body.equals(want)).toBe(true);
    // The second reply starts right after the first body: the framing held.
    expect(got.indexOf('HTTP/1.1 403', 1)).toBe(got.indexOf('\r\n\r\n') + 4 + want.length);
  });

  it('HTTP/1: an inline_bytes direct_response body goes out byte for byte, all of it', async () => {
    const got = await raw('GET /bytes HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', (b) => b.includes('\r\n\r\n') && bodyOf(b).body.length === bodyOf(b).length);
    const { body } = bodyOf(got);
    expect(body.equals(Buffer.concat([BYTES, Buffer.from('\n')]))).toBe(true);
  });

  it('HTTP/2: the same body', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const res = await h2request(session, { ':path': '/text', ':authority': 'x' });
      expect(res.headers[':status']).toBe(403);
      expect(res.body).toBe(TEXT + '\n');
    } finally {
      session.close();
    }
  });
});

describe('direct_response bodies Pillion would have to alter', () => {
  const withBody = (body: unknown): unknown => ({
    name: 'r',
    virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, direct_response: { status: 200, body } }] }],
  });
  it('refuses inline_bytes that are not UTF-8, naming the field, instead of serving U+FFFD', () => {
    expect(() => routeConfigFromPlain(withBody({ inline_bytes: Buffer.from([0x61, 0xff, 0xfe]) }) as never)).toThrow(
      /virtual_hosts\[0\]\.routes\[0\]\.direct_response\.body\.inline_bytes: not valid UTF-8/,
    );
  });
  it('counts the 4096-byte limit in bytes, not characters', () => {
    // 1,366 three-byte characters: 1,366 characters, 4,098 bytes.
    expect(() => routeConfigFromPlain(withBody({ inline_string: '東'.repeat(1366) }) as never)).toThrow(/4098 bytes is over 4096/);
    expect(() => routeConfigFromPlain(withBody({ inline_string: '東'.repeat(1365) }) as never)).not.toThrow();
  });
});
