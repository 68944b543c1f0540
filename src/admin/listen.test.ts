// listenAdmin: the admin server outlives an accept error (EMFILE at the fd limit), which would otherwise be an
// unhandled 'error' event on the server and end the process.
import { createServer } from 'node:http';
import { describe, expect, it } from 'vitest';
import { listenAdmin } from './listen.js';

describe('listenAdmin', () => {
  it('survives an accept error and keeps answering', async () => {
    const server = createServer((_req, res) => res.end('up'));
    const listening = await listenAdmin(server, '127.0.0.1', 0);
    try {
      const emfile = Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
      expect(() => server.emit('error', emfile)).not.toThrow();
      expect(await (await fetch(`http://127.0.0.1:${listening.port}/`)).text()).toBe('up');
    } finally {
      await listening.close();
    }
  });
});
