// The HTTP/2 session writes each loop turn's frames from a pooled buffer (src/h2/session.ts: outPool, bigPool),
// which goes back to the pool only when the kernel took every byte of it. A client that stops reading leaves
// its session's buffer in libuv's write queue; if that buffer went back to the pool, the next session to frame
// would overwrite bytes still waiting to be sent. Here one raw client stops reading with a wide-open window
// while a second client keeps the proxy framing responses on another connection; once the first reads again,
// every one of its frames must parse and every DATA byte must be its stream's.
// (Checked: with the buffer released whatever the socket still holds, this fails with garbage frame headers.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { h2request } from '../helpers/client.js';
import { F, FrameReader, headersFrames, RawH2Client, requestBlock, S, sleep, T, windowUpdate } from '../abuse/util.js';

const BODY = 7000; // under the session's zero-copy size: DATA is copied into the pooled buffer
const STREAMS = 2000;
// ASCII, so the reading client (which decodes bodies as UTF-8) sees them unchanged.
const byteOf = (n: number): number => (n % 120) + 1;

let backend: Backend;
let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  backend = await startHttpBackend('bytes', (req, res) => {
    const n = Number((req.url ?? '').split('/')[2]);
    res.setHeader('content-length', String(BODY));
    res.end(Buffer.alloc(BODY, byteOf(n)));
  });
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await backend.close();
});

describe('HTTP/2 output buffers', () => {
  it('are not reused while a stalled client still has their bytes queued', async () => {
    const stalled = new RawH2Client(port, [[S.INITIAL_WINDOW_SIZE, 2 ** 31 - 1]]);
    await stalled.ready;
    await stalled.write(windowUpdate(0, 2 ** 31 - 1 - 65_535));
    // Let it read (and ACK) the proxy's SETTINGS, then stop reading.
    for (let i = 0; i < 100 && stalled.framesIn === 0; i++) await sleep(10);
    const problems: string[] = [];
    const dataPerStream = new Map<number, number>();
    const ended = new Set<number>();
    const others = new Set<number>();
    /** Streams that ended (END_STREAM), whatever their status. */
    const finished = new Set<number>();
    const reader = new FrameReader((f) => {
      if (f.type > T.CONTINUATION) problems.push(`frame type ${f.type} on stream ${f.stream}`);
      if ((f.type === T.DATA || f.type === T.HEADERS) && (f.flags & F.END_STREAM) !== 0) finished.add(f.stream);
      if (f.type !== T.DATA || f.stream === 0) return;
      // Only 200s carry the backend's body (0x88: \`:status: 200\` from the static table); a stream answered by the
      // proxy itself (the cluster's circuit breaker: 503 overflow) carries its text.
      if (stalled.statusByte.get(f.stream) !== 0x88) {
        others.add(f.stream);
        return;
      }
      const want = byteOf((f.stream - 1) / 2);
      for (let i = 0; i < f.payload.length; i++) {
        if (f.payload[i] !== want) {
          problems.push(`stream ${f.stream}: byte ${f.payload[i]} where ${want} belongs`);
          break;
        }
      }
      dataPerStream.set(f.stream, (dataPerStream.get(f.stream) ?? 0) + f.payload.length);
      if ((f.flags & F.END_STREAM) !== 0) ended.add(f.stream);
    });
    stalled.socket.pause();
    stalled.socket.on('data', (d: Buffer) => reader.push(d));

    // A client that reads, on its own connection, framing responses all along.
    const good = http2.connect(`http://127.0.0.1:${port}`);
    good.on('error', () => {});
    let goodOk = 0;
    let goodBad = 0;
    const goodRun = (async () => {
      for (let round = 0; round < 20; round++) {
        const replies = await Promise.all(
          Array.from({ length: 20 }, (_, i) => h2request(good, { ':path': `/p/${round * 20 + i}`, ':authority': 'backend' })),
        );
        replies.forEach((r, i) => {
          // A 503 from the circuit breaker (the stalled client holds many requests) is not what is tested here.
          if (Number(r.headers[':status']) !== 200) return;
          if (r.body === String.fromCharCode(byteOf(round * 20 + i)).repeat(BODY)) goodOk++;
          else goodBad++;
        });
      }
    })();

    // Requests in waves: streams close as their responses are framed, so the concurrency limit is not hit.
    for (let n = 0; n < STREAMS; n += 50) {
      const frames: Buffer[] = [];
      for (let i = n; i < n + 50; i++) frames.push(headersFrames(2 * i + 1, requestBlock('backend', `/p/${i}`), true));
      await stalled.write(Buffer.concat(frames));
      await sleep(20);
    }
    await goodRun;
    good.close();
    stalled.socket.resume();
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && finished.size + stalled.resets.size < STREAMS && !stalled.closed) await sleep(20);
    stalled.socket.destroy();

    expect(problems.slice(0, 5)).toEqual([]);
    expect(goodBad).toBe(0);
    expect(goodOk).toBeGreaterThan(0);
    // Many streams were answered (some are refused at the concurrency limit, or 503), each with its whole body.
    expect(ended.size - others.size).toBeGreaterThan(STREAMS / 4);
    for (const id of ended) if (!others.has(id)) expect(dataPerStream.get(id)).toBe(BODY);
  });
});
