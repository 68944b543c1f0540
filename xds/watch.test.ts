// ConfigWatcher: a settled edit whose handler throws is reported through onWatchError; before, it was an unhandled
// rejection, which ends `pillion control`. A Kubernetes ConfigMap update (an atomic rename of the `..data`
// symlink, the file itself never touched) is seen.
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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

  it('sees a ConfigMap volume update: mesh.yaml -> ..data/mesh.yaml, and ..data renamed to a new directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pillion-watch-cm-'));
    // The kubelet's atomic writer: timestamped directories, ..data linking to the current one, each key a link.
    mkdirSync(join(dir, '..2026_v1'));
    writeFileSync(join(dir, '..2026_v1', 'mesh.yaml'), 'services: []\n');
    symlinkSync('..2026_v1', join(dir, '..data'));
    symlinkSync('..data/mesh.yaml', join(dir, 'mesh.yaml'));
    const seen: string[] = [];
    const watcher = new ConfigWatcher({
      file: join(dir, 'mesh.yaml'),
      debounceMs: 20,
      initialText: 'services: []\n',
      onChange: (result) => {
        if (result.ok) seen.push(result.text);
      },
    });
    watcher.start();
    try {
      mkdirSync(join(dir, '..2026_v2'));
      writeFileSync(join(dir, '..2026_v2', 'mesh.yaml'), 'services: [] # v2\n');
      symlinkSync('..2026_v2', join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
      for (let i = 0; i < 100 && seen.length < 1; i++) await new Promise((r) => setTimeout(r, 20));
      expect(seen).toEqual(['services: [] # v2\n']);
    } finally {
      watcher.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
