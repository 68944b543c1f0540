// Envoy's priority load: the whole percent of traffic each priority level takes, from each level's health and the
// overprovisioning factor, and which levels are in panic. Pure; computed when a cluster rebuilds its balancer.
// Follows Envoy's load_balancer_impl.cc (recalculatePerPriorityState / recalculatePerPriorityPanic /
// recalculateLoadInTotalPanic) and the "Priority levels" and "Panic threshold" pages of its architecture overview.

/** One priority level's endpoint counts. */
export interface LevelCounts {
  /** Every endpoint of the level. */
  readonly total: number;
  /** Endpoints that may take traffic (isUsable). */
  readonly usable: number;
  /** Endpoints panic mode may fall back to (isPanicCandidate). */
  readonly panicCandidates: number;
}

export interface PriorityLoad {
  /** Per level, in whole percents: the level's health (usable share × overprovisioning factor, capped at 100). */
  readonly health: readonly number[];
  /** Per level, in whole percents summing to 100: the share of requests sent to the level. */
  readonly load: readonly number[];
  /** Per level: balance over the panic candidates rather than the usable endpoints. */
  readonly panic: readonly boolean[];
}

/** min(100, factor × usable / total) in integer percent, as Envoy (factor in percent: 140 = 1.4). */
export function levelHealth(c: LevelCounts, overprovisioningFactor: number): number {
  if (c.total === 0) return 0;
  return Math.min(100, Math.floor((overprovisioningFactor * c.usable) / c.total));
}

/**
 * Envoy's algorithm: each level takes its health (normalized by the total health when that is below 100) until the
 * 100 % is used up, the rounding remainder going to the first level with any health. While the normalized total is
 * 100 no level panics; below it, a level whose usable share is under `panicThreshold` percent balances over its panic
 * candidates; when every level panics, the load follows the number of panic candidates per level (Envoy counts every
 * host there; Pillion's panic never uses the endpoints the control plane marked unhealthy, so it counts those it may use).
 */
export function computePriorityLoad(levels: readonly LevelCounts[], overprovisioningFactor: number, panicThreshold: number): PriorityLoad {
  const n = levels.length;
  const health = levels.map((c) => levelHealth(c, overprovisioningFactor));
  const load = new Array<number>(n).fill(0);
  const panic = new Array<boolean>(n).fill(false);
  if (n === 0) return { health, load, panic };
  let sum = 0;
  for (const h of health) sum += h;
  const normalized = Math.min(100, sum);
  if (normalized > 0) {
    let remaining = 100;
    let firstHealthy = -1;
    for (let i = 0; i < n; i++) {
      if (firstHealthy < 0 && health[i]! > 0) firstHealthy = i;
      load[i] = Math.min(remaining, Math.floor((health[i]! * 100) / normalized));
      remaining -= load[i]!;
    }
    load[firstHealthy]! += remaining;
  }
  const threshold = Math.min(100, Math.max(0, panicThreshold));
  if (threshold === 0 && normalized === 0) {
    // Nothing usable and panic disabled: the load must add up somewhere; level 0 has nothing to pick either.
    load[0] = 100;
    return { health, load, panic };
  }
  let totalPanic = true;
  for (let i = 0; i < n; i++) {
    const c = levels[i]!;
    const usablePercent = c.total === 0 ? 0 : (100 * c.usable) / c.total;
    panic[i] = normalized === 100 ? false : usablePercent < threshold;
    totalPanic &&= panic[i]!;
  }
  if (totalPanic) loadInTotalPanic(levels, load);
  return { health, load, panic };
}

/** Every level panics: spread by panic candidates per level, the remainder to the first level that has any. */
function loadInTotalPanic(levels: readonly LevelCounts[], load: number[]): void {
  let total = 0;
  for (const c of levels) total += c.panicCandidates;
  load.fill(0);
  if (total === 0) {
    load[0] = 100;
    return;
  }
  let remaining = 100;
  let first = -1;
  for (let i = 0; i < levels.length; i++) {
    const c = levels[i]!.panicCandidates;
    if (first < 0 && c > 0) first = i;
    load[i] = Math.floor((100 * c) / total);
    remaining -= load[i]!;
  }
  load[first]! += remaining;
}
