// `pillion demo` tells the truth when a process dies: a sidecar killed with SIGKILL is reported at once (name, pid,
// signal), restarted and counted, traffic flows through it again, shares follow a mesh edit within seconds, a broken
// mesh file shows as a config error, and Ctrl-C (SIGINT) leaves no process behind, restarted ones included.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { MAIN } from '../helpers/process.js';

/** Pids of `pid`'s children with their command lines (from /proc). */
function childrenOf(pid: number): Map<number, string> {
  const out = new Map<number, string>();
  let list = '';
  try {
    list = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  } catch {
    return out;
  }
  for (const p of list.split(/\s+/).filter(Boolean).map(Number)) {
    try {
      out.set(p, readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' '));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('pillion demo, when a process dies', () => {
  it('reports a killed sidecar, restarts it, shows config errors, and leaves nothing running after SIGINT', async () => {
    const demo = spawn(process.execPath, [MAIN, 'demo', '--duration', '60'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const waiters: Array<{ re: RegExp; from: number; resolve: (m: RegExpExecArray) => void }> = [];
    const check = (): void => {
      for (let i = waiters.length - 1; i >= 0; i--) {
        const w = waiters[i]!;
        const re = new RegExp(w.re.source, w.re.flags.includes('g') ? w.re.flags : `${w.re.flags}g`);
        re.lastIndex = w.from;
        const m = re.exec(out);
        if (m) {
          waiters.splice(i, 1);
          w.resolve(m);
        }
      }
    };
    demo.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      check();
    });
    demo.stderr.on('data', (d: Buffer) => {
      out += d.toString();
      check();
    });
    const exited = new Promise<number | null>((resolve) => demo.on('exit', resolve));
    /** The first match of `re` in the output after offset `from`. */
    const waitFor = (re: RegExp, timeoutMs: number, from = 0): Promise<RegExpExecArray> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${re} within ${timeoutMs} ms; output:\n${out}`)), timeoutMs);
        waiters.push({ re, from, resolve: (m) => (clearTimeout(timer), resolve(m)) });
        check();
      });

    const pids = new Set<number>();
    try {
      const meshPath = (await waitFor(/mesh config (\S+mesh\.yaml)/, 10_000))[1]!;
      // Traffic flows: a summary line with requests answered.
      await waitFor(/^t=\d+s rps=[\d.]+ success=(?:9\d|100)\.\d% .* ok=[1-9]/m, 20_000);
      // Plain lines off a terminal: no cursor control codes.
      expect(out).not.toContain('\x1b');

      const record = (): Map<number, string> => {
        const now = childrenOf(demo.pid!);
        for (const p of now.keys()) pids.add(p);
        return now;
      };
      const before = record();
      expect(before.size).toBe(11); // control, five apps, five sidecars
      const [victim] = [...before].find(([, cmd]) => / proxy .*--node-id frontend-1 /.test(cmd))!;

      const mark = out.length;
      process.kill(victim, 'SIGKILL');
      // Reported at once (well before the next summary's restart), by name, pid and signal…
      await waitFor(new RegExp(`^\\[[\\d:]+\\] frontend-1-sidecar \\(pid ${victim}\\) exited: killed by SIGKILL after [\\d.]+ s; restarting in 500 ms$`, 'm'), 5_000, mark);
      // …restarted and counted…
      const restarted = Number((await waitFor(/^\[[\d:]+\] frontend-1-sidecar restarted \(pid (\d+), restart 1\)$/m, 5_000, mark))[1]);
      expect(restarted).not.toBe(victim);
      const after = record();
      expect(after.has(restarted)).toBe(true);
      expect(after.has(victim)).toBe(false);
      expect(after.size).toBe(11);
      // …and traffic flows through the new sidecar: the success over the last seconds is back at ~100 % while the
      // total ok count keeps growing, on lines that count the restart.
      const line = (await waitFor(/^t=\d+s rps=[\d.]+ success=(?:9[5-9]|100)\.\d% .* ok=(\d+) .* restarts=1 down=\[\] config=ok nacks=0$/m, 15_000, out.length))[0];
      const okThen = Number(/ ok=(\d+)/.exec(line)![1]);
      await waitFor(new RegExp(`^t=\\d+s .* ok=(?!${okThen} )\\d+ .* restarts=1 `, 'm'), 6_000, out.indexOf(line) + line.length);

      // Shares are over the last seconds, not since start: with backend-2 and backend-3 taken out of the mesh, the
      // screen soon shows backend-1 with all of the backend traffic (a cumulative share never would).
      const editMark = out.length;
      const oneBackend = readFileSync(meshPath, 'utf8').replace(/(- name: backend\n(?:.*\n)*? {4}endpoints:\n {6}- \{[^\n]*\}\n)(?: {6}- \{[^\n]*\}\n)+/, '$1');
      expect(oneBackend.match(/- \{ address/g)).toHaveLength(3);
      writeFileSync(meshPath, oneBackend);
      await waitFor(/^t=\d+s .* backend\[backend-1=100\.0% backend-2=0\.0% backend-3=0\.0%\] .* config=ok nacks=0$/m, 12_000, editMark);

      // A broken mesh file is on screen, not only on /proxies.
      const configMark = out.length;
      writeFileSync(meshPath, readFileSync(meshPath, 'utf8').replace('timeout: 5s', 'timeout: 5'));
      await waitFor(/^\[[\d:]+\] mesh config rejected by the control server \(the last good config keeps serving\):\n {4}\| services\[0\]\.policy\.timeout: expected a duration/m, 5_000, configMark);
      await waitFor(/^t=\d+s .* config=invalid nacks=0$/m, 6_000, configMark);
      expect(out.slice(mark)).not.toContain('\x1b');
      record();
    } finally {
      demo.kill('SIGINT');
    }
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
    if (code === 'hung') {
      // Do not leave a wedged demo (or its children) behind for the next test.
      for (const p of [demo.pid!, ...pids]) if (alive(p)) process.kill(p, 'SIGKILL');
    }
    expect(code).toBe(0);
    expect(out).toMatch(/stopping \(SIGINT\); final: .* restarts=1 /);
    // Every process the demo ran, the restarted sidecar included, is gone.
    expect(pids.size).toBe(12);
    expect([...pids].filter(alive)).toEqual([]);
  }, 60_000);
});
