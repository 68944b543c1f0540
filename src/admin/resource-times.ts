// When the proxy took each xDS resource's current bytes: Envoy's last_updated in /config_dump. A resource
// resent unchanged (state of the world sends every resource of a type on each update) keeps its first time.
import type { RawResource, ResourceSet } from '../config/snapshot.js';

interface Taken {
  readonly value: Uint8Array;
  readonly atMs: number;
}

const key = (r: RawResource): string => `${r.typeUrl}\u0000${r.name}`;

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a === b || Buffer.compare(a, b) === 0;
}

export class ResourceTimes {
  private taken = new Map<string, Taken>();

  /** Records a newly applied set; resources it no longer holds are forgotten (the map stays the config's size). */
  update(set: ResourceSet, nowMs: number): void {
    const next = new Map<string, Taken>();
    for (const list of [set.listeners, set.routes, set.clusters, set.endpoints]) {
      for (const r of list) {
        const old = this.taken.get(key(r));
        next.set(key(r), old !== undefined && sameBytes(old.value, r.value) ? old : { value: r.value, atMs: nowMs });
      }
    }
    this.taken = next;
  }

  /** When `r`'s bytes were taken; 0 for a resource never applied. */
  get(r: RawResource): number {
    return this.taken.get(key(r))?.atMs ?? 0;
  }
}
