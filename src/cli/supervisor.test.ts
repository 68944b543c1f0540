// The supervisor over real child processes: why a child died (code, signal, stderr tail), bounded restarts with
// backoff, and no restart of what the group itself stops.
import { describe, expect, it } from 'vitest';
import { ChildGroup, LineRing } from './children.js';
import { describeEvent, restartDelayMs, Supervisor, type RestartPolicy, type SupervisorEvent } from './supervisor.js';

const FAST: RestartPolicy = { initialDelayMs: 20, maxDelayMs: 40, maxQuickRestarts: 2, stableAfterMs: 10_000 };

function until(pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (pred()) resolve();
      else if (Date.now() > end) reject(new Error('condition not met in time'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

describe('restartDelayMs', () => {
  it('doubles from the initial delay and stays under the cap', () => {
    const p: RestartPolicy = { initialDelayMs: 500, maxDelayMs: 8000, maxQuickRestarts: 10, stableAfterMs: 30_000 };
    expect([1, 2, 3, 4, 5, 6, 100].map((n) => restartDelayMs(p, n))).toEqual([500, 1000, 2000, 4000, 8000, 8000, 8000]);
  });
});

describe('LineRing', () => {
  it('keeps the last lines in order and counts the ones it dropped', () => {
    const r = new LineRing(3);
    for (const l of ['a', 'b']) r.push(l);
    expect(r.tail()).toEqual(['a', 'b']);
    for (const l of ['c', 'd', 'e']) r.push(l);
    expect(r.tail()).toEqual(['c', 'd', 'e']);
    expect(r.tail(2)).toEqual(['d', 'e']);
    expect(r.dropped).toBe(2);
  });
});

describe('Supervisor', () => {
  it('reports each exit with its code and stderr tail, restarts with backoff, and gives up after the bound', async () => {
    const group = new ChildGroup();
    const events: SupervisorEvent[] = [];
    const sup = new Supervisor(group, (e) => events.push(e), FAST);
    try {
      const s = sup.spawn({
        name: 'crasher',
        command: process.execPath,
        args: ['-e', "console.log('a log line'); for (let i = 0; i < 30; i++) console.error('line ' + i); process.stderr.write('Error: port 1 in use\\nat listen'); process.exit(3)"],
      });
      await until(() => s.gaveUp);
      expect(events.map((e) => (e.kind === 'exit' ? `exit ${e.code} ${e.restartInMs}` : `restart ${e.restarts}`))).toEqual([
        'exit 3 20',
        'restart 1',
        'exit 3 40',
        'restart 2',
        'exit 3 null',
      ]);
      const first = events[0]!;
      if (first.kind !== 'exit') throw new Error('not an exit');
      // The unterminated last line counts too.
      expect(first.tail).toEqual(['line 26', 'line 27', 'line 28', 'line 29', 'Error: port 1 in use', 'at listen']);
      expect(first.tailIsStderr).toBe(true);
      expect(describeEvent(first)).toEqual([
        expect.stringMatching(/^\[\d\d:\d\d:\d\d\] crasher \(pid \d+\) exited: exit code 3 after \d\.\d s; restarting in 20 ms$/),
        '    stderr:',
        '    | line 26',
        '    | line 27',
        '    | line 28',
        '    | line 29',
        '    | Error: port 1 in use',
        '    | at listen',
      ]);
      expect(describeEvent(events[4]!)[0]).toContain('not restarting: it failed soon after each of its last 3 starts');
      expect(s.restarts).toBe(2);
      // Restarts do not grow the group: only the last process is kept.
      expect(group.children.length).toBe(1);
    } finally {
      sup.stop();
      await group.close();
    }
  });

  it('names the signal that killed a child and restarts it', async () => {
    const group = new ChildGroup();
    const events: SupervisorEvent[] = [];
    const sup = new Supervisor(group, (e) => events.push(e), FAST);
    try {
      const s = sup.spawn({ name: 'sleeper', command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'] });
      const first = s.current.pid!;
      process.kill(first, 'SIGKILL');
      await until(() => s.restarts === 1 && s.running);
      expect(events[0]).toMatchObject({ kind: 'exit', name: 'sleeper', pid: first, signal: 'SIGKILL', code: null, restartInMs: 20 });
      expect(describeEvent(events[0]!)[0]).toContain('exited: killed by SIGKILL');
      expect(s.current.pid).not.toBe(first);
    } finally {
      sup.stop();
      await group.close();
    }
  });

  it('does not restart what the group stops', async () => {
    const group = new ChildGroup();
    const events: SupervisorEvent[] = [];
    const sup = new Supervisor(group, (e) => events.push(e), FAST);
    const s = sup.spawn({ name: 'sleeper', command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'] });
    await group.close();
    await new Promise((r) => setTimeout(r, 100));
    expect(s.running).toBe(false);
    expect(events).toEqual([]);
  });
});
