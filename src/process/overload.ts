// Overload manager, after Envoy's (fixed_heap monitor; stop_accepting_requests and stop_accepting_connections
// actions): past a memory threshold the proxy refuses new connections and answers new requests 503 `overload`
// instead of growing until the kernel's OOM killer ends it and every connection with it. It leaves the state
// below 90 % of the threshold, so it does not flap at the edge.
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';

export interface MemorySample {
  /** V8 heap in use and the heap's hard limit (an out-of-heap crash comes at the limit). */
  readonly heapUsedBytes: number;
  readonly heapLimitBytes: number;
  readonly rssBytes: number;
}

export interface OverloadThresholds {
  /** Fraction of V8's heap limit (Envoy's examples: 0.95). */
  readonly heapFraction: number;
  /** Resident memory bound; 0 = none. */
  readonly maxRssBytes: number;
}

/** What the data path reads per connection and per request: one boolean. */
export class OverloadState {
  active = false;
}

/** Leaving the state needs this much room under the threshold. */
const RECOVERY_FRACTION = 0.9;

export type OverloadCause = 'heap' | 'rss';

/** The pure decision: given a sample and whether we are overloaded now, are we overloaded after it, and why. */
export function evaluateOverload(sample: MemorySample, thresholds: OverloadThresholds, active: boolean): OverloadCause | null {
  const scale = active ? RECOVERY_FRACTION : 1;
  if (sample.heapUsedBytes >= sample.heapLimitBytes * thresholds.heapFraction * scale) return 'heap';
  if (thresholds.maxRssBytes > 0 && sample.rssBytes >= thresholds.maxRssBytes * scale) return 'rss';
  return null;
}

export interface OverloadLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface OverloadManagerOptions {
  readonly thresholds: OverloadThresholds;
  readonly logger: OverloadLogger;
  readonly state: OverloadState;
  readonly onChange?: (active: boolean) => void;
  /** Defaults to the process's own memory. */
  readonly sample?: () => MemorySample;
  readonly periodMs?: number;
}

export class OverloadManager {
  private timer: NodeJS.Timeout | null = null;
  private readonly sample: () => MemorySample;
  private lastSample: MemorySample | null = null;

  constructor(private readonly options: OverloadManagerOptions) {
    this.sample = options.sample ?? processMemory;
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(checkOverload, this.options.periodMs ?? 250, this);
    this.timer.unref();
    this.check();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  check(): void {
    let sample: MemorySample;
    try {
      sample = this.sample();
    } catch {
      // Reading /proc needs a file descriptor: at the fd limit (EMFILE) keep the last decision.
      return;
    }
    this.lastSample = sample;
    const { state, thresholds, logger } = this.options;
    const cause = evaluateOverload(sample, thresholds, state.active);
    const active = cause !== null;
    if (active === state.active) return;
    state.active = active;
    const figures = { heapUsedMiB: mib(sample.heapUsedBytes), heapLimitMiB: mib(sample.heapLimitBytes), rssMiB: mib(sample.rssBytes) };
    if (active) {
      logger.warn(
        { ...figures, cause, maxRssMiB: mib(thresholds.maxRssBytes), heapFraction: thresholds.heapFraction },
        'overloaded: refusing new connections and answering new requests 503 (x-pillion-reason: overload)',
      );
    } else {
      logger.info(figures, 'overload over: accepting connections and requests again');
    }
    this.options.onChange?.(active);
  }

  get latest(): MemorySample | null {
    return this.lastSample;
  }
}

function checkOverload(manager: OverloadManager): void {
  manager.check();
}

function processMemory(): MemorySample {
  const heap = getHeapStatistics();
  return { heapUsedBytes: heap.used_heap_size, heapLimitBytes: heap.heap_size_limit, rssBytes: process.memoryUsage.rss() };
}

function mib(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}

/**
 * The memory limit of this process's cgroup (v2 `memory.max`, else v1 `memory.limit_in_bytes`), or 0 when
 * there is none. A sidecar in a pod has one; the default RSS threshold is 90 % of it.
 */
export function cgroupMemoryLimitBytes(): number {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    const n = Number(text);
    // "max" (v2) or a huge page-rounded number (v1) means no limit.
    if (!Number.isFinite(n) || n <= 0 || n >= 2 ** 60) return 0;
    return n;
  }
  return 0;
}
