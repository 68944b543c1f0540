// Child-process orchestration shared by `pillion demo` and the benchmark: spawn processes in their own
// process group, watch their output line by line, and make sure every one of them (and its own children,
// e.g. nginx workers) is gone when we exit: normal end, error, Ctrl-C or SIGTERM.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, relative as relativePath } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface SpawnSpec {
  /** Short name used in messages. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Copy the child's output to ours, each line prefixed with its name. */
  readonly echo?: boolean;
  /** Lines kept for `waitForLine` and error messages (default 200). */
  readonly keepLines?: number;
  /** Lines of stderr kept apart, for saying why a child died (default 20). */
  readonly keepStderrLines?: number;
}

/** The last `capacity` lines written to one stream; older ones are counted in `dropped`, not kept. */
export class LineRing {
  private readonly buf: string[] = [];
  private next = 0;
  dropped = 0;

  constructor(readonly capacity: number) {}

  push(line: string): void {
    if (this.buf.length < this.capacity) {
      this.buf.push(line);
      return;
    }
    this.buf[this.next] = line;
    this.next = (this.next + 1) % this.capacity;
    this.dropped++;
  }

  /** The last `n` lines (all kept ones by default), oldest first. */
  tail(n: number = this.capacity): string[] {
    const ordered = this.buf.length < this.capacity ? this.buf : [...this.buf.slice(this.next), ...this.buf.slice(0, this.next)];
    return ordered.slice(Math.max(0, ordered.length - n));
  }
}

type LineWaiter = { test: (line: string) => boolean; resolve: (line: string) => void };

/** One running child. Lines of stdout and stderr are kept (bounded) so callers can wait for "listening" lines. */
export class ManagedChild {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  /** The last lines of stderr alone: what a crash says (a stack trace, `pillion: …`), not buried under logs. */
  readonly stderrTail: LineRing;
  /** When the process was started (ms since the epoch). */
  readonly startedAt = Date.now();
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;
  /** Resolves when the process has exited and its stdout and stderr are read to their end ('close'). */
  readonly closed: Promise<void>;
  private readonly waiters = new Set<LineWaiter>();
  private readonly keep: number;

  constructor(spec: SpawnSpec) {
    this.name = spec.name;
    this.keep = spec.keepLines ?? 200;
    this.stderrTail = new LineRing(spec.keepStderrLines ?? 20);
    const options: SpawnOptions = {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group: we signal the whole group, so grandchildren (nginx workers) go too, and a
      // terminal's Ctrl-C reaches only us, which then stops the children in order.
      detached: true,
    };
    this.proc = spawn(spec.command, [...spec.args], options);
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
      // 'on', not 'once': a failed kill() is an 'error' too, and a second one must not end this process.
      // Only a spawn that failed (no pid) ends the child here: a kill() that failed leaves it running, and the
      // demo's supervisor would otherwise start a second copy on the same ports.
      this.proc.on('error', (err) => {
        const started = this.proc.pid !== undefined;
        this.onLine(`${started ? 'error' : 'spawn error'}: ${err.message}`, spec.echo === true);
        if (started) return;
        this.exitCode = -1;
        resolve();
      });
    });
    this.closed = new Promise((resolve) => {
      this.proc.once('close', () => resolve());
      this.proc.on('error', () => {
        if (this.proc.pid === undefined) resolve();
      });
    });
    for (const stream of [this.proc.stdout, this.proc.stderr]) {
      if (!stream) continue;
      const isStderr = stream === this.proc.stderr;
      let partial = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        partial += chunk;
        let nl: number;
        while ((nl = partial.indexOf('\n')) >= 0) {
          const line = partial.slice(0, nl);
          if (isStderr) this.stderrTail.push(line.length > MAX_TAIL_LINE_CHARS ? `${line.slice(0, MAX_TAIL_LINE_CHARS)}…` : line);
          this.onLine(line, spec.echo === true);
          partial = partial.slice(nl + 1);
        }
        // A child that writes without newlines must not grow this buffer for ever.
        if (partial.length > MAX_LINE_CHARS) partial = partial.slice(-MAX_LINE_CHARS);
      });
      // A dying process's last words often lack a newline (a crash message cut short): keep them too.
      stream.on('end', () => {
        if (partial === '') return;
        if (isStderr) this.stderrTail.push(partial.length > MAX_TAIL_LINE_CHARS ? `${partial.slice(0, MAX_TAIL_LINE_CHARS)}…` : partial);
        this.onLine(partial, spec.echo === true);
        partial = '';
      });
      // A pipe from a child that dies can error (EPIPE, ECONNRESET): the exit is reported by 'exit', not by a throw.
      stream.on('error', () => {});
    }
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  private onLine(line: string, echo: boolean): void {
    this.lines.push(line);
    if (this.lines.length > this.keep) this.lines.shift();
    if (echo) process.stdout.write(`[${this.name}] ${line}\n`);
    for (const w of this.waiters) {
      if (w.test(line)) {
        this.waiters.delete(w);
        w.resolve(line);
      }
    }
  }

  /** Resolves with the first line (already seen or future) that passes `test`; rejects on exit or timeout. */
  waitForLine(test: (line: string) => boolean, timeoutMs: number): Promise<string> {
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter: LineWaiter = {
        test,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const fail = (why: string): void => {
        this.waiters.delete(waiter);
        clearTimeout(timer);
        reject(new Error(`${this.name}: ${why}; last output:\n  ${this.lines.slice(-15).join('\n  ')}`));
      };
      const timer = setTimeout(() => fail(`no expected output within ${timeoutMs} ms`), timeoutMs);
      this.waiters.add(waiter);
      // eslint-disable-next-line @typescript-eslint/no-floating-promises -- exited only resolves; fail cannot throw
      void this.exited.then(() => {
        if (this.waiters.has(waiter)) fail(`exited (code ${this.exitCode}, signal ${this.exitSignal})`);
      });
    });
  }

  /** Parses pino-style JSON lines and waits for one whose fields match `fields`. */
  waitForJson(fields: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    return this.waitForLine((line) => matchJson(line, fields) !== undefined, timeoutMs).then(
      (line) => matchJson(line, fields) as Record<string, unknown>,
    );
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.running || this.proc.pid === undefined) return;
    try {
      process.kill(-this.proc.pid, sig);
    } catch {
      try {
        this.proc.kill(sig);
      } catch {
        /* already gone */
      }
    }
  }

  /** SIGTERM (or `sig`), then SIGKILL to the whole group after `graceMs`. */
  async stop(graceMs = 3000, sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.running) {
      this.signal(sig);
      const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    // The leader may be gone while its group lives on (e.g. nginx workers): make sure.
    if (this.proc.pid !== undefined) {
      try {
        process.kill(-this.proc.pid, 'SIGKILL');
      } catch {
        /* no such group: fine */
      }
    }
  }
}

