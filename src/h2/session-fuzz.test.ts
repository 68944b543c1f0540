// Seeded random frame sequences against both roles of H2Session on real sockets: a session may refuse, reset or
// end the connection with any protocol error, but never with INTERNAL_ERROR (an exception in our code), and the
// server keeps serving new connections. A failing seed replays with the same frames.
import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { newHeaderMap } from '../http/headers.js';
import { H2Error } from './errors.js';
import { H2Session } from './session.js';
import type { H2Stream } from './stream.js';
import type { DecodedHead } from './hpack.js';
import { listenH2, SessionRecorder, StreamRecorder, TEST_OPTIONS } from '../../test/helpers/h2-peers.js';
import { frame, headerBlock, PREFACE, requestBlock, seeded, settings, sleep } from '../../test/abuse/util.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * Mostly well-formed frames (so sessions live long enough to reach deep paths), with some garbage: HEADERS on
 * increasing odd ids (sometimes split into CONTINUATIONs), DATA / WINDOW_UPDATE / RST_STREAM / PRIORITY on ids
 * already used, PINGs, SETTINGS with valid values, and ~5 % random frames.
 */
class FrameGen {
  nextId: number;
  readonly used: number[] = [];
  constructor(
    readonly rnd: () => number,
    readonly ourParity: number,
    readonly blockFor: () => Buffer,
  ) {
    this.nextId = ourParity;
  }
  pick(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  someId(): number {
    return this.used.length === 0 || this.rnd() < 0.05 ? 1 + this.pick(20) : this.used[this.pick(this.used.length)]!;
  }
  next(): Buffer {
    const r = this.rnd();
    const u32 = (v: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(v >>> 0);
      return b;
    };
    if (r < 0.05) {
      const payload = Buffer.alloc(this.pick(this.rnd() < 0.9 ? 40 : 17_000));
      for (let i = 0; i < payload.length; i++) payload[i] = this.pick(256);
      return frame(this.pick(12), this.pick(256), this.pick(30), payload);
    }
    if (r < 0.3) {
      const id = this.rnd() < 0.9 ? this.nextId : this.someId();
      if (id === this.nextId) {
        this.nextId += 2;
        this.used.push(id);
      }
      const block = this.blockFor();
      const endStream = this.rnd() < 0.5 ? 1 : 0;
      if (this.rnd() < 0.15 && block.length > 2) {
        const cut = 1 + this.pick(block.length - 1);
        return Buffer.concat([frame(1, endStream, id, block.subarray(0, cut)), frame(9, 4, id, block.subarray(cut))]);
      }
      return frame(1, 4 | endStream, id, block);
    }
    if (r < 0.55) return frame(0, this.rnd() < 0.3 ? 1 : 0, this.someId(), Buffer.alloc(this.pick(3000), 0x61));
    if (r < 0.65) return frame(8, 0, this.rnd() < 0.3 ? 0 : this.someId(), u32(1 + this.pick(70_000)));
    if (r < 0.72) return frame(3, 0, this.someId(), u32(this.pick(14)));
    if (r < 0.8) return frame(6, this.rnd() < 0.2 ? 1 : 0, 0, Buffer.alloc(8, this.pick(256)));
    if (r < 0.88) {
      const settingsChoices: [number, number][] = [[1, this.pick(8192)], [3, this.pick(200)], [4, this.pick(200_000)], [5, 16_384 + this.pick(100_000)], [6, this.pick(100_000)], [2, 0]];
      return settings([settingsChoices[this.pick(settingsChoices.length)]!]);
    }
    if (r < 0.95) return frame(2, 0, this.someId(), Buffer.from([0, 0, 0, this.pick(20), this.pick(256)]));
    return frame(this.pick(256), 0, this.someId(), Buffer.alloc(this.pick(50)));
  }
}

function answer(_s: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean): void {
  stream.respond(200, null, false);
  stream.write(Buffer.from(head.path));
  if (endStream) stream.end(null);
  else {
    const rec = new StreamRecorder();
    rec.onDataHook = (st, chunk) => st.write(chunk);
    stream.owner = {
      onHead() {},
      onData: (st, chunk) => rec.onData(st, chunk),
      onEnd: (st) => st.end(null),
      onReset() {},
      onDrain() {},
    };
  }
}

describe('H2Session fuzz (seeded)', () => {
  it('server role: 150 connections of random frames never end with INTERNAL_ERROR; the server serves on', async () => {
    const srv = await listenH2(answer);
    cleanups.push(() => {
      for (const s of srv.sessions) s.destroy();
      srv.server.close();
    });
    for (let seed = 1; seed <= 150; seed++) {
      const rnd = seeded(seed);
      const socket = net.connect(srv.port, '127.0.0.1');
      socket.on('error', () => {});
      socket.on('data', () => {});
      await new Promise<void>((r) => socket.once('connect', () => r()));
      const parts: Buffer[] = [PREFACE, settings([])];
      const gen = new FrameGen(rnd, 1, () => (rnd() < 0.85 ? requestBlock('x', `/${seed}`, rnd() < 0.5 ? 'GET' : 'POST', rnd() < 0.2 ? [['content-length', String(Math.floor(rnd() * 3000))]] : []) : headerBlock([['x-a', 'b']])));
      const n = 5 + Math.floor(rnd() * 80);
      for (let i = 0; i < n; i++) parts.push(gen.next());
      socket.write(Buffer.concat(parts));
      await sleep(15);
      socket.destroy();
    }
    await sleep(200);
    const codes = srv.recorders.map((r) => r.close?.sentGoawayCode ?? -3);
    expect(codes.filter((c) => c === H2Error.INTERNAL_ERROR)).toEqual([]);
    expect(srv.recorders.length).toBe(150);
    // Still serving.
    const ok = new SessionRecorder();
    const client = new H2Session(net.connect(srv.port, '127.0.0.1'), 'client', TEST_OPTIONS, ok);
    cleanups.push(() => client.destroy());
    await ok.settled;
    const rec = new StreamRecorder();
    client.request('GET', 'http', 'x', '/alive', newHeaderMap(), true, rec);
    await rec.done;
    expect(rec.body.toString()).toBe('/alive');
  });

  it('client role: 150 random servers never end our session with INTERNAL_ERROR', async () => {
    let seed = 0;
    const server = net.createServer((sock) => {
      const rnd = seeded(1000 + seed);
      sock.on('error', () => {});
      sock.on('data', () => {});
      const parts: Buffer[] = [settings([])];
      // Answers on our stream ids (1, 3, 5, 7): the generator's "next id" walks the client's odd ids.
      const gen = new FrameGen(rnd, 1, () => (rnd() < 0.7 ? headerBlock([[':status', String(100 + Math.floor(rnd() * 500))]]) : headerBlock([['grpc-status', '0']])));
      const n = 5 + Math.floor(rnd() * 80);
      for (let i = 0; i < n; i++) parts.push(gen.next());
      sock.write(Buffer.concat(parts));
      setTimeout(() => sock.destroy(), 15);
    });
    server.on('error', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => server.close());
    const port = (server.address() as AddressInfo).port;
    const closes: number[] = [];
    for (seed = 1; seed <= 150; seed++) {
      const rec = new SessionRecorder();
      const session = new H2Session(net.connect(port, '127.0.0.1'), 'client', TEST_OPTIONS, rec);
      for (let i = 0; i < 4 && session.canOpen; i++) session.request('GET', 'http', 'x', '/', newHeaderMap(), i % 2 === 0, new StreamRecorder());
      await Promise.race([rec.closed, sleep(1500)]);
      closes.push(rec.close?.sentGoawayCode ?? -3);
      session.destroy();
    }
    expect(closes.filter((c) => c === H2Error.INTERNAL_ERROR)).toEqual([]);
    expect(closes.filter((c) => c === -3)).toEqual([]); // every session ended (the server closed each socket)
  });
});
