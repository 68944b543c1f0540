import { afterEach, describe, expect, it, vi } from 'vitest';
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
});