function matchJson(line: string, fields: Record<string, unknown>): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof obj !== 'object' || obj === null) return undefined;
  const rec = obj as Record<string, unknown>;
  for (const [k, v] of Object.entries(fields)) if (rec[k] !== v) return undefined;
  return rec;
}

/**
 * Owns a set of children and temp dirs. `installExitHandlers` makes Ctrl-C / SIGTERM / uncaught errors stop
 * everything; `process.on('exit')` SIGKILLs whatever is still alive as a last resort (sync only there).
 */
export class ChildGroup {
  readonly children: ManagedChild[] = [];
  private readonly tempDirs: string[] = [];
  private closing: Promise<void> | undefined;
  private handlersInstalled = false;
  private readonly onSignalHandlers: Array<[NodeJS.Signals, () => void]> = [];
  private readonly onExit = (): void => this.killAllSync();

  spawn(spec: SpawnSpec): ManagedChild {
    if (this.closing) throw new Error('child group is closing');
    const child = new ManagedChild(spec);
    this.children.push(child);
    return child;
  }

  /**
   * Drops an exited child from the group (its process group is SIGKILLed first, in case a grandchild outlived it),
   * so a child restarted again and again does not grow the list.
   */
  forget(child: ManagedChild): void {
    if (child.running) return;
    if (child.proc.pid !== undefined) {
      try {
        process.kill(-child.proc.pid, 'SIGKILL');
      } catch {
        /* no such group: fine */
      }
    }
    const i = this.children.indexOf(child);
    if (i >= 0) this.children.splice(i, 1);
  }

  get isClosing(): boolean {
    return this.closing !== undefined;
  }

  /** A fresh temp dir removed by `close()`. */
  tempDir(prefix: string): string {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    this.tempDirs.push(dir);
    return dir;
  }

