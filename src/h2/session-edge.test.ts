// H2Session protocol edges on real sockets: socket backpressure, SETTINGS validation and window changes,
// padding, header blocks split into CONTINUATIONs, our client against a hand-driven (hostile) server, and TLS.
import { afterEach, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { newHeaderMap } from '../http/headers.js';
import { H2Error } from './errors.js';
import { H2Session } from './session.js';
import type { H2Stream } from './stream.js';
import { connectH2, echoHandler, listenH2, SessionRecorder, StreamRecorder, TEST_OPTIONS } from '../../test/helpers/h2-peers.js';
import { F, frame, FrameReader, headerBlock, headersFrames, RawH2Client, requestBlock, S, settings, sleep, startRawH2Server, T, windowUpdate, type Frame } from '../../test/abuse/util.js';
import { TestCa } from '../../test/tls/test-ca.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(ok: () => boolean, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!ok() && Date.now() < end) await sleep(10);
  return ok();
}

async function server(handler: Parameters<typeof listenH2>[0], options = TEST_OPTIONS): Promise<Awaited<ReturnType<typeof listenH2>>> {
  const srv = await listenH2(handler, options);
  cleanups.push(() => {
    for (const s of srv.sessions) s.destroy();
    srv.server.close();
  });
  return srv;
}

/** A handler answering 200 with `body`, all of it written at once: the session queues what windows hold back. */
function answerWith(body: Buffer): Parameters<typeof listenH2>[0] {
  return (_s, stream) => {
    stream.respond(200, null, false);
    stream.write(body);
    stream.end(null);
  };
}

async function rawClient(port: number, ourSettings: readonly (readonly [number, number])[] = []): Promise<RawH2Client> {
  const c = new RawH2Client(port, ourSettings);
  cleanups.push(() => c.destroy());
  await c.ready;
  return c;
}

