// RFC 9113 §6.5.3: a peer that never acknowledges our SETTINGS gets GOAWAY SETTINGS_TIMEOUT, in both roles. Real
// sockets on 127.0.0.1; the bound is shortened through H2SessionOptions.settingsTimeoutMs (default 10 s).
import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { H2Error } from './errors.js';
import { connectH2, listenH2, TEST_OPTIONS } from '../../test/helpers/h2-peers.js';
import { FrameReader, PREFACE, RawH2Client, settings, sleep, T, type Frame } from '../../test/abuse/util.js';

const SHORT = { ...TEST_OPTIONS, settingsTimeoutMs: 300 };
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(): Promise<Awaited<ReturnType<typeof listenH2>>> {
  const srv = await listenH2((_s, stream) => stream.respond(200, null, true), SHORT);
  cleanups.push(() => {
    for (const s of srv.sessions) s.destroy();
    return new Promise<void>((r) => srv.server.close(() => r()));
  });
  return srv;
}

describe('SETTINGS ACK timeout', () => {
  it('server role: a client that never ACKs our SETTINGS gets GOAWAY SETTINGS_TIMEOUT', async () => {
    const srv = await server();
    const c = new RawH2Client(srv.port);
    c.ackSettings = false;
    cleanups.push(() => c.destroy());
    const started = Date.now();
    expect(await c.refused(3000)).toBe(true);
    expect(c.goaway?.code).toBe(H2Error.SETTINGS_TIMEOUT);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    await srv.recorders[0]!.closed;
    expect(srv.recorders[0]!.close?.sentGoawayCode).toBe(H2Error.SETTINGS_TIMEOUT);
  });

  it('server role: a client that ACKs is served on past the bound', async () => {
    const srv = await server();
    const c = new RawH2Client(srv.port);
    cleanups.push(() => c.destroy());
    await sleep(700);
    expect(c.goaway).toBeNull();
    expect(c.closed).toBe(false);
  });

  it('client role: a server that never ACKs our SETTINGS gets GOAWAY SETTINGS_TIMEOUT', async () => {
    const goaways: number[] = [];
    const sockets: net.Socket[] = [];
    const mute = net.createServer((socket) => {
      sockets.push(socket);
      socket.on('error', () => {});
      socket.write(settings());
      const reader = new FrameReader((f: Frame) => {
        if (f.type === T.GOAWAY) goaways.push(f.payload.readUInt32BE(4));
      }, PREFACE.length);
      socket.on('data', (d: Buffer) => reader.push(d));
    });
    mute.on('error', () => {});
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((r) => mute.close(() => r()));
    });
    const { rec } = await connectH2((mute.address() as net.AddressInfo).port, SHORT);
    await Promise.race([rec.closed, sleep(3000)]);
    expect(rec.close?.sentGoawayCode).toBe(H2Error.SETTINGS_TIMEOUT);
    for (let i = 0; i < 100 && goaways.length === 0; i++) await sleep(10);
    expect(goaways).toEqual([H2Error.SETTINGS_TIMEOUT]);
  });
});