  /**
   * On SIGINT/SIGTERM/SIGHUP: call `onSignal` when given (the caller then stops things in its own order and
   * calls `close()`), else stop all children and exit 0. Either way, `process.on('exit')` SIGKILLs any child
   * still alive as a last resort. Removed by `close()`.
   */
  installExitHandlers(onSignal?: (sig: NodeJS.Signals) => void): void {
    if (this.handlersInstalled) return;
    this.handlersInstalled = true;
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as NodeJS.Signals[]) {
      const h = (): void => {
        if (onSignal) onSignal(sig);
        else
          this.close().then(
            () => process.exit(0),
            (err: unknown) => {
              process.stderr.write(`stopping the children failed: ${err instanceof Error ? err.message : String(err)}\n`);
              process.exit(1);
            },
          );
      };
      this.onSignalHandlers.push([sig, h]);
      process.once(sig, h);
    }
    process.on('exit', this.onExit);
  }

  /** Stops every child (in reverse start order, in parallel per call) and removes temp dirs. Idempotent. */
  close(graceMs = 3000): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all([...this.children].reverse().map((c) => c.stop(graceMs)));
      for (const dir of this.tempDirs) rmSync(dir, { recursive: true, force: true });
      for (const [sig, h] of this.onSignalHandlers) process.removeListener(sig, h);
      process.removeListener('exit', this.onExit);
    })();
    return this.closing;
  }

  private killAllSync(): void {
    for (const c of this.children) {
      if (c.proc.pid === undefined) continue;
      try {
        process.kill(-c.proc.pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    for (const dir of this.tempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        /* best effort */
      }
    }
  }
}

/** Longest line kept from a child's output (what a demo screen or an error message can show). */
const MAX_LINE_CHARS = 65_536;
/** Longest line kept in a stderr tail: it is shown on a screen. */
const MAX_TAIL_LINE_CHARS = 400;

/** `n` distinct free TCP ports on 127.0.0.1 (all bound at once, then released: a small race remains). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

export interface HttpResult {
  status: number;
  body: string;
}

/** One small GET on 127.0.0.1 (no keep-alive), with a timeout. Errors become a rejected promise. */
export function httpGet(port: number, path: string, timeoutMs = 2000, host?: string): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path, method: 'GET', agent: false, headers: host ? { host } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (body.length < 4 << 20) body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `GET path` until it answers `status` (default 200) or the deadline passes. */
export async function waitForHttp(
  port: number,
  path: string,
  timeoutMs: number,
  opts: { status?: number; host?: string; child?: ManagedChild } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    if (opts.child && !opts.child.running) {
      throw new Error(`${opts.child.name} exited; last output:\n  ${opts.child.lines.slice(-15).join('\n  ')}`);
    }
    try {
      const r = await httpGet(port, path, 1000, opts.host);
      if (r.status === (opts.status ?? 200)) return;
      last = `status ${r.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`127.0.0.1:${port}${path} not ready after ${timeoutMs} ms (${last})`);
    await sleep(100);
  }
}

/** Waits until a TCP connect to 127.0.0.1:port succeeds. */
export async function waitForPort(port: number, timeoutMs: number, child?: ManagedChild): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && !child.running) {
      throw new Error(`${child.name} exited; last output:\n  ${child.lines.slice(-15).join('\n  ')}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`127.0.0.1:${port} not accepting after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** VmRSS, VmHWM (peak) and RssFile (its file-backed part; NaN if not shown) of one process in KiB, from /proc; undefined when unreadable. */
export function readRss(pid: number): { rssKiB: number; peakKiB: number; fileKiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)/.exec(status);
    const hwm = /VmHWM:\s+(\d+)/.exec(status);
    const file = /RssFile:\s+(\d+)/.exec(status);
    if (!rss) return undefined;
    return { rssKiB: Number(rss[1]), peakKiB: hwm ? Number(hwm[1]) : Number(rss[1]), fileKiB: file ? Number(file[1]) : NaN };
  } catch {
    return undefined;
  }
}

/** Sum of VmRSS (or of RssFile, its file-backed part) over a process and all its descendants (nginx master + worker), in KiB. */
export function readTreeRssKiB(pid: number, field: 'rssKiB' | 'fileKiB' = 'rssKiB'): number | undefined {
  const own = readRss(pid);
  if (!own) return undefined;
  let total = own[field];
  for (const child of childPids(pid)) total += readTreeRssKiB(child, field) ?? 0;
  return total;
}

/** Direct children of a process (those its main thread started), from /proc. */
export function childPids(pid: number): number[] {
  try {
    const out: number[] = [];
    const tasks = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    for (const p of tasks.split(/\s+/)) if (p) out.push(Number(p));
    return out;
  } catch {
    return [];
  }
}

/**
 * Path of a built file relative to the calling module (`import.meta.url`). When the caller runs from its
 * TypeScript source (vitest), the sibling .js does not exist: then the same path under the package's dist/
 * is used, e.g. src/cli/main.js → dist/src/cli/main.js.
 */
export function resolveFromHere(metaUrl: string, relative: string): string {
  const direct = fileURLToPath(new URL(relative, metaUrl));
  if (existsSync(direct)) return direct;
  let dir = dirname(fileURLToPath(metaUrl));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) return direct;
    dir = up;
  }
  const built = join(dir, 'dist', relativePath(dir, direct));
  return existsSync(built) ? built : direct;
}
