import { afterEach, describe, expect, it, vi } from 'vitest';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import { IdleMemoryReleaser, loadNativeMemory } from './idle-memory.js';

const MiB = 1 << 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('IdleMemoryReleaser', () => {
  let releaser: IdleMemoryReleaser | undefined;
  afterEach(() => releaser?.stop());

  it('the native helper is built by npm install', () => {
    const native = loadNativeMemory();
    expect(native).toBeDefined();
    expect(typeof native!.trimMalloc()).toBe('boolean');
  });

  it('returns freed Buffer memory to the kernel once the event loop is idle', async () => {
    const native = loadNativeMemory()!;
    releaser = new IdleMemoryReleaser({ logger: pino({ level: 'silent' }), native, periodMs: 200, idleUtilization: 0.5 });
    releaser.start();
    // 64 KiB Buffers, like socket reads: malloc'd below the mmap threshold, so freeing them alone returns
    // nothing to the kernel while the last one, still alive, pins the top of the heap.
    let chunks: Buffer[] = [];
    for (let i = 0; i < 800; i++) chunks.push(Buffer.alloc(64 * 1024, i & 0xff));
    const pinned = chunks[chunks.length - 1]!;
    const peak = process.memoryUsage.rss();
    chunks = [];

    let rss = peak;
    for (let waited = 0; waited < 8000 && !(releaser.releases > 0 && rss < peak - 30 * MiB); waited += 100) {
      await sleep(100);
      rss = process.memoryUsage.rss();
    }
    expect(pinned[0]).toBe(799 & 0xff);
    expect(releaser.releases).toBeGreaterThan(0);
    expect((peak - rss) / MiB).toBeGreaterThan(30);
  });

  it("lets go of the Node binary's pages startup touched, and the process runs on (they come back from the page cache)", async () => {
    // In a child: a process whose executable pages vanished would crash, and vitest's own should not be the test.
    const addon = fileURLToPath(new URL('../native/build/Release/pillion_native.node', import.meta.url));
    const script = `
      const { readFileSync } = require('node:fs');
      const fileKiB = () => Number(/RssFile:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]);
      require('node:http'); require('node:tls'); require('node:crypto').generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const before = fileKiB();
      const released = require(${JSON.stringify(addon)}).releaseProgramPages();
      const after = fileKiB();
      const http = require('node:http');
      const server = http.createServer((req, res) => res.end('served after the release'));
      server.listen(0, '127.0.0.1', () => {
        http.get({ port: server.address().port, host: '127.0.0.1' }, (res) => {
          let body = '';
          res.on('data', (c) => (body += c)).on('end', () => {
            server.close();
            console.log(JSON.stringify({ before, after, released, body, again: fileKiB() }));
          });
        });
      });`;
    const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { timeout: 20_000 });
    const r = JSON.parse(stdout) as { before: number; after: number; released: number; body: string; again: number };
    expect(r.released / MiB).toBeGreaterThan(20);
    expect((r.before - r.after) / 1024).toBeGreaterThan(10);
    expect(r.body).toBe('served after the release');
    // What the HTTP exchange ran came back, and only that.
    expect(r.again).toBeGreaterThan(r.after);
    expect(r.again).toBeLessThan(r.before);
  });

  it('keeps going when resident memory cannot be read (out of file descriptors), and warns once', async () => {
    const lines: { msg: string }[] = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) });
    const emfile = Object.assign(new Error('EMFILE: too many open files, uv_resident_set_memory'), { code: 'EMFILE' });
    const rss = vi.spyOn(process.memoryUsage, 'rss').mockImplementation(() => {
      throw emfile;
    });
    try {
      releaser = new IdleMemoryReleaser({ logger, native: loadNativeMemory()!, periodMs: 20, idleUtilization: 1 });
      releaser.start();
      await sleep(150);
      expect(releaser.readErrors).toBeGreaterThan(2);
      expect(lines.filter((l) => l.msg.startsWith('idle memory release: cannot read resident memory'))).toHaveLength(1);
    } finally {
      rss.mockRestore();
    }
    const errors = releaser.readErrors;
    await sleep(100);
    expect(releaser.readErrors).toBe(errors);
  });

  it('trims after two idle periods in a row, and starts the GC only once the quiet lasts gcIdlePeriods', async () => {
    // The GC makes the next burst dearer; what is measured here is only when each step runs (native calls counted).
    // minGrowthBytes 0: every idle period from the second on trims, so trims count the idle periods before the GC.
    let gcs = 0;
    let trims = 0;
    let trimsAtFirstGc = -1;
    const native = {
      startGarbageCollection: () => {
        if (gcs++ === 0) trimsAtFirstGc = trims;
      },
      trimMalloc: () => {
        trims++;
        return true;
      },
      releaseProgramPages: () => 0,
    };
    releaser = new IdleMemoryReleaser({ logger: pino({ level: 'silent' }), native, periodMs: 200, idleUtilization: 0.5, minGrowthBytes: 0, gcIdlePeriods: 5 });
    releaser.start();
    const busyUntil = performance.now() + 250; // a busy period: the first sample after it resets the count
    while (performance.now() < busyUntil);
    await sleep(300); // at most one idle period sampled since
    expect(trims).toBe(0);
    expect(gcs).toBe(0);
    for (let waited = 0; waited < 6000 && gcs === 0; waited += 50) await sleep(50);
    expect(gcs).toBe(1);
    // Idle periods 2, 3 and 4 trimmed (and let the binary's pages go) without a GC; the 5th started it (more trims
    // if a loaded machine made a period busy and restarted the count).
    expect(trimsAtFirstGc).toBeGreaterThanOrEqual(3);
    expect(releaser.releases).toBeGreaterThanOrEqual(3);
  });
});
