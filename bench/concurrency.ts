// `npm run bench:concurrency`: closed-loop small-response throughput through `pillion proxy --concurrency 1` and
// `--concurrency 2` (and `2` with round-robin scheduling, NODE_CLUSTER_SCHED_POLICY=rr), in back-to-back pairs with
// the order alternating; wrk and the backend pinned to the last CPU (taskset) so the proxy has the others to
// itself where the machine has more than one. Reports req/s, p99, and the proxy's CPU time per request (every
// process of it: primary and workers, from /proc). About a minute. `runConcurrencyCase` is the same for
// bench/run.ts. Flags: --pairs N (1-10, default 3), --seconds S (per run, default 5), --no-rr.
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { freePorts, resolveFromHere, waitForHttp, type ChildGroup, type ManagedChild } from '../src/cli/children.js';
import { benchChildGroup } from './child-group.js';
import { runCommand, runWrk, type LoadResult } from './load.js';
import { treeCpuMs } from './proc-cpu.js';
import { median } from './report.js';

const NODE = process.execPath;

export interface ConcurrencyOptions {
  readonly group: ChildGroup;
  /** Where the mesh file goes. */
  readonly dir: string;
  /** Back-to-back pairs (default 3). */
  readonly pairs?: number;
  /** Seconds of each wrk run (whole seconds; default 5). */
  readonly seconds?: number;
  /** wrk connections (default 50, as the small case of bench/run.ts). */
  readonly connections?: number;
  /** Also measure --concurrency 2 with round-robin scheduling (default true). */
  readonly rr?: boolean;
  readonly log?: (line: string) => void;
}

export interface ConcurrencyRun {
  readonly target: string;
  readonly pair: number;
  readonly rps: number;
  readonly p99: number;
  readonly errors: number;
  /** CPU time (user + system) of the proxy's processes per request, in microseconds. */
  readonly cpuUsPerRequest: number;
  /** How wrk's connections spread over the workers (empty for --concurrency 1). */
  readonly connectionsPerWorker: readonly number[];
}

export interface ConcurrencyResult {
  /** Median over pairs of rps(--concurrency 2) / rps(--concurrency 1). */
  readonly ratio: number;
  readonly ratios: readonly number[];
  /** Median of rps(2, round-robin) / rps(1), null when not measured. */
  readonly rrRatio: number | null;
  /** Median CPU per request of each target, µs. */
  readonly cpuUsPerRequest: Readonly<Record<string, number>>;
  readonly runs: readonly ConcurrencyRun[];
  /** CPUs of the machine, and where wrk and the backend were pinned (null: not pinned). */
  readonly cpus: number;
  readonly pinnedCpu: number | null;
  readonly conclusion: string;
}

interface Proxy {
  readonly name: string;
  readonly port: number;
  readonly admin: number;
  readonly primary: ManagedChild;
}

async function startProxy(group: ChildGroup, configPath: string, name: string, concurrency: number, policy: 'none' | 'rr'): Promise<Proxy> {
  const [admin, outbound, inbound] = await freePorts(3);
  const env = { ...process.env };
  if (concurrency > 1) env.NODE_CLUSTER_SCHED_POLICY = policy;
  const primary = group.spawn({
    name,
    command: NODE,
    args: [
      ...NODE_FLAGS,
      resolveFromHere(import.meta.url, '../src/cli/main.js'),
      'proxy', '--config', configPath, '--service', 'bench-client', '--node-id', name, '--admin-port', String(admin),
      '--outbound-port', String(outbound), '--inbound-port', String(inbound), '--access-log', 'off', '--concurrency', String(concurrency),
    ],
    env,
    keepLines: 200,
  });
  await waitForHttp(admin!, '/ready', 20_000, { child: primary });
  return { name, port: outbound!, admin: admin!, primary };
}

