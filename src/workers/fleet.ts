// The primary's side of `pillion proxy --concurrency N` (N > 1): forks N workers with node:cluster, forwards them
// the config and secrets the primary accepted, restarts a worker that dies (with backoff), drains and stops them,
// and answers for them to the admin server (readiness, metrics through src/workers/metrics.ts, worker 0's cluster state). Workers run
// the data path only (src/workers/worker.ts); the primary owns the config source, the admin server and signals.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ResourceSet } from '../config/snapshot.js';
import type { SecretStore } from '../tls/secrets.js';
import type { ClusterStatus, ListenerStatus, MetricsRegistry, WorkerInfo } from '../admin/types.js';
import { FleetMetrics } from './metrics.js';
import { parseAppliedBody, parseClusters, parseFromWorker, parseMetrics, type FromWorker, type IgnoredReason, type MetricJson, type ToWorker } from './ipc.js';

export const WORKER_INDEX_ENV = 'PILLION_WORKER_INDEX';

/** starting: forked, not up yet; waiting: up, no config yet; applying: has a config to apply; live: serving the current config; exited: waiting for its restart. */
export interface WorkerStatus extends WorkerInfo {
  readonly state: SlotState;
}

type SlotState = 'starting' | 'waiting' | 'applying' | 'live' | 'exited';

interface Slot {
  readonly index: number;
  worker: Worker | null;
  state: SlotState;
  appliedGen: number;
  listeners: ListenerStatus[];
  restarts: number;
  lastExit: string | null;
  startedAtMs: number;
  backoffMs: number;
  restartTimer: NodeJS.Timeout | null;
  /** Its last metrics answer: stands in when it does not answer a scrape in time, and is kept when it dies. */
  lastMetrics: MetricJson[] | null;
}

interface Query {
  readonly slot: Slot;
  readonly resolve: (body: string | null) => void;
  readonly timer: NodeJS.Timeout;
}

interface ApplyWait {
  readonly gen: number;
  readonly remaining: Set<number>;
  readonly errors: string[];
  readonly resolve: () => void;
}

export interface FleetOptions {
  readonly concurrency: number;
  readonly logger: Logger;
  /** The primary's own registry: the fleet's metrics go there, and it is part of every aggregate. */
  readonly registry: Registry;
  /** The primary's secrets, mirrored to every worker. */
  readonly secrets: SecretStore;
}

const FIRST_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 30_000;
/** A worker that lived this long restarts without waiting: its crash was not a crash loop. */
const HEALTHY_RUN_MS = 30_000;
const QUERY_TIMEOUT_MS = 3_000;
const APPLY_TIMEOUT_MS = 30_000;
const DRAIN_MARGIN_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const MAX_QUERIES = 1024;

export class WorkerFleet {
  readonly concurrency: number;
  private readonly slots: Slot[];
  private readonly log: Logger;
  private gen = 0;
  private config: { gen: number; version: string; resources: ResourceSet } | null = null;
  private drainScope: 'none' | 'inbound' | 'all' = 'none';
  /** Set with POST /logging since start: a worker that comes up later gets it too. */
  private logLevel: string | null = null;
  private stopping = false;
  private nextId = 1;
  private readonly queries = new Map<number, Query>();
  private readonly drains = new Map<number, { remaining: Set<number>; resolve: () => void }>();
  private readonly applyWaits = new Set<ApplyWait>();
  private readonly exitWaiters: (() => void)[] = [];
  /** Without reject: waits through failures until every worker serves the current config. */
  private readonly liveWaiters: { resolve: () => void; reject?: (err: Error) => void }[] = [];
  private readonly metricsOf: FleetMetrics;
  private readonly exits: Counter;
  private readonly ignored: Counter<'reason'>;
  private readonly scrapeMisses: Counter;

  constructor(private readonly options: FleetOptions) {
    this.concurrency = options.concurrency;
    this.log = options.logger.child({ component: 'workers' });
    this.metricsOf = new FleetMetrics(this.log);
    this.slots = Array.from({ length: options.concurrency }, (_, index) => ({
      index,
      worker: null,
      state: 'exited' as SlotState,
      appliedGen: 0,
      listeners: [],
      restarts: 0,
      lastExit: null,
      startedAtMs: 0,
      backoffMs: FIRST_BACKOFF_MS,
      restartTimer: null,
      lastMetrics: null,
    }));
    const registers = [options.registry];
    this.exits = new Counter({ name: 'pillion_worker_exits_total', help: 'Worker processes that exited while the proxy was not stopping (each is restarted, with backoff).', registers });
    this.ignored = new Counter({
      name: 'pillion_worker_ipc_ignored_total',
      help: 'Messages from workers the primary ignored: unknown_type, malformed, too_large (over 16 MiB), or late (an answer after its timeout).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.scrapeMisses = new Counter({
      name: 'pillion_worker_scrape_misses_total',
      help: 'Metrics scrapes a worker did not answer within 3 s; its previous answer was used.',
      registers,
    });
    const slots = this.slots;
    const current = (): number => this.gen;
    new Gauge({
      name: 'pillion_workers_live',
      help: 'Worker processes listening with the current config applied (of --concurrency).',
      registers,
      collect() {
        this.set(slots.filter((s) => s.state === 'live' && s.appliedGen === current()).length);
      },
    });
  }

