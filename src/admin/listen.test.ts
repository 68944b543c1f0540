// listenAdmin: the admin server outlives an accept error (EMFILE at the fd limit), which would otherwise be an
// unhandled 'error' event on the server and end the process, and stops accepting for a moment rather than let
// libuv retry accept() in a loop (see src/listener/accept-pause.ts). test/abuse/fd-limit.test.ts has the real one.
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { listenAdmin } from './listen.js';

describe('listenAdmin', () => {
  it('survives an accept error, pauses accepting on EMFILE, and answers again on the same port', async () => {
    const server = createServer((_req, res) => res.end('up'));
    const listening = await listenAdmin(server, '127.0.0.1', 0);
    try {
      const aborted = Object.assign(new Error('accept ECONNABORTED'), { code: 'ECONNABORTED', syscall: 'accept' });
      expect(() => server.emit('error', aborted)).not.toThrow();
      expect(server.listening).toBe(true);
      const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
      expect(() => server.emit('error', emfile)).not.toThrow();
      expect(server.listening).toBe(false);
      for (let waited = 0; !server.listening && waited < 2_000; waited += 25) await new Promise((r) => setTimeout(r, 25));
      expect(server.listening).toBe(true);
      expect(await (await fetch(`http://127.0.0.1:${listening.port}/`)).text()).toBe('up');
    } finally {
      await listening.close();
    }
  });
});
