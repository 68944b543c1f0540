// Over its fd limit (prlimit lowered it below the fds the proxy already holds), libuv cannot open its spare fd
// again, and retries accept() → EMFILE on every loop turn while a connection waits, with no error reaching
// JavaScript: before src/listener/accept-pause.ts the proxy burnt a whole CPU for as long as that lasted. Now the
// listeners close their listening sockets when the spare is gone and listen again after a pause.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as net from 'node:net';
import { settle, useAbuseSidecar } from './sidecar.js';

const setup = useAbuseSidecar();

/**
 * A limit no new fd can be under, libuv's spare included: RLIMIT_NOFILE bounds fd numbers, so it must be at most
 * the lowest free number, and at most the spare's number (libuv's spare is a read-only /dev/null or /, above
 * stdio) so that closing the spare frees nothing under the limit either. Then libuv cannot shed the connection and
 * loses its spare, whatever the fd layout of the process.
 */
function limitUnderReserve(pid: number): number {
  const fds = new Set(readdirSync(`/proc/${pid}/fd`).map(Number));
  let lowestFree = 0;
  while (fds.has(lowestFree)) lowestFree++;
  let spare = Infinity;
  for (const fd of fds) {
    if (fd <= 2) continue;
    const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    if (target === '/dev/null' || target === '/') spare = Math.min(spare, fd);
  }
  return Math.min(lowestFree, spare);
}

/** utime + stime of the process, in clock ticks (100 a second here). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** A keep-alive connection that sends one GET per ask and resolves with the status line (or '' after `ms`). */
class KeepAliveClient {
  private readonly socket: net.Socket;
  private received = '';
  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    this.socket.on('data', (chunk: Buffer) => (this.received += chunk.toString('latin1')));
  }
  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.once('connect', () => resolve());
      this.socket.once('close', () => reject(new Error('the keep-alive client could not connect')));
    });
  }
  async get(ms: number): Promise<string> {
    this.received = '';
    this.socket.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n');
    for (let waited = 0; waited < ms; waited += 20) {
      const end = this.received.indexOf('\r\n');
      if (end > 0) return this.received.slice(0, 12);
      await settle(20);
    }
    return '';
  }
  close(): void {
    this.socket.destroy();
  }
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    socket.on('connect', () => {
      socket.write('GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n\r\n');
    });
    let got = '';
    socket.on('data', (chunk: Buffer) => (got += chunk.toString('latin1')));
    socket.on('close', () => resolve(got.slice(0, 12) || 'closed'));
  });
}

describe('a sidecar pushed over its fd limit', () => {
  it('stops accepting instead of spinning, answers on connections it has, and accepts again once fds are back', async () => {
    const pid = setup.sidecar.proc.child.pid!;
    const client = new KeepAliveClient(setup.sidecar.outbound);
    await client.ready();
    expect(await client.get(5_000)).toBe('HTTP/1.1 200');
    const original = execFileSync('prlimit', [`--pid=${pid}`, '--nofile', '--raw', '--noheadings', '--output=SOFT,HARD']).toString().trim().split(/\s+/);
    const below = limitUnderReserve(pid);
    execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${below}:${original[1]}`]);
    try {
      // The accept that meets EMFILE: libuv's spare fd is closed and cannot be opened again.
      const outcomes = await Promise.all([connectOutcome(setup.sidecar.outbound), connectOutcome(setup.sidecar.outbound)]);
      expect(outcomes).not.toContain('HTTP/1.1 200');
      await settle(300);
      // The connection it already had is answered (200 on the pooled upstream connection, or 503 when a new
      // upstream connection needs an fd), and it is not burning a CPU.
      const before = cpuTicks(pid);
      const status = await client.get(3_000);
      expect(status, 'no answer on an open connection: the event loop is wedged').toMatch(/^HTTP\/1\.1 (200|503)$/);
      await settle(1_000);
      // ~1 tick with the pause; a spinning proxy takes 50 - 100 even on a loaded machine.
      expect(cpuTicks(pid) - before, 'CPU ticks over ~1 s at the limit (100 = a whole core)').toBeLessThan(25);
      expect(setup.sidecar.alive(), `sidecar exited; stderr: ${setup.sidecar.proc.stderr}`).toBe(true);
    } finally {
      execFileSync('prlimit', [`--pid=${pid}`, `--nofile=${original[0]}:${original[1]}`]);
      client.close();
    }
    // It listens again (the pause is at most 4 s) on the same port.
    let outcome = '';
    for (let waited = 0; waited < 10_000 && outcome !== 'HTTP/1.1 200'; waited += 250) {
      outcome = await connectOutcome(setup.sidecar.outbound);
      if (outcome !== 'HTTP/1.1 200') await settle(250);
    }
    expect(outcome).toBe('HTTP/1.1 200');
    expect(await setup.sidecar.metric('pillion_listener_accept_pauses_total', 'listener="outbound"')).toBeGreaterThanOrEqual(1);
  });
});
