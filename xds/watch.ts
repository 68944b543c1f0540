// Watches the mesh config file and reports each settled edit as a validated MeshConfig or a MeshConfigError.
import { lstatSync, watch, type FSWatcher } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { MESH_FILE_MAX_BYTES, MeshConfigError, meshFileTooLarge, parseMeshConfig, type MeshConfig } from './mesh-config.js';

export type ConfigLoadResult =
  | { readonly ok: true; readonly mesh: MeshConfig; readonly text: string }
  | { readonly ok: false; readonly error: MeshConfigError; readonly text?: string };

/** Parse and validate config text; never throws (pure apart from the error object). */
export function validateConfigText(text: string, file: string): ConfigLoadResult {
  try {
    return { ok: true, mesh: parseMeshConfig(text, file), text };
  } catch (err) {
    if (err instanceof MeshConfigError) return { ok: false, error: err, text };
    const error = new MeshConfigError(file, [{ path: '(file)', message: err instanceof Error ? err.message : String(err) }]);
    return { ok: false, error, text };
  }
}

/**
 * The file's text, or its size when it is over MESH_FILE_MAX_BYTES: the size is checked before reading, and the
 * read stops past the limit (the file may grow meanwhile, or be a pipe with no size).
 */
async function readBounded(file: string): Promise<{ text: string } | { tooLarge: number }> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    if (size > MESH_FILE_MAX_BYTES) return { tooLarge: size };
    // One read for a regular file (size + 1 sees the end); 64 KiB at a time for a pipe, whose size is 0.
    const buf = Buffer.allocUnsafe(size > 0 ? Math.min(size, MESH_FILE_MAX_BYTES) + 1 : 64 * 1024);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > MESH_FILE_MAX_BYTES) return { tooLarge: Math.max(size, total) };
      chunks.push(Buffer.from(buf.subarray(0, bytesRead)));
    }
    return { text: Buffer.concat(chunks, total).toString('utf8') };
  } finally {
    await fh.close();
  }
}

/** Read and validate the file; a read failure (missing, unreadable, too large) is a config error too. */
export async function loadConfigFile(file: string): Promise<ConfigLoadResult> {
  let read: { text: string } | { tooLarge: number };
  try {
    read = await readBounded(file);
  } catch (err) {
    const error = new MeshConfigError(file, [{ path: '(file)', message: `cannot read: ${(err as Error).message}` }]);
    return { ok: false, error };
  }
  // `text` stands for what was read, so the watcher reports this once and again only when the file changes.
  if ('tooLarge' in read) return { ok: false, error: meshFileTooLarge(file, read.tooLarge), text: `(${read.tooLarge} bytes, over the limit)` };
  return validateConfigText(read.text, file);
}

export interface ConfigWatcherOptions {
  readonly file: string;
  /** Quiet time after the last file event before the file is read (editors write in several steps). */
  readonly debounceMs: number;
  /** Called once per settled edit whose text differs from the last one reported; `detectedAt` is the first event's time (ms). */
  readonly onChange: (result: ConfigLoadResult, detectedAt: number) => void | Promise<void>;
  readonly onWatchError?: (err: Error) => void;
  /** Text already loaded at startup, so the first event that does not change it reports nothing. */
  readonly initialText?: string;
}

/**
 * Watches the file's directory rather than the file: editors that save by writing a new file and renaming it
 * over the old one (vim, many IDEs, `kubectl`'s ConfigMap symlink swap) replace the inode, and a watch on the
 * old inode would go silent. Events for other names in the directory are ignored, unless the file is a symlink:
 * a Kubernetes ConfigMap volume's `mesh.yaml` links to `..data/mesh.yaml`, and an update renames `..data` (the
 * event names `..data`, never `mesh.yaml`). A read whose text has not changed reports nothing, so the extra reads
 * that other names cause are harmless.
 */
export class ConfigWatcher {
  private readonly file: string;
  private readonly name: string;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private firstEventAt: number | undefined;
  private lastText: string | undefined;
  private closed = false;
  /** Serializes reads: a slow read never overtakes a later one. */
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: ConfigWatcherOptions) {
    this.file = resolve(opts.file);
    this.name = basename(this.file);
    this.lastText = opts.initialText;
  }

  start(): void {
    let symlink = false;
    try {
      symlink = lstatSync(this.file).isSymbolicLink();
    } catch {
      // Missing now: its creation is an event for its own name.
    }
    this.watcher = watch(dirname(this.file), { persistent: false }, (_event, filename) => {
      // filename may be null on some platforms: then any event in the directory may be ours.
      if (!symlink && filename !== null && filename !== undefined && filename.toString() !== this.name) return;
      this.schedule();
    });
    this.watcher.on('error', (err) => this.opts.onWatchError?.(err));
  }

  private schedule(): void {
    if (this.closed) return;
    this.firstEventAt ??= Date.now();
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const detectedAt = this.firstEventAt ?? Date.now();
      this.firstEventAt = undefined;
      // A read never rejects (a failure is a config error); onChange may throw, and that must not end the process.
      this.check(detectedAt, false).catch((err: unknown) =>
        this.opts.onWatchError?.(err instanceof Error ? err : new Error(String(err))),
      );
    }, this.opts.debounceMs);
  }

  /** Read the file now. `force` reports even when the text is unchanged (an explicit reload). */
  check(detectedAt = Date.now(), force = true): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.closed) return;
      const result = await loadConfigFile(this.file);
      // Mid-rename the file can be briefly missing: the rename's own event brings us back here.
      if (!result.ok && result.text === undefined && !force) return;
      if (!force && result.text !== undefined && result.text === this.lastText) return;
      if (result.text !== undefined) this.lastText = result.text;
      await this.opts.onChange(result, detectedAt);
    };
    this.chain = this.chain.then(run, run);
    return this.chain;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.watcher?.close();
  }
}
