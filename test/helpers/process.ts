// Runs the built `pillion` executable as a real child process and reads its JSON log lines.
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const MAIN = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url));

export interface PillionProcess {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stderr: string;
  /** Resolves with the first log line that satisfies `pred`. */
  waitForLine(pred: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

/**
 * `main`: another build of the executable (e.g. a copy of dist/ without the native helper). `wrapper`: a command
 * that runs node, e.g. `ip netns exec NS setpriv --reuid 1337 ...`. `env`: added to this process's environment.
 */
export function runPillion(args: string[], main = MAIN, wrapper: readonly string[] = [], env?: NodeJS.ProcessEnv): PillionProcess {
  const argv = [...wrapper, process.execPath, ...NODE_FLAGS, main, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...(env === undefined ? {} : { env: { ...process.env, ...env } }) });
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  const proc: PillionProcess = {
    child,
    lines,
    stderr: '',
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
    waitForLine(pred, timeoutMs = 10_000) {
      const found = lines.find(pred);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching log line; stderr: ${proc.stderr}`)), timeoutMs);
        waiters.push({
          pred,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
  child.stderr!.on('data', (d: Buffer) => (proc.stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    lines.push(line);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.pred(line)) {
        waiters[i]!.resolve(line);
        waiters.splice(i, 1);
      }
    }
  });
  return proc;
}
