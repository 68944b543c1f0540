// Hostile input against H2Session's server role, one limit per test, from a raw socket writing hand-made frames
// (test/abuse/util.ts). Each asserts the answer the limit gives (GOAWAY code, RST_STREAM code, 431) and, where
// the connection must survive, that it serves on.
import { afterEach, describe, expect, it } from 'vitest';
import { H2Error } from './errors.js';
import type { H2Session } from './session.js';
import type { H2Stream } from './stream.js';
import type { DecodedHead } from './hpack.js';
import { listenH2, StreamRecorder, TEST_OPTIONS, type SessionRecorder } from '../../test/helpers/h2-peers.js';
import {
  F,
  frame,
  headerBlock,
  headersFrames,
  ping,
  RawH2Client,
  requestBlock,
  rstStream,
  settings,
  sleep,
  T,
  windowUpdate,
} from '../../test/abuse/util.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A server that never answers (streams stay open) unless the path is /ok (200, empty, END_STREAM). */
function holdOrAnswer(_s: H2Session, stream: H2Stream, head: DecodedHead): void {
  if (head.path === '/ok') stream.respond(200, null, true);
  else stream.owner = new StreamRecorder();
}

async function serverAndClient(
  handler: (s: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean) => void = holdOrAnswer,
  options = TEST_OPTIONS,
): Promise<{ client: RawH2Client; rec: () => SessionRecorder; port: number; session: () => H2Session }> {
  const srv = await listenH2(handler, options);
  cleanups.push(() => {
    for (const s of srv.sessions) s.destroy();
    srv.server.close();
  });
  const client = new RawH2Client(srv.port);
  cleanups.push(() => client.destroy());
  await client.ready;
  for (let i = 0; i < 200 && srv.recorders.length === 0; i++) await sleep(5);
  return { client, rec: () => srv.recorders[0]!, port: srv.port, session: () => srv.sessions[0]! };
}

/** Waits until the server's session reported its close; returns the GOAWAY code it sent (-1 none). */
async function serverClosed(rec: () => SessionRecorder, ms = 5000): Promise<number> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const r = rec();
    if (r?.close) return r.close.sentGoawayCode;
    await sleep(20);
  }
  return -2;
}

/** Writes `batch` until the server session closes (at most 100 MiB); returns the most its socket held unsent. */
async function flood(client: RawH2Client, rec: () => SessionRecorder, session: () => H2Session, batch: Buffer): Promise<number> {
  let sent = 0;
  let maxQueued = 0;
  while (rec().close === null && sent < 100 << 20 && !client.socket.destroyed) {
    await client.write(batch);
    sent += batch.length;
    await new Promise((r) => setImmediate(r));
    maxQueued = Math.max(maxQueued, session().socket.writableLength);
  }
  return maxQueued;
}

function dataFrame(stream: number, bytes: number, flags = 0): Buffer {
  return frame(T.DATA, flags, stream, Buffer.alloc(bytes, 0x61));
}

/** Sends GET /ok on `id` and waits for its response HEADERS: the connection still serves. */
async function servesOn(client: RawH2Client, id: number, authority = 'x'): Promise<boolean> {
  await client.write(headersFrames(id, requestBlock(authority, '/ok'), true));
  for (let i = 0; i < 100; i++) {
    if (client.responses.has(id)) return true;
    await sleep(10);
  }
  return false;
}

