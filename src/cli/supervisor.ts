// Keeps a child process running: when one exits on its own, report why (exit code or signal, the tail of its
// stderr) and start it again after a backoff, up to a bound, as a process supervisor would. Used by `pillion demo`.
import type { ChildGroup, ManagedChild, SpawnSpec } from './children.js';

export interface RestartPolicy {
  /** Delay before the first restart; doubled for each quick failure in a row. */
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** Restarts in a row, each after a run shorter than `stableAfterMs`, before giving up on the child. */
  readonly maxQuickRestarts: number;
  /** A run at least this long resets the backoff and the count of quick restarts. */
  readonly stableAfterMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = { initialDelayMs: 500, maxDelayMs: 8_000, maxQuickRestarts: 10, stableAfterMs: 30_000 };

/** Delay before restart number `quickFailures` (1 = the first failure of a series): exponential, capped. */
export function restartDelayMs(policy: RestartPolicy, quickFailures: number): number {
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, Math.min(30, quickFailures - 1)));
}

/** Lines of a dead child's stderr put in its exit event. */
const EXIT_TAIL_LINES = 6;
/** How long an exit report waits for the rest of the child's stderr. */
const STDERR_DRAIN_MS = 300;
/** Characters of one tail line an event shows (a JSON log line can be kilobytes). */
const TAIL_LINE_SHOWN = 240;

export interface ChildExitEvent {
  readonly kind: 'exit';
  readonly name: string;
  readonly pid: number | undefined;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** How long it ran. */
  readonly upMs: number;
  /** The last lines it wrote to stderr (oldest first), or, when it wrote none, its last lines of output. */
  readonly tail: readonly string[];
  readonly tailIsStderr: boolean;
  /** When it will be started again; null when the supervisor gave up on it. */
  readonly restartInMs: number | null;
  /** Restarts so far (before this one). */
  readonly restarts: number;
  readonly at: number;
}

export interface ChildRestartEvent {
  readonly kind: 'restart';
  readonly name: string;
  readonly pid: number | undefined;
  /** Restarts so far, this one included. */
  readonly restarts: number;
  readonly at: number;
}

export type SupervisorEvent = ChildExitEvent | ChildRestartEvent;

/** One supervised child: the process running now (or the last one), and how often it was restarted. */
export class Supervised {
  restarts = 0;
  gaveUp = false;
  /** Quick failures in a row (runs shorter than the policy's stableAfterMs). */
  quickFailures = 0;
  timer: NodeJS.Timeout | undefined;

  constructor(
    readonly spec: SpawnSpec,
    public current: ManagedChild,
  ) {}

  get name(): string {
    return this.spec.name;
  }

  get running(): boolean {
    return this.current.running;
  }
}

export class Supervisor {
  readonly children: Supervised[] = [];
  private stopped = false;

  constructor(
    private readonly group: ChildGroup,
    private readonly onEvent: (e: SupervisorEvent) => void,
    private readonly policy: RestartPolicy = DEFAULT_RESTART_POLICY,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts `spec` in the group and keeps it running until `stop()`. */
  spawn(spec: SpawnSpec): Supervised {
    const s = new Supervised(spec, this.group.spawn(spec));
    this.children.push(s);
    this.watch(s);
    return s;
  }

  /** No more restarts (pending ones are cancelled); the group's close() then stops what runs. */
  stop(): void {
    this.stopped = true;
    for (const s of this.children) clearTimeout(s.timer);
  }

  private watch(s: Supervised): void {
    const child = s.current;
    // 'exit' can come before the last bytes of stderr are read: wait for the pipes to close, but not for long (a
    // grandchild may hold them open).
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- exited and closed only resolve
    void child.exited
      .then(() => Promise.race([child.closed, new Promise<void>((r) => setTimeout(r, STDERR_DRAIN_MS).unref())]))
      .then(() => this.onExit(s, child));
  }

  private onExit(s: Supervised, child: ManagedChild): void {
    // Exits we caused (Ctrl-C, the end of the demo) are not failures.
    if (this.stopped || this.group.isClosing || s.current !== child) return;
    const now = this.now();
    const upMs = now - child.startedAt;
    s.quickFailures = upMs >= this.policy.stableAfterMs ? 1 : s.quickFailures + 1;
    const giveUp = s.quickFailures > this.policy.maxQuickRestarts;
    const delay = giveUp ? null : restartDelayMs(this.policy, s.quickFailures);
    const stderr = child.stderrTail.tail(EXIT_TAIL_LINES);
    this.onEvent({
      kind: 'exit',
      name: s.name,
      pid: child.pid,
      code: child.exitCode,
      signal: child.exitSignal,
      upMs,
      tail: stderr.length > 0 ? stderr : child.lines.slice(-3),
      tailIsStderr: stderr.length > 0,
      restartInMs: delay,
      restarts: s.restarts,
      at: now,
    });
    if (delay === null) {
      s.gaveUp = true;
      return;
    }
    s.timer = setTimeout(() => this.restart(s), delay);
  }

  private restart(s: Supervised): void {
    s.timer = undefined;
    if (this.stopped || this.group.isClosing) return;
    this.group.forget(s.current);
    s.current = this.group.spawn(s.spec);
    s.restarts++;
    this.watch(s);
    this.onEvent({ kind: 'restart', name: s.name, pid: s.current.pid, restarts: s.restarts, at: this.now() });
  }
}

/** An event as plain lines for a screen or a log: what happened, then the tail of stderr, indented. */
export function describeEvent(e: SupervisorEvent): string[] {
  const time = new Date(e.at).toISOString().slice(11, 19);
  if (e.kind === 'restart') return [`[${time}] ${e.name} restarted (pid ${e.pid ?? '?'}, restart ${e.restarts})`];
  const how = e.signal !== null ? `killed by ${e.signal}` : `exit code ${e.code ?? '?'}`;
  const next =
    e.restartInMs === null
      ? `not restarting: it failed soon after each of its last ${e.restarts + 1} starts`
      : `restarting in ${e.restartInMs < 1000 ? `${e.restartInMs} ms` : `${(e.restartInMs / 1000).toFixed(1)} s`}`;
  const lines = [`[${time}] ${e.name} (pid ${e.pid ?? '?'}) exited: ${how} after ${formatUptime(e.upMs)}; ${next}`];
  if (e.tail.length === 0) lines.push('    (no output)');
  else {
    lines.push(`    ${e.tailIsStderr ? 'stderr' : 'no stderr; last output'}:`);
    for (const l of e.tail) lines.push(`    | ${l.length > TAIL_LINE_SHOWN ? `${l.slice(0, TAIL_LINE_SHOWN - 1)}…` : l}`);
  }
  return lines;
}

function formatUptime(ms: number): string {
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}