/** Connections each worker accepted so far (Envoy's listener.<name>.worker_<i>.downstream_cx_total), summed over listeners. */
async function perWorkerConnections(proxy: Proxy): Promise<number[]> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.admin}/stats?filter=downstream_cx_total`)).text();
  const out: number[] = [];
  for (const m of text.matchAll(/\.worker_(\d+)\.downstream_cx_total: (\d+)/g)) out[Number(m[1])] = (out[Number(m[1])] ?? 0) + Number(m[2]);
  return out;
}

async function measure(proxy: Proxy, seconds: number, connections: number, cpu: number | undefined): Promise<{ load: LoadResult; cpuUs: number; split: number[] }> {
  // The primary's process tree: its workers are its children.
  const pid = proxy.primary.pid as number;
  const before = treeCpuMs(pid) ?? NaN;
  const cxBefore = await perWorkerConnections(proxy);
  const load = await runWrk({ port: proxy.port, path: '/small', host: 'backend:8080', connections, durationSec: seconds, ...(cpu === undefined ? {} : { cpu }) });
  const after = treeCpuMs(pid) ?? NaN;
  const split = (await perWorkerConnections(proxy)).map((n, i) => n - (cxBefore[i] ?? 0));
  return { load, cpuUs: load.requests > 0 ? ((after - before) * 1e3) / load.requests : NaN, split };
}

export async function runConcurrencyCase(opts: ConcurrencyOptions): Promise<ConcurrencyResult> {
  const log = opts.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const pairs = Math.max(1, Math.min(10, opts.pairs ?? 3));
  const seconds = Math.max(1, Math.round(opts.seconds ?? 5));
  const connections = opts.connections ?? 50;
  const n = cpus().length;
  const haveTaskset = (await runCommand('taskset', ['-c', '0', 'true'], 5_000)).code === 0;
  // The last CPU for wrk and the backend, the rest for the proxy; with one CPU there is nothing to separate.
  const pinnedCpu = n >= 2 && haveTaskset ? n - 1 : null;

  const backendArgs = [resolveFromHere(import.meta.url, './backend-server.js')];
  const backend = opts.group.spawn({
    name: 'backend',
    command: pinnedCpu === null ? NODE : 'taskset',
    args: pinnedCpu === null ? backendArgs : ['-c', String(pinnedCpu), NODE, ...backendArgs],
  });
  const backendPort = (await backend.waitForJson({ msg: 'backend listening' }, 10_000)).http as number;
  const configPath = join(opts.dir, 'concurrency.mesh.yaml');
  writeFileSync(
    configPath,
    `services:
  - name: bench-client
    ports: [{ port: 8000, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    policy: { mtls: DISABLE }
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendPort} }]
    policy: { loadBalancer: { policy: least_request }, connectTimeout: 1s, timeout: 30s, mtls: DISABLE }