  start(): void {
    // Each worker accepts on the shared listening socket itself and the kernel spreads connections (SCHED_NONE),
    // instead of the primary accepting every connection and passing its fd over IPC (SCHED_RR): see README.
    // NODE_CLUSTER_SCHED_POLICY=rr still picks round-robin (bench/concurrency.ts measures both).
    if (process.env.NODE_CLUSTER_SCHED_POLICY === undefined) cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.setupPrimary({ serialization: 'advanced' });
    for (const slot of this.slots) this.fork(slot);
    this.options.secrets.onChange((name, secret) => {
      for (const slot of this.slots) if (slot.state !== 'starting') this.send(slot, { t: 'secret', name, secret: secret ?? null });
    });
  }

  private fork(slot: Slot): void {
    slot.restartTimer = null;
    let worker: Worker;
    try {
      worker = cluster.fork({ [WORKER_INDEX_ENV]: String(slot.index) });
    } catch (err) {
      // spawn throws for some failures (ENOMEM) rather than emitting 'error': retried like a worker that exited.
      this.exits.inc();
      slot.state = 'exited';
      slot.worker = null;
      const delay = this.nextBackoff(slot, 0);
      this.log.error({ worker: slot.index, err: (err as Error).message, restartInMs: delay }, 'could not start a worker process; retrying');
      slot.restartTimer = setTimeout(() => this.fork(slot), delay);
      return;
    }
    slot.worker = worker;
    slot.state = 'starting';
    slot.appliedGen = 0;
    slot.listeners = [];
    slot.startedAtMs = Date.now();
    worker.on('error', (err: Error) => {
      this.log.warn({ worker: slot.index, workerPid: worker.process.pid, err: err.message }, 'worker IPC or process error');
      // A fork that never got a pid (EAGAIN, EMFILE) may never emit 'exit': count it as one, so it is retried.
      if (worker.process.pid === undefined) this.exited(slot, worker, null, null);
    });
    worker.on('message', (msg: unknown) => this.receive(slot, worker, msg));
    worker.on('exit', (code: number | null, signal: string | null) => this.exited(slot, worker, code, signal));
  }

  private send(slot: Slot, msg: ToWorker): void {
    const w = slot.worker;
    if (w === null || !w.isConnected()) return;
    // A send on a channel that just closed reports through the callback; the exit handler does the rest.
    w.send(msg, undefined, (err: Error | null) => {
      if (err !== null) this.log.debug({ worker: slot.index, err: err.message, type: msg.t }, 'could not send to worker');
    });
  }

  private receive(slot: Slot, worker: Worker, raw: unknown): void {
    if (slot.worker !== worker) return;
    const parsed = parseFromWorker(raw);
    if ('ignored' in parsed) return this.ignore(parsed.ignored, slot);
    const msg: FromWorker = parsed.message;
    switch (msg.t) {
      case 'up':
        return this.up(slot, worker);
      case 'applied':
        return this.applied(slot, msg.gen, msg.ok, msg.body);
      case 'answer': {
        const q = this.queries.get(msg.id);
        if (q === undefined || q.slot !== slot) return this.ignore('late', slot);
        this.queries.delete(msg.id);
        clearTimeout(q.timer);
        q.resolve(msg.body);
        return;
      }
      case 'drained': {
        const d = this.drains.get(msg.id);
        if (d === undefined) return this.ignore('late', slot);
        d.remaining.delete(slot.index);
        if (d.remaining.size === 0) {
          this.drains.delete(msg.id);
          d.resolve();
        }
        return;
      }
    }
  }

  private ignore(reason: IgnoredReason | 'late', slot: Slot): void {
    this.ignored.inc({ reason });
    this.log.debug({ worker: slot.index, reason }, 'ignored a message from a worker');
  }

  /** A new worker gets every secret, then the drain scope (so it never opens a drained door), then the config. */
  private up(slot: Slot, worker: Worker): void {
    this.log.info({ worker: slot.index, workerPid: worker.process.pid }, 'worker up');
    if (this.logLevel !== null) this.send(slot, { t: 'log-level', level: this.logLevel });
    for (const name of this.options.secrets.names()) this.send(slot, { t: 'secret', name, secret: this.options.secrets.get(name) ?? null });
    if (this.drainScope !== 'none') this.send(slot, { t: 'drain', id: 0, inboundOnly: this.drainScope === 'inbound' });
    if (this.config === null) {
      slot.state = 'waiting';
      return;
    }
    slot.state = 'applying';
    this.send(slot, { t: 'config', ...this.config });
  }