describe('server role: output and windows', () => {
  it('a client that stops reading (2 GiB windows): the writer is held back, the socket holds ~1 MiB, all 64 MiB arrive on resume', async () => {
    const total = 64 << 20;
    const piece = Buffer.alloc(64 << 10, 0x62);
    let written = 0;
    let drains = 0;
    const srv = await server((_s, stream) => {
      stream.respond(200, null, false);
      const more = (st: H2Stream): void => {
        while (written < total) {
          written += piece.length;
          if (!st.write(piece)) return;
        }
        st.end(null);
      };
      const rec = new StreamRecorder();
      rec.onDrainHook = (st) => {
        drains++;
        more(st);
      };
      stream.owner = rec;
      more(stream);
    });
    const client = await rawClient(srv.port, [[S.INITIAL_WINDOW_SIZE, 0x7fffffff]]);
    client.socket.pause();
    await client.write(Buffer.concat([windowUpdate(0, 0x7fffffff - 65_535), headersFrames(1, requestBlock('x', '/big'), true)]));
    let maxQueued = 0;
    for (let i = 0; i < 50; i++) {
      await sleep(10);
      maxQueued = Math.max(maxQueued, srv.sessions[0]!.socket.writableLength);
    }
    // The writer was held back by write() === false: kernel buffers + 1 MiB socket + 1 MiB stream queue at most.
    expect(written).toBeLessThan(16 << 20);
    expect(maxQueued).toBeLessThan(3 << 20);
    client.socket.resume();
    expect(await until(() => client.dataBytes === total, 10_000)).toBe(true);
    expect(drains).toBeGreaterThan(0);
  });

  it('SETTINGS_INITIAL_WINDOW_SIZE 0 holds the body; raising it releases the body to open streams', async () => {
    const body = Buffer.alloc(30_000, 0x63);
    const srv = await server(answerWith(body));
    const client = await rawClient(srv.port, [[S.INITIAL_WINDOW_SIZE, 0]]);
    await client.write(headersFrames(1, requestBlock('x', '/'), true));
    expect(await until(() => client.responses.has(1))).toBe(true);
    await sleep(50);
    expect(client.dataBytes).toBe(0);
    await client.write(settings([[S.INITIAL_WINDOW_SIZE, 65_535]]));
    expect(await until(() => client.dataBytes === body.length)).toBe(true);
    expect(srv.recorders[0]!.close).toBeNull();
  });

  it('stream WINDOW_UPDATE releases a body held by the stream window', async () => {
    const body = Buffer.alloc(100_000, 0x64);
    const srv = await server(answerWith(body));
    const client = await rawClient(srv.port);
    await client.write(Buffer.concat([windowUpdate(0, 1 << 20), headersFrames(1, requestBlock('x', '/'), true)]));
    expect(await until(() => client.dataBytes === 65_535)).toBe(true);
    await client.write(windowUpdate(1, 100_000));
    expect(await until(() => client.dataBytes === body.length)).toBe(true);
  });

  it.each([
    ['ENABLE_PUSH 2', S.ENABLE_PUSH, 2, H2Error.PROTOCOL_ERROR],
    ['INITIAL_WINDOW_SIZE 2^31', S.INITIAL_WINDOW_SIZE, 0x80000000, H2Error.FLOW_CONTROL_ERROR],
    ['MAX_FRAME_SIZE 100', S.MAX_FRAME_SIZE, 100, H2Error.PROTOCOL_ERROR],
    ['MAX_FRAME_SIZE 2^24', S.MAX_FRAME_SIZE, 1 << 24, H2Error.PROTOCOL_ERROR],
  ])('invalid setting %s is a connection error', async (_name, id, value, code) => {
    const srv = await server(echoHandler);
    const client = await rawClient(srv.port);
    await client.write(settings([[id, value]]));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(code);
  });

  it('padded HEADERS and DATA are read without their padding', async () => {
    const srv = await server(echoHandler);
    const client = await rawClient(srv.port);
    const block = requestBlock('x', '/pad', 'POST');
    const padH = Buffer.concat([Buffer.from([7]), block, Buffer.alloc(7)]);
    const padD = Buffer.concat([Buffer.from([5]), Buffer.from('hello'), Buffer.alloc(5)]);
    await client.write(Buffer.concat([frame(T.HEADERS, F.END_HEADERS | F.PADDED, 1, padH), frame(T.DATA, F.END_STREAM | F.PADDED, 1, padD)]));
    expect(await until(() => client.dataBytes === 5)).toBe(true);
    expect(client.goaway).toBeNull();
  });

  it('frames dribbled in 1-20 byte writes (preface, CONTINUATION, padded DATA) are reassembled', async () => {
    const srv = await server(echoHandler);
    const socket = net.connect(srv.port, '127.0.0.1');
    socket.setNoDelay(true);
    socket.on('error', () => {});
    cleanups.push(() => socket.destroy());
    const frames: Frame[] = [];
    const reader = new FrameReader((f) => frames.push(f));
    socket.on('data', (d: Buffer) => reader.push(d));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    const block = requestBlock('x', '/dribble', 'POST', [['x-long', 'l'.repeat(300)]]);
    const body = Buffer.alloc(20_000, 0x66);
    const padded = Buffer.concat([Buffer.from([3]), body.subarray(0, 10_000), Buffer.alloc(3)]);
    const all = Buffer.concat([
      Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
      settings([]),
      frame(T.HEADERS, 0, 1, block.subarray(0, 100)),
      frame(T.CONTINUATION, F.END_HEADERS, 1, block.subarray(100)),
      frame(T.DATA, F.PADDED, 1, padded),
      frame(T.DATA, F.END_STREAM, 1, body.subarray(10_000)),
    ]);
    let seed = 7;
    for (let off = 0; off < all.length; ) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      const n = 1 + (seed % 20);
      socket.write(all.subarray(off, off + n));
      off += n;
      if (seed % 4 === 0) await new Promise((r) => setImmediate(r));
    }
    expect(await until(() => frames.some((f) => f.type === T.DATA && (f.flags & F.END_STREAM) !== 0))).toBe(true);
    const echoed = Buffer.concat(frames.filter((f) => f.type === T.DATA && f.stream === 1).map((f) => f.payload));
    expect(echoed.equals(body)).toBe(true);
    expect(frames.some((f) => f.type === T.GOAWAY)).toBe(false);
  });

  it('a PING is answered with its payload (ACK)', async () => {
    const srv = await server(echoHandler);
    const socket = net.connect(srv.port, '127.0.0.1');
    socket.on('error', () => {});
    cleanups.push(() => socket.destroy());
    const frames: Frame[] = [];
    const reader = new FrameReader((f) => frames.push(f));
    socket.on('data', (d: Buffer) => reader.push(d));
    const payload = Buffer.from('12345678');
    socket.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), settings([]), frame(T.PING, 0, 0, payload)]));
    expect(await until(() => frames.some((f) => f.type === T.PING))).toBe(true);
    const ack = frames.find((f) => f.type === T.PING)!;
    expect(ack.flags & F.ACK).toBe(F.ACK);
    expect(ack.payload.equals(payload)).toBe(true);
    // The server's first frame is its SETTINGS, then the connection WINDOW_UPDATE.
    expect(frames[0]!.type).toBe(T.SETTINGS);
  });
});