describe('H2Session strictness (server role, conforming clients must not trip a limit)', () => {
  it("browsers', curl's and gRPC's first flights and habits are served", async () => {
    const { client, rec } = await serverAndClient((_s, stream, head, endStream) => {
      if (head.path === '/big') {
        stream.respond(200, null, false);
        stream.write(Buffer.alloc(256 << 10, 0x61)); // one frame: the client allows 2^24-1
        stream.end(null);
      } else if (!endStream) {
        stream.owner = new StreamRecorder(); // an upload: answered at once, the body keeps coming
        stream.respond(200, null, true);
      } else {
        stream.respond(200, { 'grpc-status': '0' }, true); // trailers-only
      }
    });
    const prio = (id: number): Buffer => frame(T.PRIORITY, 0, id, Buffer.from([0, 0, 0, 0, 200]));
    const first: Buffer[] = [
      // Unknown ids (8, 9, GREASE 0x0a0a) are ignored; windows and frame size at their maximum; table 64 KiB.
      settings([[1, 65_536], [2, 0], [3, 1000], [4, 0x7fffffff], [5, 0xffffff], [6, 262_144], [8, 1], [9, 1], [0x0a0a, 7]]),
      windowUpdate(0, 0x7fffffff - 65_535),
      prio(3), prio(5), prio(7), prio(9), prio(11), // Firefox's idle placeholder streams
      frame(0x0b, 0, 0, Buffer.from('grease')), // unknown frame type
      frame(T.HEADERS, F.END_HEADERS | F.END_STREAM | F.PRIORITY, 13, Buffer.concat([Buffer.from([0, 0, 0, 3, 100]), requestBlock('x', '/big')])),
      ping(1),
    ];
    await client.write(Buffer.concat(first));
    for (let i = 0; i < 200 && client.dataBytes < 256 << 10; i++) await sleep(10);
    expect(client.dataBytes).toBe(256 << 10);
    // 300 more streams, each with a PRIORITY and a stream WINDOW_UPDATE, a BDP PING per burst, RST_STREAM
    // NO_ERROR after a complete response, and an upload answered early whose body ends with an empty DATA.
    for (let batch = 0, id = 15; batch < 6; batch++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 50; i++, id += 2) {
        frames.push(headersFrames(id, requestBlock('x', '/unary'), true), prio(id), windowUpdate(id, 1 << 20), rstStream(id, 0));
      }
      frames.push(ping(batch));
      await client.write(Buffer.concat(frames));
      await sleep(5);
    }
    await client.write(headersFrames(615, requestBlock('x', '/up', 'POST'), false));
    await client.write(Buffer.concat([frame(T.DATA, 0, 615, Buffer.alloc(1000)), frame(T.DATA, F.END_STREAM, 615)]));
    for (let i = 0; i < 200 && client.responses.size < 302; i++) await sleep(10);
    expect(client.responses.size).toBe(302);
    // The only reset: RST_STREAM NO_ERROR after the early answer to the upload (RFC 9113 §8.1); its body's rest is ignored.
    expect([...client.resets]).toEqual([[615, H2Error.NO_ERROR]]);
    expect(client.goaway).toBeNull();
    expect(rec().close).toBeNull();
  });
});

