// Gives memory back to the kernel when traffic stops. After a burst a Node process keeps its peak: V8 shrinks
// its heap only after ~10 s of quiet, and glibc keeps freed socket buffers because live ones pin the top of its
// heap. In two steps, so that a pause between bursts does not make the next burst dear:
// - after IDLE_PERIODS_BEFORE_TRIM idle periods, if resident memory grew since the last release: trim malloc's
//   arenas and let go of the Node binary's pages serving does not use (1-5 ms; the burst's scavenges already freed
//   most dead socket buffers, so this returns most of its growth);
// - after IDLE_PERIODS_BEFORE_GC idle periods: a memory-reducing incremental GC, then trims on the next idle
//   periods once it has freed dead Buffers' memory. Envoy's shrink_heap overload action does the same for tcmalloc.
// The GC is what costs: it shrinks the heap and hands its pages back, so the next burst faults ~14,000 pages in
// again and grows the heap back (measured, h2load bursts after ~3-7 s pauses: ~2x the CPU per HTTP/2 stream; keeping
// bytecode, --no-flush-bytecode, took off only ~8 %; malloc_trim and the binary's pages measured no dearer than no
// release). Hence the longer quiet: V8's own memory reducer does the same after ~8 s anyway.
// At start, the binary's pages startup touched and serving does not use (under load, ~21 of the ~42 MiB of it a
// sidecar's RSS counted) are let go too: see releaseProgramPages in src/native.
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
/** Idle periods in a row before malloc is trimmed and the binary's pages let go (cheap for the next burst). */
const IDLE_PERIODS_BEFORE_TRIM = 2;
/**
 * Idle periods in a row before the memory-reducing GC. It makes the NEXT burst dearer (measured, h2load bursts
 * after ~3-5 s of quiet: ~14 -> ~27 µs of CPU per HTTP/2 stream), so only a longer quiet counts as traffic
 * stopped; V8's own memory reducer waits about as long.
 */
const IDLE_PERIODS_BEFORE_GC = 10;

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
  /** Consecutive idle periods before malloc is trimmed (default IDLE_PERIODS_BEFORE_TRIM). */
  readonly idlePeriods?: number;
  /** Consecutive idle periods before the memory-reducing GC (default IDLE_PERIODS_BEFORE_GC, at least idlePeriods). */
  readonly gcIdlePeriods?: number;
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
  /** Memory grew since the last GC: one is due once the quiet lasts gcIdlePeriods. */
  private gcDue = false;
  private readonly idlePeriods: number;
  private readonly gcIdlePeriods: number;
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
    this.idlePeriods = Math.max(1, options.idlePeriods ?? IDLE_PERIODS_BEFORE_TRIM);
    this.gcIdlePeriods = Math.max(this.idlePeriods, options.gcIdlePeriods ?? IDLE_PERIODS_BEFORE_GC);
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
      if (--this.trimsPending === 0) this.settle(true);
      return;
    }
    if (this.gcDue && this.idleStreak >= this.gcIdlePeriods) {
      this.gcDue = false;
      this.rssBeforeRelease = this.rss() ?? NaN;
      this.options.native.startGarbageCollection();
      this.options.native.trimMalloc();
      this.trimsPending = TRIMS_AFTER_GC;
      return;
    }
    const rss = this.rss();
    if (rss === undefined) return;
    if (!(rss >= this.floorRss)) this.floorRss = rss;
    if (rss - this.floorRss < this.minGrowthBytes || this.idleStreak < this.idlePeriods) return;
    // Traffic paused: what costs the next burst nothing now, the GC if the quiet lasts.
    this.gcDue = true;
    this.rssBeforeRelease = rss;
    this.options.native.trimMalloc();
    this.settle(false);
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

  private settle(gc: boolean): void {
    this.options.native.releaseProgramPages();
    const rss = this.rss() ?? NaN;
    this.floorRss = rss;
    this.releases++;
    this.options.logger.debug(
      { gc, rssBeforeMiB: Number.isNaN(this.rssBeforeRelease) ? null : mib(this.rssBeforeRelease), rssAfterMiB: Number.isNaN(rss) ? null : mib(rss) },
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
