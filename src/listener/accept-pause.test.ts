// AcceptPause on real listening sockets: a pause closes the socket and listens again on the same port; a server
// that never listened (a bind that failed, a listener that binds no port) is never listened by it.
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AcceptPause } from './accept-pause.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

describe('AcceptPause', () => {
  it('closes a listening socket and listens again on the same port, telling its owner the pause', async () => {
    const server = net.createServer((s) => s.end('up'));
    server.on('error', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const pauses: number[] = [];
    const pause = new AcceptPause(server, () => ({ host: '127.0.0.1', port }), { acceptPaused: (ms) => pauses.push(ms) });
    cleanups.push(() => {
      pause.stop();
      server.close();
    });
    pause.pause();
    expect(server.listening).toBe(false);
    expect(pauses).toEqual([250]);
    for (let waited = 0; !server.listening && waited < 2_000; waited += 25) await sleep(25);
    expect((server.address() as net.AddressInfo).port).toBe(port);
  });

  it('never listens a server that was not listening, and nothing after stop()', async () => {
    const idle = net.createServer();
    const idlePause = new AcceptPause(idle, () => ({ host: '127.0.0.1', port: 0 }));
    idlePause.pause();
    const server = net.createServer();
    server.on('error', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const stopped = new AcceptPause(server, () => ({ host: '127.0.0.1', port }));
    stopped.pause();
    stopped.stop();
    cleanups.push(() => {
      idlePause.stop();
      idle.close();
      server.close();
    });
    await sleep(500);
    expect(idle.listening).toBe(false);
    expect(server.listening).toBe(false);
  });
});
