import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { newRequestId } from './request-id.js';

describe('newRequestId', () => {
  it('makes distinct version 4 UUIDs, across batch refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const id = newRequestId();
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(id);
    }
    expect(seen.size).toBe(1000);
  });

  it('an id kept for long does not keep the ids made with it in memory', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage().heapUsed;
    // One id kept out of every 128 made (a long-lived stream's, among short requests).
    const kept: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      kept.push(newRequestId());
      for (let j = 0; j < 127; j++) newRequestId();
    }
    gc();
    const grew = process.memoryUsage().heapUsed - before;
    expect(new Set(kept).size).toBe(10_000);
    // Each slice pins its parent string: one string per 128 ids made this 4.6 KB an id (45 MiB here).
    expect(grew).toBeLessThan(10_000 * 1024);
  });
});
