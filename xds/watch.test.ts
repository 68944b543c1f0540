// ConfigWatcher: a settled edit whose handler throws is reported through onWatchError; before, it was an unhandled
// rejection, which ends `pillion control`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigWatcher } from './watch.js';

describe('ConfigWatcher', () => {
  it('reports an onChange that throws through onWatchError, and keeps watching', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pillion-watch-'));
    const file = join(dir, 'mesh.yaml');
    writeFileSync(file, 'services: []\n');
    const errors: Error[] = [];
    let changes = 0;
    const watcher = new ConfigWatcher({
      file,
      debounceMs: 20,
      initialText: 'services: []\n',
      onChange: () => {
        changes++;
        throw new Error(`apply failed ${changes}`);
      },
      onWatchError: (err) => errors.push(err),
    });
    watcher.start();
    try {
      writeFileSync(file, 'services: [] # one\n');
      for (let i = 0; i < 100 && errors.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      writeFileSync(file, 'services: [] # two\n');
      for (let i = 0; i < 100 && errors.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(errors.map((e) => e.message)).toEqual(['apply failed 1', 'apply failed 2']);
    } finally {
      watcher.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
