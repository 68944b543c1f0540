import { PassThrough, type Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ReplayableBody } from './replay-body.js';

function collect(body: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    body.on('data', (c: Buffer) => chunks.push(c));
    body.on('end', () => resolve(Buffer.concat(chunks).toString()));
    body.on('error', reject);
  });
}

describe('ReplayableBody', () => {
  it('gives a second attempt the whole body: what was held, then the rest as it arrives', async () => {
    const source = new PassThrough();
    const replay = new ReplayableBody(source, 1024);
    const first = replay.open()!;
    const firstChunks: string[] = [];
    first.on('data', (c: Buffer) => firstChunks.push(c.toString()));
    source.write('abc');
    await new Promise((r) => setImmediate(r));
    expect(firstChunks.join('')).toBe('abc');
    // The first attempt fails mid-body; the second gets it all.
    replay.detach();
    const second = replay.open()!;
    const done = collect(second);
    source.write('def');
    source.end('ghi');
    expect(await done).toBe('abcdefghi');
    expect(replay.received).toBe(9);
  });

  it('once the body outgrows the limit, the attempt in flight still gets all of it but no other attempt can', async () => {
    const source = new PassThrough();
    const replay = new ReplayableBody(source, 4);
    const first = replay.open()!;
    const done = collect(first);
    source.write('12345');
    source.end('678');
    expect(await done).toBe('12345678');
    expect(replay.replayable).toBe(false);
    expect(replay.open()).toBeNull();
  });

  it('holds the client while no attempt is in flight (between attempts)', async () => {
    const source = new PassThrough();
    const replay = new ReplayableBody(source, 1 << 20);
    replay.open();
    replay.detach();
    expect(source.isPaused()).toBe(true);
    source.end('late');
    const next = replay.open()!;
    expect(await collect(next)).toBe('late');
  });
});
