// Gives memory back to the kernel when traffic stops. After a burst a Node process keeps its peak: V8 shrinks
// its heap only after ~10 s of quiet, and glibc keeps freed socket buffers because live ones pin the top of its
// heap. Once per period, if the event loop was idle and resident memory grew since the last release, start a
// memory-reducing incremental GC and trim malloc's arenas, then trim again on the next idle periods, once the GC
// has freed dead Buffers' memory. Envoy's shrink_heap overload action does the same for tcmalloc. Cost: a few
// milliseconds per burst, spent only while the event loop has nothing else to do.
// At start and after each release it also lets go of the Node binary's pages that startup touched and serving
// does not use (under load, ~21 of the ~42 MiB of it a sidecar's RSS counted): see releaseProgramPages in src/native.
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { nativeAddon } from './native-addon.js';

export interface NativeMemory {
  /** Starts an incremental GC that also shrinks V8's heap and frees dead Buffers' backing stores. */
  startGarbageCollection(): void;
  /** malloc_trim(0): every whole free page of every malloc arena goes back to the kernel. */
  trimMalloc(): boolean;
  /**
   * Unmaps the executable's pages that are unmodified copies of the file (they come back from the page cache
   * when next used): the bytes of address space released.
   */
  releaseProgramPages(): number;
}

/** The GC started on an idle period completes within about one more; a second trim is a margin. */
const TRIMS_AFTER_GC = 2;
/**
 * Idle periods in a row before a release. The memory-reducing GC makes the NEXT burst dearer (measured, h2load
 * bursts of 20,000 HTTP/2 streams 1.5 s apart: ~10 -> ~16 µs of CPU per stream, ~100 ms per burst, more
 * scavenging and a heap grown back), so a pause of a second or so between bursts is not "traffic stopped".
 */
const IDLE_PERIODS_BEFORE_RELEASE = 2;

/** The native helper, or undefined when it was not built (no compiler at install time, or not glibc). */
export function loadNativeMemory(): NativeMemory | undefined {
  const addon = nativeAddon();
  if (typeof addon?.trimMalloc !== 'function' || typeof addon.startGarbageCollection !== 'function' || typeof addon.releaseProgramPages !== 'function') {
    return undefined;
  }
  return addon as unknown as NativeMemory;
}

export interface IdleMemoryOptions {
  readonly logger: Logger;
  readonly native: NativeMemory;
  /** Sampling period (default 1 s). */
  readonly periodMs?: number;
  /** Event-loop utilization over one period below which the process counts as idle (default 2 %). */
  readonly idleUtilization?: number;
  /** Growth of resident memory since the last release that makes a release worth a GC (default 4 MiB). */
  readonly minGrowthBytes?: number;
  /** Consecutive idle periods before a release starts (default IDLE_PERIODS_BEFORE_RELEASE). */
  readonly idlePeriods?: number;
}

export class IdleMemoryReleaser {
  private timer: NodeJS.Timeout | null = null;
  private lastSample: EventLoopUtilization = performance.eventLoopUtilization();
  /** Resident memory right after the last release (or the lowest seen since); NaN until first read. */
  private floorRss = NaN;
  /** Idle periods that still trim after a release, to return what the GC it started frees. */
  private trimsPending = 0;
  private rssBeforeRelease = 0;
  /** Idle periods in a row so far. */
  private idleStreak = 0;
  private readonly idlePeriods: number;
  private readonly periodMs: number;
  private readonly idleUtilization: number;
  private readonly minGrowthBytes: number;
  releases = 0;
  /** Periods skipped because resident memory could not be read (EMFILE: it reads /proc/self/stat). */
  readErrors = 0;

  constructor(private readonly options: IdleMemoryOptions) {
    this.periodMs = options.periodMs ?? 1000;
    this.idleUtilization = options.idleUtilization ?? 0.02;
    this.minGrowthBytes = options.minGrowthBytes ?? 4 << 20;
    this.idlePeriods = Math.max(1, options.idlePeriods ?? IDLE_PERIODS_BEFORE_RELEASE);
  }

  start(): void {
    if (this.timer !== null) return;
    this.lastSample = performance.eventLoopUtilization();
    // Startup is done (the caller starts this once the proxy serves): what it alone used is let go now.
    this.options.native.releaseProgramPages();
    this.floorRss = this.rss() ?? NaN;
    this.timer = setInterval(() => this.sample(), this.periodMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private sample(): void {
    const now = performance.eventLoopUtilization();
    const { utilization } = performance.eventLoopUtilization(now, this.lastSample);
    this.lastSample = now;
    // Busy: nothing now. A release under way finishes on the next idle periods (the GC it started may itself
    // keep one period just above the threshold).
    if (utilization > this.idleUtilization) {
      this.idleStreak = 0;
      return;
    }
    this.idleStreak++;
    if (this.trimsPending > 0) {
      this.options.native.trimMalloc();
      if (--this.trimsPending === 0) this.settle();
      return;
    }
    const rss = this.rss();
    if (rss === undefined) return;
    if (!(rss >= this.floorRss)) this.floorRss = rss;
    if (rss - this.floorRss < this.minGrowthBytes || this.idleStreak < this.idlePeriods) return;
    this.rssBeforeRelease = rss;
    this.options.native.startGarbageCollection();
    this.options.native.trimMalloc();
    this.trimsPending = TRIMS_AFTER_GC;
  }

  /**
   * Resident memory, or undefined when it cannot be read: libuv opens /proc/self/stat for it, which fails with
   * EMFILE when the process is out of file descriptors. Thrown from this timer it would end the process; the
   * release just waits for a period when it can read it.
   */
  private rss(): number | undefined {
    try {
      return process.memoryUsage.rss();
    } catch (err) {
      if (this.readErrors++ === 0) {
        this.options.logger.warn(
          { err: (err as Error).message },
          'idle memory release: cannot read resident memory (will retry each second)',
        );
      }
      return undefined;
    }
  }

  private settle(): void {
    this.options.native.releaseProgramPages();
    const rss = this.rss() ?? NaN;
    this.floorRss = rss;
    this.releases++;
    this.options.logger.debug(
      { rssBeforeMiB: mib(this.rssBeforeRelease), rssAfterMiB: Number.isNaN(rss) ? null : mib(rss) },
      'traffic stopped: returned unused memory to the kernel',
    );
  }
}

function mib(bytes: number): number {
  return Math.round((bytes / 1048576) * 10) / 10;
}

/** Starts the release for this process, or warns once and returns undefined when the native helper is missing. */
export function startIdleMemoryRelease(logger: Logger): IdleMemoryReleaser | undefined {
  const native = loadNativeMemory();
  if (native === undefined) {
    logger.warn('native helper not built (npm install runs node-gyp): memory stays at its peak after traffic bursts');
    return undefined;
  }
  const releaser = new IdleMemoryReleaser({ logger, native });
  releaser.start();
  return releaser;
}