`,
  );
  const targets: Proxy[] = [
    await startProxy(opts.group, configPath, 'concurrency-1', 1, 'none'),
    await startProxy(opts.group, configPath, 'concurrency-2', 2, 'none'),
  ];
  if (opts.rr !== false) targets.push(await startProxy(opts.group, configPath, 'concurrency-2-rr', 2, 'rr'));
  log(`${n} CPUs; wrk and the backend ${pinnedCpu === null ? 'not pinned' : `pinned to CPU ${pinnedCpu}`}; the proxy unpinned; ${pairs} pairs of ${seconds} s runs, ${connections} connections, ~50 B responses`);
  for (const t of targets) await measure(t, 1, connections, pinnedCpu ?? undefined); // warm-up: JIT, pools

  const runs: ConcurrencyRun[] = [];
  for (let pair = 0; pair < pairs; pair++) {
    const order = pair % 2 === 0 ? targets : [...targets].reverse();
    for (const t of order) {
      const { load, cpuUs, split } = await measure(t, seconds, connections, pinnedCpu ?? undefined);
      runs.push({ target: t.name, pair, rps: load.rps, p99: load.p99, errors: load.errors + load.non2xx, cpuUsPerRequest: cpuUs, connectionsPerWorker: split });
      log(
        `  pair ${pair + 1} ${t.name.padEnd(17)} ${Math.round(load.rps).toString().padStart(7)} req/s  p99 ${load.p99.toFixed(2)} ms  ${cpuUs.toFixed(1)} µs CPU/req  errors ${load.errors + load.non2xx}` +
          (split.length > 0 ? `  connections per worker ${split.join('/')}` : ''),
      );
    }
  }
  const rpsOf = (name: string, pair: number): number => runs.find((r) => r.target === name && r.pair === pair)?.rps ?? NaN;
  const ratios = Array.from({ length: pairs }, (_, p) => rpsOf('concurrency-2', p) / rpsOf('concurrency-1', p));
  const rrRatios = opts.rr === false ? [] : Array.from({ length: pairs }, (_, p) => rpsOf('concurrency-2-rr', p) / rpsOf('concurrency-1', p));
  const cpuUsPerRequest: Record<string, number> = {};
  for (const t of targets) cpuUsPerRequest[t.name] = median(runs.filter((r) => r.target === t.name).map((r) => r.cpuUsPerRequest));
  const ratio = median(ratios);
  const rrRatio = rrRatios.length === 0 ? null : median(rrRatios);
  const c1 = cpuUsPerRequest['concurrency-1']!;
  const c2 = cpuUsPerRequest['concurrency-2']!;
  const verdict = ratio >= 1.1 ? 'a second worker pays here' : ratio > 0.9 ? 'a second worker makes no clear difference here' : 'a second worker costs throughput here';
  const conclusion =
    `--concurrency 2 gives ${ratio.toFixed(2)}x the req/s of --concurrency 1 (median of ${pairs} pairs) at ${c2.toFixed(1)} vs ${c1.toFixed(1)} µs of proxy CPU per request: ${verdict}. ` +
    (n <= 2
      ? `With ${n} CPUs shared by the proxy, wrk and the backend (load average ${loadavg()[0]!.toFixed(1)} at the end), a second worker can only take CPU from its neighbours; ` +
        'this run cannot show how workers scale with free cores (that needs 4+ CPUs with wrk and the backend pinned away).'
      : `wrk and the backend ran on CPU ${pinnedCpu ?? '-'}; load average ${loadavg()[0]!.toFixed(1)} at the end.`);
  for (const t of targets) await t.primary.stop();
  await backend.stop();
  return { ratio, ratios, rrRatio, cpuUsPerRequest, runs, cpus: n, pinnedCpu, conclusion };
}

// CLI entry: `node dist/bench/concurrency.js`.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { pairs: { type: 'string' }, seconds: { type: 'string' }, 'no-rr': { type: 'boolean', default: false } } });
  const g = benchChildGroup('bench:concurrency');
  const dir = mkdtempSync(join(tmpdir(), 'pillion-bench-concurrency-'));
  runConcurrencyCase({
    group: g,
    dir,
    ...(values.pairs === undefined ? {} : { pairs: Number(values.pairs) }),
    ...(values.seconds === undefined ? {} : { seconds: Number(values.seconds) }),
    rr: values['no-rr'] !== true,
  })
    .then(async (r) => {
      process.stdout.write(
        `\nreq/s ratio --concurrency 2 / 1: median ${r.ratio.toFixed(2)} (pairs: ${r.ratios.map((x) => x.toFixed(2)).join(', ')})` +
          (r.rrRatio === null ? '' : `; with round-robin scheduling: median ${r.rrRatio.toFixed(2)}`) +
          `\nproxy CPU per request, µs (median): ${Object.entries(r.cpuUsPerRequest).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}\n${r.conclusion}\n`,
      );
      await g.close();
      rmSync(dir, { recursive: true, force: true });
    })
    .catch(async (err: unknown) => {
      process.stderr.write(`bench:concurrency failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      await g.close();
      rmSync(dir, { recursive: true, force: true });
      process.exit(1);
    });
}
