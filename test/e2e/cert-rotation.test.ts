// Certificate rotation with the mesh CA, as real processes: certificates live 4 s, so the sidecars renew every ~2 s.
// A TCP stream, an HTTP/2 connection and a gRPC stream opened through both sidecars' mTLS hop before a renewal
// keep flowing after it, and new connections present the new certificates: the server sidecar's (a new serial on
// /config_dump) and the client sidecar's (another x-forwarded-client-cert Hash at the app behind the hop).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { freePort, startTcpEcho, type Backend } from '../helpers/backends.js';
import { h2request } from '../helpers/client.js';
import { echoClient, grpc, startEchoServerWith, type EchoServer } from '../helpers/grpc.js';
import { startMeshWithCa, type MeshWithCa } from '../helpers/mesh-ca.js';

let mesh: MeshWithCa;
let echo: Backend;
let egressPort: number;
let echoAdmin: number;
let clientAdmin: number;
let clientOutbound: number;
let webAdmin: number;
let chatAdmin: number;
let web: http2.Http2Server;
let webPort: number;
let chat: EchoServer;

async function serial(admin: number): Promise<string> {
  const dump = (await (await fetch(`http://127.0.0.1:${admin}/config_dump?format=pillion`)).json()) as {
    config: { secrets: { name: string; certificates: { serial: string }[] }[] };
  };
  return dump.config.secrets.find((s) => s.name === 'default')!.certificates[0]!.serial;
}

/** Polls until every sidecar named has a certificate serial other than the one it had before (a renewal). */
async function renewed(admins: readonly number[], before: readonly string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const now = await Promise.all(admins.map(serial));
    if (now.every((s, i) => s !== before[i])) return;
    if (Date.now() > deadline) throw new Error(`no renewal in 10 s (serials ${before.join(', ')} → ${now.join(', ')})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The Hash= of an x-forwarded-client-cert value: which client certificate the mTLS connection was made with. */
function xfccHash(xfcc: string | string[] | undefined): string {
  const m = /Hash=([0-9a-f]+)/.exec(String(xfcc ?? ''));
  if (m === null) throw new Error(`no XFCC Hash in ${String(xfcc)}`);
  return m[1]!;
}

/** Sends `text` on `socket` and resolves with what comes back (the echo), bounded in time. */
function roundTrip(socket: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no echo of ${text} in 3 s`)), 3_000);
    socket.once('data', (d: Buffer) => {
      clearTimeout(timer);
      resolve(d.toString());
    });
    socket.write(text);
  });
}

beforeAll(async () => {
  echo = await startTcpEcho();
  // The HTTP/2 app answers with the XFCC its sidecar added: the client certificate of the hop's connection.
  web = http2.createServer();
  web.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end(String(headers['x-forwarded-client-cert'] ?? ''));
  });
  webPort = await new Promise<number>((r) => web.listen(0, '127.0.0.1', () => r((web.address() as net.AddressInfo).port)));
  // The gRPC app: Unary answers with the call's XFCC, Chat echoes each message.
  chat = await startEchoServerWith({
    Unary(call: { metadata: grpc.Metadata }, cb: (err: null, msg: { text: string }) => void) {
      cb(null, { text: String(call.metadata.get('x-forwarded-client-cert')[0] ?? '') });
    },
    Chat(call: grpc.ServerDuplexStream<{ text: string }, { text: string }>) {
      call.on('data', (msg: { text: string }) => call.write({ text: `chat:${msg.text}` }));
      call.on('end', () => call.end());
    },
  });
  const [echoInbound, webInbound, chatInbound] = await Promise.all([freePort(), freePort(), freePort()]);
  egressPort = await freePort();
  mesh = await startMeshWithCa(
    `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    egress: [{ localPort: ${egressPort}, service: echo, port: 9000 }]
  - name: echo
    ports: [{ port: 9000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${echoInbound} }]
  - name: web
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${webInbound} }]
  - name: chat
    ports: [{ port: 9090, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${chatInbound} }]
`,
    ['--cert-ttl', '4s'],
  );
  const [echoSidecar, webSidecar, chatSidecar, clientSidecar] = await Promise.all([
    mesh.sidecar('echo', 'default', ['--app-port', String(echo.port), '--inbound-port', String(echoInbound)]),
    mesh.sidecar('web', 'default', ['--app-port', String(webPort), '--inbound-port', String(webInbound)]),
    mesh.sidecar('chat', 'default', ['--app-port', String(chat.port), '--inbound-port', String(chatInbound)]),
    mesh.sidecar('client', 'default', ['--inbound-port', '0']),
  ]);
  echoAdmin = echoSidecar.admin;
  webAdmin = webSidecar.admin;
  chatAdmin = chatSidecar.admin;
  clientAdmin = clientSidecar.admin;
  clientOutbound = clientSidecar.outbound;
}, 60_000);

