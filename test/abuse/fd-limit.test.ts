// Issue 13: running out of file descriptors must not kill the sidecar. A real `pillion proxy` (idle-memory release
// on, the default) gets a low fd limit (prlimit on its pid); clients then open more connections than it has fds
// and keep them open for 3 s, long enough for every once-a-second timer to run at the limit. The idle-memory
// releaser's process.memoryUsage.rss() reads /proc/self/stat, which needs an fd: it threw EMFILE uncaught and the
// process died. At the limit a /metrics scrape (prom-client reads /proc too) must answer, and once the clients
// go, a normal request is served. (libuv sheds connections past the limit itself: it accepts and closes them with
// a reserved fd, so no 'error' reaches a server here; src/admin/listen.test.ts covers one that does.)
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import * as net from 'node:net';
import { request } from '../helpers/client.js';
import { settle, useAbuseSidecar } from './sidecar.js';

const setup = useAbuseSidecar();

const openFds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/**
 * Drops one client so the proxy has one fd to spare, then makes `attempt`. A connection the proxy accepts and closes
 * at once (the fd was not free yet on a loaded machine, or a once-a-second timer held it for that moment) hangs up:
 * then one more client goes and it tries again, three times at most. A dead proxy fails every try.
 */
async function withOneFdFree<T>(clients: net.Socket[], attempt: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    clients.find((c) => !c.destroyed)!.destroy();
    await settle(200);
    try {
      return await attempt();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (tries === 3 || (code !== 'ECONNRESET' && (err as Error).message !== 'socket hang up')) throw err;
    }
  }
}

/** Opens a connection and resolves once it is connected or failed; errors (resets by the proxy) are expected. */
function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.once('connect', () => resolve(socket));
    socket.once('close', () => resolve(socket));
  });
}

describe('a setup.sidecar at its file-descriptor limit', () => {
  it('stays up while clients hold every fd, answers /metrics at the limit, and serves once they go', async () => {
    const pid = setup.sidecar.proc.child.pid!;
    expect(await setup.sidecar.get()).toBe(200);
    const limit = openFds(pid) + 12;
    execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${limit}:${limit}`]);

    const clients: net.Socket[] = [];
    try {
      for (let i = 0; i < 40; i++) clients.push(await connect(setup.sidecar.outbound));
      // The proxy holds all it can; libuv accepts and closes the rest (its reserved-fd trick).
      await settle(200);
      expect(openFds(pid)).toBeGreaterThanOrEqual(limit - 1);
      // Several ticks of every once-a-second timer (idle-memory release, metrics, date header) at the limit, and
      // at least the one where the idle-memory release reads the resident memory and cannot (it skips busy seconds
      // and seconds that finish a release, so on a loaded machine that may take longer than 3 s).
      await settle(3_000);
      const warned = (): boolean => setup.sidecar.proc.lines.some((l) => l.msg === IDLE_MEMORY_WARNING);
      for (let waited = 0; !warned() && waited < 10_000; waited += 100) await settle(100);
      expect(warned(), 'the idle-memory release met EMFILE at the limit').toBe(true);
      expect(setup.sidecar.alive(), `sidecar exited; stderr: ${setup.sidecar.proc.stderr}`).toBe(true);

      // One connection goes: its fd is the one the scrape's connection takes, so collecting /metrics runs with
      // no fd to spare (process_open_fds and process_resident_memory_bytes read /proc).
      const scrape = await withOneFdFree(clients, () => request(setup.sidecar.admin, { path: '/metrics' }));
      expect(scrape.status).toBe(200);
      expect(scrape.body).toContain('pillion_downstream_connections_active');
      expect(setup.sidecar.alive(), `sidecar exited; stderr: ${setup.sidecar.proc.stderr}`).toBe(true);

      // Likewise a proxied request with no fd to spare: the pooled upstream connection if it is still open (200),
      // else the upstream connect fails with EMFILE and the proxy answers for itself (503 connect_failure).
      expect([200, 503]).toContain(await withOneFdFree(clients, () => setup.sidecar.get()));
      expect(setup.sidecar.alive(), `sidecar exited; stderr: ${setup.sidecar.proc.stderr}`).toBe(true);
    } finally {
      for (const c of clients) c.destroy();
    }
    await settle(300);
    expect(setup.sidecar.alive(), `sidecar exited; stderr: ${setup.sidecar.proc.stderr}`).toBe(true);
    expect(await setup.sidecar.get()).toBe(200);
    // It said so, once, on its log.
    expect(setup.sidecar.proc.lines.filter((l) => l.msg === IDLE_MEMORY_WARNING)).toHaveLength(1);
  });
});

const IDLE_MEMORY_WARNING = 'idle memory release: cannot read resident memory (will retry each second)';