describe('header blocks larger than a frame', () => {
  function bigHeaders(): ReturnType<typeof newHeaderMap> {
    const h = newHeaderMap();
    for (let i = 0; i < 4; i++) h[`x-big-${i}`] = String(i).repeat(10_000);
    return h;
  }

  it('our client splits a 40 KB request head into HEADERS + CONTINUATION; node:http2 reads it', async () => {
    const node = http2.createServer({ settings: { maxHeaderListSize: 100_000 }, maxSendHeaderBlockLength: 100_000 });
    node.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      stream.respond({ ':status': 200, 'x-len': String(headers['x-big-3']?.length ?? 0) });
      stream.end();
    });
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => node.close());
    const { session } = await connectH2((node.address() as AddressInfo).port);
    cleanups.push(() => session.destroy());
    const rec = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', bigHeaders(), true, rec);
    await rec.done;
    expect(rec.reset).toBeNull();
    expect(rec.head!.headers['x-len']).toBe('10000');
  });

  it('our client to our server: a 40 KB head both ways (CONTINUATION assembled on receive)', async () => {
    const srv = await server(
      (_s, stream, head) => {
        stream.respond(200, head.headers, true);
      },
      { ...TEST_OPTIONS, maxHeaderListSize: 65_536 },
    );
    const { session } = await connectH2(srv.port, { ...TEST_OPTIONS, maxHeaderListSize: 65_536 });
    cleanups.push(() => session.destroy());
    const rec = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', bigHeaders(), true, rec);
    await rec.done;
    expect(rec.reset).toBeNull();
    expect(rec.head!.headers['x-big-2']).toBe('2'.repeat(10_000));
  });
});

/** A hand-driven HTTP/2 server: sends its SETTINGS, ACKs the client's, and hands every other frame to `onFrame`. */
/** A hand-driven server peer; `onFrame` sees every frame but the client's SETTINGS (already ACKed). */
async function rawServer(onFrame: (sock: net.Socket, f: Frame) => void): Promise<{ port: number; frames: Frame[] }> {
  const frames: Frame[] = [];
  const srv = await startRawH2Server((sock, f) => {
    frames.push(f);
    if (f.type !== T.SETTINGS || (f.flags & F.ACK) !== 0) onFrame(sock, f);
  });
  cleanups.push(() => srv.close());
  return { port: srv.port, frames };
}

const STATUS_200 = headerBlock([[':status', '200']]);