afterAll(async () => {
  await mesh.close();
  await echo.close();
  await chat.close();
  await new Promise<void>((r) => web.close(() => r()));
});

describe('certificate rotation (processes, 4 s certificates)', () => {
  it('keeps an open TCP stream through the mTLS hop across renewals; new connections get the new certificate', async () => {
    const socket = net.connect(egressPort, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise<void>((r) => socket.once('connect', () => r()));
    try {
      expect(await roundTrip(socket, 'before')).toBe('before');
      const first = await serial(echoAdmin);
      // Renewal at half-life (~2 s); wait for a serial the server sidecar did not have when the stream opened.
      const deadline = Date.now() + 10_000;
      let now = first;
      while (now === first && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        now = await serial(echoAdmin);
      }
      expect(now, 'the server sidecar never renewed').not.toBe(first);
      // The stream opened under the old certificate still flows.
      expect(await roundTrip(socket, 'after')).toBe('after');
      // And a new connection goes through the hop with the new certificate.
      const fresh = net.connect(egressPort, '127.0.0.1');
      fresh.on('error', () => {});
      await new Promise<void>((r) => fresh.once('connect', () => r()));
      expect(await roundTrip(fresh, 'fresh')).toBe('fresh');
      fresh.destroy();
    } finally {
      socket.destroy();
    }
  }, 30_000);

  it('keeps one HTTP/2 connection through the mTLS hop across renewals of both sidecars; a new connection presents the new client certificate', async () => {
    const session = http2.connect(`http://127.0.0.1:${clientOutbound}`);
    let closed = false;
    session.on('error', () => {});
    session.on('close', () => (closed = true));
    try {
      const get = async (): Promise<string> => {
        const r = await h2request(session, { ':path': '/', ':authority': 'web:8080' });
        expect(r.headers[':status']).toBe(200);
        return xfccHash(r.body);
      };
      const before = await get();
      expect(await get(), 'two requests before the renewal, one upstream connection').toBe(before);
      await renewed([clientAdmin, webAdmin], await Promise.all([serial(clientAdmin), serial(webAdmin)]));
      // Same HTTP/2 session from the app, and the same mTLS connection behind it: made with the old certificate.
      expect(await get()).toBe(before);
      expect(await get()).toBe(before);
      expect(closed).toBe(false);
      // The first connection to another peer, made now, presents the client sidecar's renewed certificate (and a
      // TLS session cached from before the renewal is not resumed with the old one).
      const client = echoClient(clientOutbound, 'chat:9090');
      try {
        const reply = await new Promise<{ text: string }>((resolve, reject) =>
          client.Unary({ text: 'who' }, { deadline: Date.now() + 5_000 }, (err: Error | null, msg: { text: string }) => (err ? reject(err) : resolve(msg))),
        );
        expect(xfccHash(reply.text)).not.toBe(before);
      } finally {
        client.close();
      }
    } finally {
      session.close();
    }
  }, 30_000);

  it('keeps a gRPC stream through the mTLS hop across renewals of both sidecars', async () => {
    const client = echoClient(clientOutbound, 'chat:9090');
    const call = client.Chat({ deadline: Date.now() + 20_000 });
    const replies: string[] = [];
    const waiters: Array<() => void> = [];
    call.on('data', (msg: { text: string }) => {
      replies.push(msg.text);
      waiters.shift()?.();
    });
    let failed: Error | null = null;
    call.on('error', (err: Error) => (failed = err));
    const say = (text: string): Promise<void> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no reply to ${text} in 3 s`)), 3_000);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
        call.write({ text });
      });
    try {
      await say('one');
      await renewed([clientAdmin, chatAdmin], await Promise.all([serial(clientAdmin), serial(chatAdmin)]));
      await say('two');
      await renewed([clientAdmin, chatAdmin], await Promise.all([serial(clientAdmin), serial(chatAdmin)]));
      await say('three');
      const ended = new Promise<void>((resolve) => call.on('end', () => resolve()));
      call.end();
      await ended;
      expect(replies).toEqual(['chat:one', 'chat:two', 'chat:three']);
      expect(failed).toBeNull();
    } finally {
      client.close();
    }
  }, 30_000);
});
