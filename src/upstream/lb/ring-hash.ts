// Consistent-hash ring (Ketama style, after Envoy's ring_hash): sticky picks by request hash, minimal reshuffle on change.
import type { EndpointState, LoadBalancer, Random } from '../types.js';
import { weightOf } from './healthy.js';
import { hashString } from './hash.js';

/** Hard cap on entries whatever maxRingSize says (Envoy allows 8M): keeps a rebuild fast and the ring a few MB. */
export const RING_ENTRY_CAP = 1 << 20;
/** Endpoint indices are packed below the hash in one float64 (2^32 * 2^20 < 2^53): at most 2^20 endpoints. */
const INDEX_BITS = 2 ** 20;

export interface RingHashOptions {
  readonly minRingSize: number;
  readonly maxRingSize: number;
}

export class RingHashLoadBalancer implements LoadBalancer {
  private readonly hosts: EndpointState[];
  /** Sorted entry hashes, and for each entry the index of its host in `hosts`. */
  readonly ringHashes: Uint32Array;
  private readonly ringHosts: Uint32Array;

  constructor(endpoints: readonly EndpointState[], opts: RingHashOptions, private readonly random: Random = Math.random) {
    this.hosts = endpoints.slice(0, INDEX_BITS);
    const n = this.hosts.length;
    const counts = entryCounts(this.hosts, opts);
    let total = 0;
    for (let i = 0; i < n; i++) total += counts[i]!;
    // Pack (hash, host index) into one number so a numeric typed-array sort orders by hash, ties by index,
    // without an object per entry.
    const packed = new Float64Array(total);
    let p = 0;
    for (let i = 0; i < n; i++) {
      const prefix = this.hosts[i]!.key + '_';
      for (let j = 0; j < counts[i]!; j++) packed[p++] = hashString(prefix + j) * INDEX_BITS + i;
    }
    packed.sort();
    this.ringHashes = new Uint32Array(total);
    this.ringHosts = new Uint32Array(total);
    for (let k = 0; k < total; k++) {
      const v = packed[k]!;
      const idx = v % INDEX_BITS;
      this.ringHosts[k] = idx;
      this.ringHashes[k] = (v - idx) / INDEX_BITS;
    }
  }

  get size(): number {
    return this.ringHashes.length;
  }

  pick(hash: number | undefined): EndpointState | null {
    const n = this.hosts.length;
    if (n === 0) return null;
    if (hash === undefined) return this.hosts[Math.min(n - 1, Math.floor(this.random() * n))]!;
    const h = hash >>> 0;
    const ring = this.ringHashes;
    // First entry >= h; past the end wraps to the start of the ring.
    let lo = 0;
    let hi = ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ring[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.hosts[this.ringHosts[lo === ring.length ? 0 : lo]!]!;
  }
}

/**
 * Entries per host. Deliberately unlike Envoy's formula (which normalises by the set's total weight, so removing
 * one host also moves ~1/n of the other hosts' keys): each host gets entries by its own weight relative to the
 * lightest host, `minRingSize` entries per lightest-weight unit. With equal weights a host's entries (and so its
 * keys) do not depend on the other hosts at all: removing one endpoint moves only its keys. The ring is
 * scaled down proportionally when it would exceed min(maxRingSize, RING_ENTRY_CAP), and never below minRingSize.
 */
function entryCounts(hosts: readonly EndpointState[], opts: RingHashOptions): Uint32Array {
  const n = hosts.length;
  const counts = new Uint32Array(n);
  if (n === 0) return counts;
  const minRing = Math.max(1, Math.floor(opts.minRingSize > 0 ? opts.minRingSize : 1024));
  const maxRing = Math.max(minRing, Math.min(opts.maxRingSize > 0 ? opts.maxRingSize : RING_ENTRY_CAP, RING_ENTRY_CAP));
  let minW = Infinity;
  let units = 0;
  for (const h of hosts) minW = Math.min(minW, weightOf(h));
  for (const h of hosts) units += weightOf(h) / minW;
  let perUnit = minRing;
  if (perUnit * units > maxRing) perUnit = maxRing / units;
  for (let i = 0; i < n; i++) counts[i] = Math.max(1, Math.ceil((weightOf(hosts[i]!) / minW) * perUnit));
  return counts;
}
