// Access log: one JSON line per entry with type "access", file and stream targets, and "off" as a no-op.
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AccessLog, formatResponseFlags, type AccessLogEntry } from './access-log.js';

function entry(over: Partial<AccessLogEntry> = {}): AccessLogEntry {
  return {
    start_time: '2025-01-01T00:00:00.000Z',
    duration_ms: 12.5,
    protocol: 'HTTP/1.1',
    method: 'GET',
    authority: 'backend:8080',
    path: '/api',
    status: 200,
    bytes_received: 10,
    bytes_sent: 20,
    upstream_cluster: 'backend.default:8080',
    upstream_host: '10.0.0.1:8080',
    attempts: 1,
    response_flags: '-',
    request_id: 'abc',
    downstream_remote: '127.0.0.1:5555',
    ...over,
  };
}

describe('AccessLog', () => {
  it('writes one JSON line per entry to a file, tagged type=access', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pillion-al-')), 'sub', 'access.log');
    const log = new AccessLog(file);
    expect(log.enabled).toBe(true);
    log.log(entry());
    log.log(entry({ status: 503, response_flags: 'UH', x_pillion_reason: 'no_healthy_upstream', protocol: 'HTTP/2' }));
    // Non-ASCII (latin1 header bytes, an astral character): encoded as UTF-8 into the batch, byte for byte.
    log.log(entry({ path: '/caf\u00e9/\ud83d\ude00', authority: 'h\u00ffst' }));
    await log.close();
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ path: '/caf\u00e9/\ud83d\ude00', authority: 'h\u00ffst' });
    expect(lines[0]).toEqual({ type: 'access', ...entry() });
    expect(lines[1]).toMatchObject({ type: 'access', status: 503, response_flags: 'UH', x_pillion_reason: 'no_healthy_upstream' });
    expect(lines[0]).not.toHaveProperty('level');
    expect(lines[0]).not.toHaveProperty('time');
  });

  it('writes batched lines within a fraction of a second, without waiting for close', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pillion-al-')), 'access.log');
    const log = new AccessLog(file);
    for (let i = 0; i < 3; i++) log.log(entry({ request_id: String(i) }));
    const deadline = Date.now() + 2_000;
    let text = '';
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
      text = existsSync(file) ? readFileSync(file, 'utf8') : '';
      if (text.split('\n').length > 3) break;
    }
    expect(text.trim().split('\n').map((l) => (JSON.parse(l) as { request_id: string }).request_id)).toEqual(['0', '1', '2']);
    await log.close();
  });

  it('writes the lines of a batch when the process exits without closing the log', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'pillion-al-')), 'access.log');
    const mod = new URL('./access-log.js', import.meta.url).href.replace(/\.ts$/, '.js');
    // The compiled module (dist/) when this runs from source under vitest: the child is plain node.
    const compiled = mod.replace('/src/observability/', '/dist/src/observability/');
    const script = `const { AccessLog } = await import(${JSON.stringify(existsSync(new URL(compiled)) ? compiled : mod)});
      const log = new AccessLog(${JSON.stringify(file)});
      await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 5; i++) log.log(${JSON.stringify(entry())});
      process.exit(0);`;
    execFileSync(process.execPath, ['--input-type=module', '-e', script]);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(5);
  });

  it('writes to a given stream', () => {
    const out: string[] = [];
    const log = new AccessLog('stdout', { stream: { write: (s: string) => void out.push(s) } });
    log.log(entry({ protocol: 'TCP', method: '', path: '', status: 0 }));
    expect(out).toHaveLength(1);
    expect(out[0]!.endsWith('\n')).toBe(true);
    expect(JSON.parse(out[0]!)).toMatchObject({ type: 'access', protocol: 'TCP' });
  });

  it('holds at most its bound for a file target nobody reads, dropping and counting whole lines', async () => {
    // A FIFO is a file target whose reader is as slow as we like: here, absent until every line was logged.
    const fifo = join(mkdtempSync(join(tmpdir(), 'pillion-al-')), 'access.fifo');
    execFileSync('mkfifo', [fifo]);
    // Opening either end of a FIFO waits for the other (both in Node's thread pool); nothing is read yet.
    const reader = createReadStream(fifo);
    let drops = 0;
    const bound = 64 * 1024;
    const log = new AccessLog(fifo, { maxBufferBytes: bound, onDrop: (n) => (drops = n) });
    const path = '/' + 'p'.repeat(1000);
    const total = 2000;
    for (let i = 0; i < total; i++) log.log(entry({ path, request_id: String(i) }));
    expect(drops).toBeGreaterThan(0);
    expect(log.dropped).toBe(drops);

    const chunks: Buffer[] = [];
    reader.on('data', (c) => chunks.push(c as Buffer));
    const ended = new Promise<void>((resolve) => reader.once('end', () => resolve()));
    await log.close();
    await ended;
    const text = Buffer.concat(chunks).toString();
    expect(text.length).toBeLessThanOrEqual(bound);
    const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.length + drops).toBe(total);
    // The lines kept are the first ones, whole and in order.
    expect(lines.map((l) => l.request_id)).toEqual(lines.map((_l, i) => String(i)));
    expect(lines.every((l) => l.path === path)).toBe(true);
  });

  it('reports each line of a batch the destination dropped whole to onDrop, one call a line', async () => {
    const fifo = join(mkdtempSync(join(tmpdir(), 'pillion-al-')), 'access.fifo');
    execFileSync('mkfifo', [fifo]);
    const reader = createReadStream(fifo);
    const calls: number[] = [];
    const log = new AccessLog(fifo, { maxBufferBytes: 64 * 1024, onDrop: (n) => calls.push(n) });
    // ~40 KiB held by the destination (nothing is read yet), then two lines of ~10 K characters but ~30 KiB of
    // UTF-8 each: within the bound as counted per line, one batch the destination's own bound refuses whole.
    log.log(entry({ path: '/' + 'a'.repeat(40_000), request_id: 'kept' }));
    log.log(entry({ path: '/' + '\u20ac'.repeat(10_000), request_id: 'd1' }));
    log.log(entry({ path: '/' + '\u20ac'.repeat(10_000), request_id: 'd2' }));
    expect(calls).toEqual([1, 2]);
    expect(log.dropped).toBe(2);
    const chunks: Buffer[] = [];
    reader.on('data', (c) => chunks.push(c as Buffer));
    const ended = new Promise<void>((resolve) => reader.once('end', () => resolve()));
    await log.close();
    await ended;
    const lines = Buffer.concat(chunks).toString().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.request_id)).toEqual(['kept']);
  });

  it('is a no-op when off', async () => {
    const log = new AccessLog('off');
    expect(log.enabled).toBe(false);
    log.log(entry());
    await log.close();
  });

  it('formats response flags', () => {
    expect(formatResponseFlags([])).toBe('-');
    expect(formatResponseFlags(['UF'])).toBe('UF');
    expect(formatResponseFlags(['UF', 'URX'])).toBe('UF,URX');
  });
});