describe('H2Session limits (server role, hostile client)', () => {
  it('rapid reset: streams opened and reset before an answer end the connection with ENHANCE_YOUR_CALM', async () => {
    const { client, rec } = await serverAndClient();
    const batch: Buffer[] = [];
    for (let i = 0, id = 1; i < 1100; i++, id += 2) batch.push(headersFrames(id, requestBlock('x', '/hold'), true), rstStream(id));
    await client.write(Buffer.concat(batch));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('a busy client that cancels a third of its streams at once (gRPC deadlines, hedging) is served on', async () => {
    // 6,000 streams in about a second, 2,040 of them reset before an answer: a rate bucket (nghttp2's 1000, then
    // 33/s) ended this connection; under the premature-reset ratio it serves on.
    const { client, rec } = await serverAndClient();
    for (let batch = 0, id = 1; batch < 60; batch++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 100; i++, id += 2) {
        frames.push(headersFrames(id, requestBlock('x', i % 3 === 0 ? '/hold' : '/ok'), true));
        if (i % 3 === 0) frames.push(rstStream(id, 8));
      }
      await client.write(Buffer.concat(frames));
      await sleep(10);
    }
    for (let i = 0; i < 500 && client.responses.size < 3960; i++) await sleep(10);
    expect(client.responses.size).toBe(3960);
    expect(client.goaway).toBeNull();
    expect(rec().close).toBeNull();
  });

  it('streams over maxConcurrentStreams are refused (REFUSED_STREAM) and the refusals count as rapid resets', async () => {
    const { client, rec } = await serverAndClient(holdOrAnswer, { ...TEST_OPTIONS, maxConcurrentStreams: 2 });
    await client.write(Buffer.concat([1, 3, 5].map((id) => headersFrames(id, requestBlock('x', '/hold'), true))));
    for (let i = 0; i < 100 && !client.resets.has(5); i++) await sleep(10);
    expect(client.resets.get(5)).toBe(H2Error.REFUSED_STREAM);
    expect(client.resets.has(1)).toBe(false);
    // In batches of 100 over several turns: the per-turn control frame count (1000) must not be what ends it.
    for (let batch = 0, id = 7; batch < 11 && !client.closed; batch++) {
      const flood: Buffer[] = [];
      for (let i = 0; i < 100; i++, id += 2) flood.push(headersFrames(id, requestBlock('x', '/hold'), true));
      await client.write(Buffer.concat(flood));
      await sleep(5);
    }
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('CONTINUATION flood (bytes): a header block past maxHeaderListSize + 16 KiB ends the connection', async () => {
    const { client, rec } = await serverAndClient();
    const parts: Buffer[] = [frame(T.HEADERS, 0, 1, requestBlock('x', '/'))];
    // Each fragment alone is a legal 16 KiB frame; together they pass 16 KiB (list) + 16 KiB (slack).
    for (let i = 0; i < 3; i++) parts.push(frame(T.CONTINUATION, 0, 1, headerBlock([[`x-h${i}`, 'v'.repeat(16_000)]])));
    await client.write(Buffer.concat(parts));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('CONTINUATION flood (frames): 64 empty CONTINUATIONs end the connection', async () => {
    const { client, rec } = await serverAndClient();
    const parts: Buffer[] = [frame(T.HEADERS, 0, 1, requestBlock('x', '/'))];
    for (let i = 0; i < 70; i++) parts.push(frame(T.CONTINUATION, 0, 1));
    await client.write(Buffer.concat(parts));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('a large header list limit allows the 16 KiB frames a block of that size needs (not only 64)', async () => {
    const { client, rec } = await serverAndClient(holdOrAnswer, { ...TEST_OPTIONS, maxHeaderListSize: 2 << 20, maxHeaderCount: 200 });
    const big: [string, string][] = [];
    for (let i = 0; i < 100; i++) big.push([`x-big-${i}`, 'v'.repeat(15_000)]);
    const frames = headersFrames(1, requestBlock('x', '/ok', 'GET', big), true);
    await client.write(frames);
    for (let i = 0; i < 200 && !client.responses.has(1) && !client.closed; i++) await sleep(10);
    expect(client.responses.has(1)).toBe(true); // ~92 frames
    expect(client.goaway).toBeNull();
    expect(rec().close).toBeNull();
  });

  it('a header block over the list size is answered 431 (x-pillion-reason) and the connection serves on', async () => {
    const { client, rec } = await serverAndClient(holdOrAnswer, { ...TEST_OPTIONS, maxHeaderListSize: 4096 });
    await client.write(headersFrames(1, requestBlock('x', '/', 'GET', [['x-big', 'b'.repeat(5000)]]), true));
    for (let i = 0; i < 100 && !client.responses.has(1); i++) await sleep(10);
    expect(client.responses.has(1)).toBe(true);
    expect(rec().refusedHeads).toEqual(['headers_too_large']);
    expect(await servesOn(client, 3)).toBe(true);
    expect(client.goaway).toBeNull();
  });

  it('a header block over maxHeaderCount is answered 431 and the connection serves on', async () => {
    const { client, rec } = await serverAndClient(holdOrAnswer, { ...TEST_OPTIONS, maxHeaderCount: 20 });
    const many: [string, string][] = [];
    for (let i = 0; i < 30; i++) many.push([`x-n${i}`, 'v']);
    await client.write(headersFrames(1, requestBlock('x', '/', 'GET', many), true));
    for (let i = 0; i < 100 && !client.responses.has(1); i++) await sleep(10);
    expect(client.responses.has(1)).toBe(true);
    expect(rec().refusedHeads).toEqual(['headers_too_large']);
    expect(await servesOn(client, 3)).toBe(true);
  });

  it('PING flood whose ACKs are never read: the connection is ended, output stays bounded', async () => {
    const { client, rec, session } = await serverAndClient();
    client.socket.pause(); // we never read the ACKs
    const batch = Buffer.concat(Array.from({ length: 2000 }, (_, i) => ping(i)));
    const maxQueued = await flood(client, rec, session, batch);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(maxQueued).toBeLessThan(4 << 20);
  });

  it('a burst of 3000 PINGs in one write (the client reads): over 1000 ACKs in one turn end the connection', async () => {
    const { client, rec } = await serverAndClient();
    await client.write(Buffer.concat(Array.from({ length: 3000 }, (_, i) => ping(i))));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('PINGs at a normal pace are all answered (the control frame count restarts once the kernel took our output)', async () => {
    const { client } = await serverAndClient();
    for (let i = 0; i < 20; i++) {
      await client.write(Buffer.concat(Array.from({ length: 200 }, (_, j) => ping(j))));
      await sleep(5);
    }
    await sleep(100);
    expect(client.goaway).toBeNull();
    expect(client.closed).toBe(false);
  });

  it('PING ACKs across many turns while our socket holds some (< 1 MiB) unsent output are not a flood', async () => {
    // A reader that is behind but reading (a long download to a grpc-go client sending a BDP PING per burst)
    // keeps a little output waiting in our socket at every flush: only output backed up past 1 MiB counts on.
    const fill: { done: Promise<void> | null } = { done: null };
    const { client, rec, session } = await serverAndClient((_s, stream) => {
      stream.respond(200, null, false);
      stream.owner = new StreamRecorder();
      fill.done = (async () => {
        const sock = stream.session.socket;
        for (let i = 0; i < 4000 && sock.writableLength === 0; i++) {
          stream.write(Buffer.alloc(65_536, 0x61));
          await new Promise((r) => setImmediate(r));
        }
        stream.write(Buffer.alloc(256 << 10, 0x62));
      })();
    });
    await client.write(Buffer.concat([settings([[0x4, 0x7fffffff]]), windowUpdate(0, 0x7fffffff - 65_535)]));
    await sleep(50);
    client.socket.pause(); // behind: reads nothing for now
    await client.write(headersFrames(1, requestBlock('x', '/down'), true));
    for (let i = 0; i < 500 && fill.done === null; i++) await sleep(10);
    await fill.done;
    await sleep(50);
    const waiting = session().socket.writableLength;
    expect(waiting).toBeGreaterThan(0);
    expect(waiting).toBeLessThan(1 << 20);
    for (let batch = 0; batch < 30; batch++) {
      await client.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => ping(batch * 50 + i))));
      await sleep(5);
    }
    await sleep(50);
    expect(session().dead).toBe(false);
    client.socket.resume();
    await sleep(100);
    expect(client.goaway).toBeNull();
    expect(rec().close).toBeNull();
  });

  it('destroy() after a graceful close() does not raise the GOAWAY last stream id over streams it ignored', async () => {
    const { client, session } = await serverAndClient();
    await client.write(headersFrames(1, requestBlock('x', '/hold'), true));
    for (let i = 0; i < 100 && session().activeStreams === 0; i++) await sleep(10);
    session().close();
    for (let i = 0; i < 100 && client.goaway === null; i++) await sleep(10);
    expect(client.goaway).toEqual({ lastStream: 1, code: H2Error.NO_ERROR });
    // Sent before it read our GOAWAY: ignored, so retryable; the final GOAWAY must keep saying 1.
    await client.write(headersFrames(3, requestBlock('x', '/hold'), true));
    await sleep(50);
    session().destroy(H2Error.INTERNAL_ERROR, 'drain timeout');
    for (let i = 0; i < 100 && client.goaway?.code === H2Error.NO_ERROR; i++) await sleep(10);
    expect(client.goaway).toEqual({ lastStream: 1, code: H2Error.INTERNAL_ERROR });
    expect(client.responses.has(3)).toBe(false);
  });

  it('our own reset of 1500 streams in one turn is not counted as peer-caused control frames', async () => {
    const held: H2Stream[] = [];
    const { client, rec } = await serverAndClient(
      (_s, stream) => {
        held.push(stream);
        stream.owner = new StreamRecorder();
      },
      { ...TEST_OPTIONS, maxConcurrentStreams: 2000 },
    );
    for (let batch = 0; batch < 15; batch++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 100; i++) frames.push(headersFrames(1 + 2 * (batch * 100 + i), requestBlock('x', '/hold'), true));
      await client.write(Buffer.concat(frames));
      await sleep(5);
    }
    for (let i = 0; i < 200 && held.length < 1500; i++) await sleep(10);
    expect(held.length).toBe(1500);
    for (const st of held) st.reset(H2Error.CANCEL);
    for (let i = 0; i < 200 && client.resets.size < 1500; i++) await sleep(10);
    expect(client.resets.size).toBe(1500);
    expect(client.goaway).toBeNull();
    expect(rec().close).toBeNull();
  });

  it('SETTINGS flood whose ACKs are never read: the connection is ended', async () => {
    const { client, rec, session } = await serverAndClient();
    client.socket.pause();
    const batch = Buffer.concat(Array.from({ length: 4000 }, () => settings([])));
    const maxQueued = await flood(client, rec, session, batch);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(maxQueued).toBeLessThan(4 << 20);
  });

  it('a frame over 16384 bytes is a FRAME_SIZE_ERROR', async () => {
    const { client, rec } = await serverAndClient();
    await client.write(frame(T.HEADERS, F.END_HEADERS, 1, Buffer.alloc(16_385)));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.FRAME_SIZE_ERROR);
    expect(await serverClosed(rec)).toBe(H2Error.FRAME_SIZE_ERROR);
  });

  it('bad stream ids: an even client stream id is a PROTOCOL_ERROR', async () => {
    const { client } = await serverAndClient();
    await client.write(headersFrames(2, requestBlock('x', '/ok'), true));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.PROTOCOL_ERROR);
  });

  it('bad stream ids: a stream id lower than one before is a PROTOCOL_ERROR... or ignored as closed', async () => {
    const { client } = await serverAndClient();
    expect(await servesOn(client, 5)).toBe(true);
    // Stream 3 was skipped: it is closed (RFC 9113 §5.1.1), its HEADERS are ignored, nothing answers it.
    await client.write(headersFrames(3, requestBlock('x', '/ok'), true));
    await sleep(100);
    expect(client.responses.has(3)).toBe(false);
    // A WINDOW_UPDATE or RST_STREAM on an idle stream is a connection error.
    await client.write(windowUpdate(9, 100));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.PROTOCOL_ERROR);
  });

  it('DATA on an idle stream is a PROTOCOL_ERROR', async () => {
    const { client } = await serverAndClient();
    await client.write(dataFrame(7, 10));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.PROTOCOL_ERROR);
  });

  it('window overflow: connection WINDOW_UPDATE past 2^31-1 is a FLOW_CONTROL_ERROR; on a stream it resets the stream', async () => {
    const { client } = await serverAndClient();
    await client.write(headersFrames(1, requestBlock('x', '/hold'), true));
    await client.write(windowUpdate(1, 0x7fffffff));
    for (let i = 0; i < 100 && !client.resets.has(1); i++) await sleep(10);
    expect(client.resets.get(1)).toBe(H2Error.FLOW_CONTROL_ERROR);
    expect(client.goaway).toBeNull();
    await client.write(windowUpdate(0, 0x7fffffff));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.FLOW_CONTROL_ERROR);
  });

  it('PRIORITY flood ends the connection with ENHANCE_YOUR_CALM', async () => {
    const { client, rec } = await serverAndClient();
    const prio = frame(T.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 0, 16]));
    await client.write(Buffer.concat(Array.from({ length: 300 }, () => prio)));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('WINDOW_UPDATE flood (no DATA sent to the peer) ends the connection with ENHANCE_YOUR_CALM', async () => {
    const { client, rec } = await serverAndClient();
    await client.write(Buffer.concat(Array.from({ length: 300 }, () => windowUpdate(0, 1))));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('a stream WINDOW_UPDATE with every new stream (gRPC C-core) is not a flood: 300 streams are all answered', async () => {
    const { client, rec } = await serverAndClient();
    for (let batch = 0, id = 1; batch < 6; batch++) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 50; i++, id += 2) frames.push(headersFrames(id, requestBlock('x', '/ok'), true), windowUpdate(id, 1 << 20));
      await client.write(Buffer.concat(frames));
      await sleep(5);
    }
    for (let i = 0; i < 200 && client.responses.size < 300 && !client.closed; i++) await sleep(10);
    expect(client.responses.size).toBe(300);
    expect(client.goaway).toBeNull();
    expect(rec().close).toBeNull();
  });

  it('empty DATA flood ends the connection with ENHANCE_YOUR_CALM', async () => {
    const { client, rec } = await serverAndClient();
    await client.write(headersFrames(1, requestBlock('x', '/hold', 'POST'), false));
    await client.write(Buffer.concat(Array.from({ length: 300 }, () => dataFrame(1, 0))));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.ENHANCE_YOUR_CALM);
    expect(await serverClosed(rec)).toBe(H2Error.ENHANCE_YOUR_CALM);
  });

  it('DATA beyond the stream window is a stream FLOW_CONTROL_ERROR (nothing unread is credited); the connection serves on', async () => {
    let held: StreamRecorder | null = null;
    const { client } = await serverAndClient((_s, stream, head) => {
      if (head.path === '/ok') return stream.respond(200, null, true);
      held = new StreamRecorder();
      stream.owner = held;
      stream.pause(); // reads nothing: no window credit
    });
    await client.write(headersFrames(1, requestBlock('x', '/up', 'POST'), false));
    const frames: Buffer[] = [];
    for (let sent = 0; sent < 70_000; sent += 10_000) frames.push(dataFrame(1, 10_000));
    await client.write(Buffer.concat(frames));
    for (let i = 0; i < 100 && !client.resets.has(1); i++) await sleep(10);
    expect(client.resets.get(1)).toBe(H2Error.FLOW_CONTROL_ERROR);
    expect(held!.reset?.code).toBe(H2Error.FLOW_CONTROL_ERROR);
    expect(held!.body.length).toBe(60_000);
    expect(await servesOn(client, 3)).toBe(true);
  });

  it('content-length mismatch (short and long bodies) is a stream PROTOCOL_ERROR', async () => {
    const { client } = await serverAndClient();
    await client.write(headersFrames(1, requestBlock('x', '/a', 'POST', [['content-length', '10']]), false));
    await client.write(dataFrame(1, 5, F.END_STREAM));
    await client.write(headersFrames(3, requestBlock('x', '/b', 'POST', [['content-length', '10']]), false));
    await client.write(dataFrame(3, 20));
    for (let i = 0; i < 100 && !(client.resets.has(1) && client.resets.has(3)); i++) await sleep(10);
    expect(client.resets.get(1)).toBe(H2Error.PROTOCOL_ERROR);
    expect(client.resets.get(3)).toBe(H2Error.PROTOCOL_ERROR);
    expect(await servesOn(client, 5)).toBe(true);
  });

  it('a malformed request head (uppercase name, missing :path) is a stream PROTOCOL_ERROR', async () => {
    const { client } = await serverAndClient();
    await client.write(headersFrames(1, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/'], ['X-Upper', 'v']]), true));
    await client.write(headersFrames(3, headerBlock([[':method', 'GET'], [':scheme', 'http']]), true));
    for (let i = 0; i < 100 && !(client.resets.has(1) && client.resets.has(3)); i++) await sleep(10);
    expect(client.resets.get(1)).toBe(H2Error.PROTOCOL_ERROR);
    expect(client.resets.get(3)).toBe(H2Error.PROTOCOL_ERROR);
    expect(await servesOn(client, 5)).toBe(true);
  });

  it('HPACK garbage is a COMPRESSION_ERROR', async () => {
    const { client } = await serverAndClient();
    await client.write(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.COMPRESSION_ERROR);
  });

  it('an exception in an owner callback (a bug) ends only that connection, with GOAWAY INTERNAL_ERROR', async () => {
    const { client, rec, port } = await serverAndClient(() => {
      throw new Error('owner bug');
    });
    await client.write(headersFrames(1, requestBlock('x', '/'), true));
    expect(await client.refused(3000)).toBe(true);
    expect(client.goaway?.code).toBe(H2Error.INTERNAL_ERROR);
    expect(await serverClosed(rec)).toBe(H2Error.INTERNAL_ERROR);
    // The server (the process) lives on: a new connection is served.
    const other = new RawH2Client(port);
    cleanups.push(() => other.destroy());
    await other.ready;
    await other.write(headersFrames(1, requestBlock('x', '/'), true));
    expect(await other.refused(3000)).toBe(true);
    expect(other.goaway?.code).toBe(H2Error.INTERNAL_ERROR);
  });
});