  private applied(slot: Slot, gen: number, ok: boolean, body: string): void {
    const parsed = parseAppliedBody(body);
    if (parsed === null) return this.ignore('malformed', slot);
    slot.listeners = parsed.listeners;
    if (ok) slot.appliedGen = gen;
    if (gen === this.gen) slot.state = ok ? 'live' : 'applying';
    if (!ok) this.log.error({ worker: slot.index, workerPid: slot.worker?.process.pid, error: parsed.error }, 'worker could not apply the config');
    if (this.allLive()) for (const w of this.liveWaiters.splice(0)) w.resolve();
    if (!ok && gen === this.gen) {
      const error = new Error(`worker ${slot.index} could not apply the config: ${parsed.error ?? 'failed'}`);
      for (const w of this.liveWaiters.filter((x) => x.reject !== undefined)) {
        this.liveWaiters.splice(this.liveWaiters.indexOf(w), 1);
        w.reject!(error);
      }
    }
    for (const wait of this.applyWaits) {
      if (wait.gen !== gen || !wait.remaining.delete(slot.index)) continue;
      if (!ok) wait.errors.push(`worker ${slot.index}: ${parsed.error ?? 'failed'}`);
      if (wait.remaining.size === 0) wait.resolve();
    }
  }

  private exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = null;
    slot.state = 'exited';
    slot.lastExit = signal !== null ? `signal ${signal}` : code !== null ? `code ${code}` : 'spawn failed';
    if (slot.lastMetrics !== null) this.metricsOf.retire(slot.lastMetrics);
    slot.lastMetrics = null;
    for (const [id, q] of this.queries) {
      if (q.slot !== slot) continue;
      this.queries.delete(id);
      clearTimeout(q.timer);
      q.resolve(null);
    }
    for (const wait of this.applyWaits) if (wait.remaining.delete(slot.index) && wait.remaining.size === 0) wait.resolve();
    for (const [id, d] of this.drains) {
      if (!d.remaining.delete(slot.index) || d.remaining.size > 0) continue;
      this.drains.delete(id);
      d.resolve();
    }
    if (this.stopping) {
      if (this.slots.every((s) => s.worker === null)) for (const resolve of this.exitWaiters.splice(0)) resolve();
      return;
    }
    this.exits.inc();
    if (this.drainScope === 'all') {
      this.log.warn({ worker: slot.index, workerPid: worker.process.pid, exit: slot.lastExit }, 'worker exited while draining; not restarted');
      return;
    }
    const ranMs = Date.now() - slot.startedAtMs;
    const delay = this.nextBackoff(slot, ranMs);
    this.log.error({ worker: slot.index, workerPid: worker.process.pid, exit: slot.lastExit, ranMs, restartInMs: delay }, 'worker exited; restarting it');
    slot.restartTimer = setTimeout(() => this.fork(slot), delay);
  }

  /** The delay before a worker's next start: doubling from FIRST_BACKOFF_MS, back to it after a healthy run. */
  private nextBackoff(slot: Slot, ranMs: number): number {
    if (ranMs >= HEALTHY_RUN_MS) slot.backoffMs = FIRST_BACKOFF_MS;
    const delay = slot.backoffMs;
    slot.backoffMs = Math.min(MAX_BACKOFF_MS, slot.backoffMs * 2);
    slot.restarts++;
    return delay;
  }

  // --- what the primary's Proxy asks ---

  /** Sends an accepted config to every worker; resolves when each running one has applied it. Throws if one failed. */
  async apply(resources: ResourceSet, version: string): Promise<void> {
    const gen = ++this.gen;
    this.config = { gen, version, resources };
    const remaining = new Set<number>();
    for (const slot of this.slots) {
      if (slot.state === 'starting' || slot.state === 'exited') continue;
      slot.state = 'applying';
      remaining.add(slot.index);
      this.send(slot, { t: 'config', gen, version, resources });
    }
    if (remaining.size === 0) return;
    const errors: string[] = [];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.log.warn({ workers: [...remaining], version }, `workers did not report the config applied within ${APPLY_TIMEOUT_MS / 1000} s; /ready stays 503 until they do`);
        done();
      }, APPLY_TIMEOUT_MS);
      const wait: ApplyWait = { gen, remaining, errors, resolve: () => done() };
      const done = (): void => {
        clearTimeout(timer);
        this.applyWaits.delete(wait);
        resolve();
      };
      this.applyWaits.add(wait);
    });
    if (errors.length > 0) throw new Error(errors.join('; '));
  }

  /** Every worker is up and serving the current config. */
  allLive(): boolean {
    return this.gen > 0 && this.slots.every((s) => s.state === 'live' && s.appliedGen === this.gen);
  }

  /**
   * Resolves once every worker serves the current config (at start: once they all came up and applied it);
   * rejects if a worker reports it could not (a port it cannot bind, as a single process would fail to start).
   */
  whenLive(options: { throughFailures?: boolean } = {}): Promise<void> {
    if (this.allLive()) return Promise.resolve();
    return new Promise((resolve, reject) => this.liveWaiters.push(options.throughFailures === true ? { resolve } : { resolve, reject }));
  }

  /** Listeners as the first live worker bound them (else worker 0: its last report); every worker binds the same ones, ports are shared. */
  listeners(): ListenerStatus[] {
    return this.slots.find((s) => s.state === 'live')?.listeners ?? this.slots[0]!.listeners;
  }

  status(): WorkerStatus[] {
    return this.slots.map((s) => ({
      index: s.index,
      pid: s.worker?.process.pid ?? null,
      state: s.state,
      configGeneration: s.appliedGen,
      restarts: s.restarts,
      lastExit: s.lastExit,
    }));
  }

  setLogLevel(level: string): void {
    this.logLevel = level;
    for (const slot of this.slots) if (slot.state !== 'starting') this.send(slot, { t: 'log-level', level });
  }

  private query(slot: Slot, what: 'metrics' | 'clusters'): Promise<string | null> {
    if (slot.worker === null || slot.state === 'starting' || this.queries.size >= MAX_QUERIES) return Promise.resolve(null);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.queries.delete(id);
        resolve(null);
      }, QUERY_TIMEOUT_MS);
      this.queries.set(id, { slot, resolve, timer });
      this.send(slot, { t: 'query', id, what });
    });
  }

  /** Live cluster state of the first worker that answers: each worker has its own pools, health and ejections. */
  async clusters(): Promise<ClusterStatus[]> {
    for (const slot of this.slots) {
      const body = await this.query(slot, 'clusters');
      const parsed = body === null ? null : parseClusters(body);
      if (parsed !== null) return parsed;
    }
    return [];
  }

  /**
   * The primary's metrics and every worker's, aggregated (src/workers/metrics.ts); a worker that does not answer in
   * time counts with its previous answer.
   */
  async metrics(): Promise<MetricsRegistry> {
    const own = (await this.options.registry.getMetricsAsJSON()) as unknown as MetricJson[];
    const answers = await Promise.all(this.slots.map((slot) => this.query(slot, 'metrics')));
    const workers = this.slots.map((slot, i) => {
      const metrics = answers[i] == null ? null : parseMetrics(answers[i]!);
      if (answers[i] != null && metrics === null) this.ignore('malformed', slot);
      if (metrics === null && slot.worker !== null && slot.state !== 'starting') this.scrapeMisses.inc();
      if (metrics === null) return slot.worker === null ? null : slot.lastMetrics;
      slot.lastMetrics = metrics;
      return metrics;
    });
    return this.metricsOf.aggregate(own, workers);
  }

  /** Drains every worker's listeners (of one scope); resolves when each has finished or exited. */
  drain(inboundOnly: boolean, timeoutMs: number): Promise<void> {
    if (this.drainScope !== 'all') this.drainScope = inboundOnly ? 'inbound' : 'all';
    const id = this.nextId++;
    const remaining = new Set<number>();
    for (const slot of this.slots) {
      // A worker still starting gets the drain scope when it comes up, before any config (see up()).
      if (slot.worker === null || slot.state === 'starting') continue;
      remaining.add(slot.index);
      this.send(slot, { t: 'drain', id, inboundOnly });
    }
    if (remaining.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drains.delete(id);
        this.log.warn({ workers: [...remaining] }, 'workers did not report their drain finished; stopping them anyway');
        resolve();
      }, timeoutMs + DRAIN_MARGIN_MS);
      this.drains.set(id, {
        remaining,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** Stops every worker (each closes its listeners and connections and exits); SIGKILL after 5 s. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.restartTimer !== null) clearTimeout(slot.restartTimer);
      slot.restartTimer = null;
    }
    const running = this.slots.filter((s) => s.worker !== null);
    if (running.length === 0) return;
    const allExited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    for (const slot of running) {
      // One still starting has no listener yet and may not read its channel yet.
      if (slot.state === 'starting') slot.worker!.process.kill('SIGKILL');
      else this.send(slot, { t: 'stop' });
    }
    const timer = setTimeout(() => {
      for (const slot of this.slots) {
        if (slot.worker === null) continue;
        this.log.warn({ worker: slot.index, workerPid: slot.worker.process.pid }, 'worker did not stop in time; killing it');
        slot.worker.process.kill('SIGKILL');
      }
    }, STOP_TIMEOUT_MS);
    await allExited;
    clearTimeout(timer);
  }
}
