// The load generator of the interception bench (bench/intercept.ts), run inside a pod's network namespace (and
// under a given uid with setpriv): one closed-loop (autocannon) or fixed-rate run, its LoadResult as one JSON line.
//   node dist/bench/intercept-load.js '{"kind":"closed"|"fixed","address":..,"port":..,"host":..,"durationSec":..,...}'
import { runAutocannon, runFixedRate } from './load.js';

interface Spec {
  readonly kind: 'closed' | 'fixed';
  readonly address: string;
  readonly port: number;
  readonly host?: string;
  readonly durationSec: number;
  readonly connections: number;
  readonly rate: number;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as Spec;
const base = { address: spec.address, port: spec.port, path: '/bench', ...(spec.host ? { host: spec.host } : {}), durationSec: spec.durationSec };
const result =
  spec.kind === 'closed'
    ? await runAutocannon({ ...base, connections: spec.connections })
    : await runFixedRate({ ...base, rate: spec.rate, maxSockets: spec.connections, warmupSec: 1 });
process.stdout.write(`${JSON.stringify(result)}\n`);
