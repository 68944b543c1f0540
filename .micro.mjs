import { BenchMesh } from './dist/bench/xds-push-lib.js';
import { parseMeshConfig } from './dist/xds/mesh-config.js';
import { buildNodeSnapshot, resourcesVersion, meshVersion, SERVED_TYPES, selectResources } from './dist/xds/snapshot-cache.js';
const mesh = new BenchMesh(100);
const nodes = Array.from({ length: 20 }, (_, i) => ({ id: `p-${i}`, service: `svc-${i}`, namespace: 'default', serviceAccount: `svc-${i}`, appPort: 30000 + i, inboundPort: 0, outboundPort: 0 }));
const T = { parse: 0, meshVersion: 0, compile1: 0, nodes: 0, versions: 0 };
const cpu0 = process.cpuUsage();
for (let r = 0; r < 40; r++) {
  mesh.edit(r % 2 ? 'routes' : 'endpoints');
  const text = mesh.text();
  let t = performance.now();
  const m = parseMeshConfig(text);
  T.parse += performance.now() - t; t = performance.now();
  meshVersion(m);
  T.meshVersion += performance.now() - t; t = performance.now();
  const snaps = [buildNodeSnapshot(m, nodes[0])];
  T.compile1 += performance.now() - t; t = performance.now();
  for (const n of nodes.slice(1)) snaps.push(buildNodeSnapshot(m, n));
  T.nodes += performance.now() - t; t = performance.now();
  for (const s of snaps) for (const ty of SERVED_TYPES) resourcesVersion(selectResources(s, ty, '*'));
  T.versions += performance.now() - t;
}
const c = process.cpuUsage(cpu0);
for (const [k, v] of Object.entries(T)) console.log(k.padEnd(12), (v / 40).toFixed(2), 'ms/edit');
console.log('cpu/edit', ((c.user + c.system) / 1000 / 40).toFixed(1));