describe('client role against a hostile server', () => {
  it('a response head over our maxHeaderListSize: RST_STREAM PROTOCOL_ERROR, onReset, the session serves on', async () => {
    const { port, frames } = await rawServer((sock, f) => {
      if (f.type !== T.HEADERS) return;
      if (f.stream === 1) sock.write(headersFrames(1, headerBlock([[':status', '200'], ['x-big', 'z'.repeat(20_000)]]), true));
      else sock.write(headersFrames(f.stream, STATUS_200, true));
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', newHeaderMap(), true, a);
    await a.done;
    expect(a.reset?.code).toBe(H2Error.PROTOCOL_ERROR);
    expect(a.reset?.why).toMatch(/too large/);
    expect(await until(() => frames.some((f) => f.type === T.RST_STREAM && f.stream === 1))).toBe(true);
    const b = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', newHeaderMap(), true, b);
    await b.done;
    expect(b.head?.status).toBe(200);
  });

  it('1xx heads are skipped: onHead sees the final 200', async () => {
    const { port } = await rawServer((sock, f) => {
      if (f.type === T.HEADERS) sock.write(Buffer.concat([headersFrames(f.stream, headerBlock([[':status', '103'], ['link', '</a>']]), false), headersFrames(f.stream, STATUS_200, true)]));
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', newHeaderMap(), true, a);
    await a.done;
    expect(a.head?.status).toBe(200);
    expect(a.head?.headers.link).toBeUndefined();
  });

  it('PUSH_PROMISE (we sent ENABLE_PUSH 0) is a connection PROTOCOL_ERROR: streams reset, session closed', async () => {
    const { port, frames } = await rawServer((sock, f) => {
      if (f.type === T.HEADERS) sock.write(frame(T.PUSH_PROMISE, F.END_HEADERS, f.stream, Buffer.concat([Buffer.from([0, 0, 0, 2]), requestBlock('x', '/pushed')])));
    });
    const { session, rec } = await connectH2(port);
    const a = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', newHeaderMap(), true, a);
    await Promise.all([a.done, rec.closed]);
    expect(a.reset?.code).toBe(H2Error.PROTOCOL_ERROR);
    expect(rec.close?.sentGoawayCode).toBe(H2Error.PROTOCOL_ERROR);
    expect(await until(() => frames.some((f) => f.type === T.GOAWAY))).toBe(true);
  });

  it('HEADERS on a server-initiated (even) stream is a connection PROTOCOL_ERROR', async () => {
    const { port } = await rawServer((sock, f) => {
      if (f.type === T.HEADERS) sock.write(headersFrames(2, STATUS_200, true));
    });
    const { session, rec } = await connectH2(port);
    session.request('GET', 'http', 'x', '/', newHeaderMap(), true, new StreamRecorder());
    await rec.closed;
    expect(rec.close?.sentGoawayCode).toBe(H2Error.PROTOCOL_ERROR);
  });

  it('DATA beyond the stream window of a paused stream is a stream FLOW_CONTROL_ERROR', async () => {
    const { port } = await rawServer((sock, f) => {
      if (f.type !== T.HEADERS) return;
      const data: Buffer[] = [headersFrames(f.stream, STATUS_200, false)];
      for (let i = 0; i < 7; i++) data.push(frame(T.DATA, 0, f.stream, Buffer.alloc(10_000)));
      sock.write(Buffer.concat(data));
    });
    const { session, rec } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = new StreamRecorder();
    a.onDataHook = (st) => st.pause();
    session.request('GET', 'http', 'x', '/', newHeaderMap(), true, a);
    await a.done;
    expect(a.reset?.code).toBe(H2Error.FLOW_CONTROL_ERROR);
    expect(a.body.length).toBe(60_000);
    expect(rec.close).toBeNull();
  });

  it('a response body shorter than its content-length is a stream PROTOCOL_ERROR', async () => {
    const { port } = await rawServer((sock, f) => {
      if (f.type === T.HEADERS) {
        sock.write(Buffer.concat([headersFrames(f.stream, headerBlock([[':status', '200'], ['content-length', '10']]), false), frame(T.DATA, F.END_STREAM, f.stream, Buffer.from('short'))]));
      }
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', newHeaderMap(), true, a);
    await a.done;
    expect(a.reset?.code).toBe(H2Error.PROTOCOL_ERROR);
  });

  it('a HEAD response may announce a content-length without a body', async () => {
    const { port } = await rawServer((sock, f) => {
      if (f.type === T.HEADERS) sock.write(headersFrames(f.stream, headerBlock([[':status', '200'], ['content-length', '10']]), true));
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = new StreamRecorder();
    session.request('HEAD', 'http', 'x', '/', newHeaderMap(), true, a);
    await a.done;
    expect(a.reset).toBeNull();
    expect(a.head?.headers['content-length']).toBe('10');
  });
});

describe('over TLS', () => {
  const ca = new TestCa();
  const cert = ca.issue({ cn: 'localhost' });

  it('our server on a TLSSocket (ALPN h2) serves a node:http2 client', async () => {
    const sessions: H2Session[] = [];
    const srv = tls.createServer({ key: cert.keyPem, cert: cert.certPem, ALPNProtocols: ['h2'] }, (socket) => {
      const rec = new SessionRecorder();
      rec.onRequest = echoHandler;
      sessions.push(new H2Session(socket, 'server', TEST_OPTIONS, rec));
    });
    srv.on('error', () => {});
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => {
      for (const s of sessions) s.destroy();
      srv.close();
    });
    const client = http2.connect(`https://localhost:${(srv.address() as AddressInfo).port}`, { ca: ca.caPem, host: '127.0.0.1' } as http2.SecureClientSessionOptions);
    client.on('error', () => {});
    cleanups.push(() => client.destroy());
    const body = Buffer.alloc(200_000, 0x65);
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const req = client.request({ ':path': '/tls', ':method': 'POST' });
      const chunks: Buffer[] = [];
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
      req.end(body);
    });
    expect(echoed.equals(body)).toBe(true);
  });

  it('our client on a TLSSocket talks to a node:http2 secure server', async () => {
    const node = http2.createSecureServer({ key: cert.keyPem, cert: cert.certPem });
    node.on('stream', (stream) => {
      stream.on('error', () => {});
      stream.respond({ ':status': 200 });
      stream.end('secure');
    });
    node.on('error', () => {});
    await new Promise<void>((r) => node.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => node.close());
    const socket = tls.connect({ port: (node.address() as AddressInfo).port, host: '127.0.0.1', servername: 'localhost', ca: ca.caPem, ALPNProtocols: ['h2'] });
    const rec = new SessionRecorder();
    const session = new H2Session(socket, 'client', TEST_OPTIONS, rec);
    cleanups.push(() => session.destroy());
    await rec.settled;
    const a = new StreamRecorder();
    session.request('GET', 'https', 'localhost', '/', newHeaderMap(), true, a);
    await a.done;
    expect(a.body.toString()).toBe('secure');
  });
});
