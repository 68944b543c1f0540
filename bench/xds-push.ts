// xDS push benchmark (`npm run bench:xds`): how long from "mesh config file saved" to "change applied by every
// proxy", and how much memory the control server needs for a large mesh.
//
// 1. Push latency: a generated mesh of 100 services, `pillion control` and 20 `pillion proxy --xds` child
//    processes. W warm-up rounds (reported on their own line: the proxies' config path is still being
//    JIT-compiled), then K measured rounds: edit the file (alternately one service's endpoints → EDS, and one extra route →
//    RDS), note Date.now() just before the save, and wait (≤ 5 s) until every proxy logs `xds ACK` of a new
//    version of that type; latency = the ACK line's pino `time` − save time (same machine clock). The control
//    server's file-watch debounce (25 ms, xds/server.ts → xds/watch.ts) is inside the measured latency.
// 2. Memory: `pillion control` with a 1,000-service mesh and a few proxies connected (so per-node snapshots are
//    compiled): VmRSS / VmHWM from /proc and the V8 heap after a forced GC (a SIGUSR2 hook preloaded with
//    --import; it only prints process.memoryUsage()), plus a few push rounds at that size (informative).
//
// Prints markdown tables and PASS/FAIL for "p99 < 200 ms"; writes .bench-out/xds-push.json.
// Flags: --quick (6 + 6 rounds, 5 proxies), --rounds N, --warmup-rounds N (default 40), --proxies N, --no-memory, --cpu-prof (control servers and the first
// proxy of each set write .cpuprofile files to .bench-out/xds-cpu/). Exit code 1 when the target fails.
import { benchChildGroup } from './child-group.js';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { freePorts, httpGet, readRss, resolveFromHere, sleep, type ManagedChild } from '../src/cli/children.js';
import {
  AckTracker,
  BenchMesh,
  fmtMiB,
  fmtMs,
  latencyStats,
  promValue,
  type EditKind,
  type LatencyStats,
  type XdsEvent,
} from './xds-push-lib.js';

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'warmup-rounds': { type: 'string' },
    proxies: { type: 'string' },
    'no-memory': { type: 'boolean', default: false },
    'cpu-prof': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('usage: node dist/bench/xds-push.js [--quick] [--rounds N] [--warmup-rounds N] [--proxies N] [--no-memory] [--cpu-prof]\n');
  process.exit(0);
}

function intFlag(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`--${name}: expected an integer ${min}..${max}, got "${value}"\n`);
    process.exit(2);
  }
  return n;
}

const quick = flags.quick === true;
const P = {
  services: 100,
  proxies: intFlag('proxies', flags.proxies, quick ? 5 : 20, 1, 100),
  rounds: intFlag('rounds', flags.rounds, quick ? 6 : 20, 1, 1000),
  // The config path of a fresh proxy is still being JIT-compiled for its first few dozen pushes (V8 optimizes
  // a function after enough calls, and most run once per push): measured in a row of their own, kept apart
  // from the steady state a long-running mesh sees.
  warmupRounds: intFlag('warmup-rounds', flags['warmup-rounds'], quick ? 6 : 40, 0, 1000),
  roundTimeoutMs: 5000,
  pauseMs: 200,
  memServices: 1000,
  memProxies: quick ? 2 : 5,
  memRounds: quick ? 2 : 5,
  memRoundTimeoutMs: 10_000,
  readyTimeoutMs: 90_000,
  targetP99Ms: 200,
};
/** The control server's file-watch debounce when started by `pillion control` (xds/server.ts default). */
const WATCH_DEBOUNCE_MS = 25;

const MAIN = resolveFromHere(import.meta.url, '../src/cli/main.js');
const outDir = resolve(process.cwd(), '.bench-out');
const log = (s: string): void => void process.stdout.write(`${s}\n`);

const group = benchChildGroup('bench:xds');

// ---- children ---------------------------------------------------------------------------------------------

interface Control {
  child: ManagedChild;
  xdsPort: number;
  adminPort: number;
}

/** Preloaded into the memory run's control server: on SIGUSR2, GC and print process.memoryUsage() as a JSON line. */
const MEMORY_HOOK = `let seq = 0;
process.on('SIGUSR2', () => {
  if (typeof globalThis.gc === 'function') globalThis.gc();
  process.stdout.write(JSON.stringify({ msg: 'bench memory', seq: ++seq, gc: typeof globalThis.gc === 'function', ...process.memoryUsage() }) + '\\n');
});`;

async function startControl(name: string, configFile: string, memoryHook: boolean): Promise<Control> {
  const nodeArgs = [...NODE_FLAGS, ...(memoryHook ? ['--expose-gc', '--import', `data:text/javascript,${encodeURIComponent(MEMORY_HOOK)}`] : [])];
  if (flags['cpu-prof']) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', join(outDir, 'xds-cpu'), '--cpu-prof-name', `${name}.cpuprofile`);
  const child = group.spawn({
    name,
    command: process.execPath,
    args: [...nodeArgs, MAIN, 'control', '--config', configFile, '--port', '0', '--admin-port', '0', '--log-level', 'info'],
    keepLines: 500,
  });
  const xds = await child.waitForJson({ msg: 'xds listening' }, 30_000);
  const admin = await child.waitForJson({ msg: 'control admin listening' }, 30_000);
  await child.waitForJson({ msg: 'mesh config loaded' }, 30_000);
  return { child, xdsPort: Number(xds.port), adminPort: Number(admin.port) };
}

interface BenchProxy {
  child: ManagedChild;
  tracker: AckTracker;
}

/** Starts `count` proxies (services svc-0..) and waits until every one logged `proxy ready`. */
async function startProxies(prefix: string, control: Control, count: number): Promise<BenchProxy[]> {
  const appPorts = await freePorts(count);
  const proxies: BenchProxy[] = [];
  for (let i = 0; i < count; i++) {
    const child = group.spawn({
      name: `${prefix}-${i}`,
      command: process.execPath,
      args: [
        ...NODE_FLAGS,
        // --cpu-prof: the first proxy of each set is profiled too (the others share the CPU with it).
        ...(flags['cpu-prof'] && i === 0
          ? ['--cpu-prof', '--cpu-prof-dir', join(outDir, 'xds-cpu'), '--cpu-prof-name', `${prefix}-${i}.cpuprofile`]
          : []),
        MAIN, 'proxy',
        '--xds', `127.0.0.1:${control.xdsPort}`,
        '--service', `svc-${i}`,
        '--node-id', `${prefix}-${i}`,
        '--admin-port', '0', '--inbound-port', '0', '--outbound-port', '0',
        '--app-port', String(appPorts[i]),
        '--access-log', 'off',
        '--log-level', 'info',
      ],
    });
    proxies.push({ child, tracker: new AckTracker(child) });
  }
  const t0 = Date.now();
  await Promise.all(proxies.map((p) => p.child.waitForJson({ msg: 'proxy ready' }, P.readyTimeoutMs)));
  log(`  ${count} proxies ready in ${Date.now() - t0} ms`);
  for (const p of proxies) {
    for (const type of ['listeners', 'routes', 'clusters', 'endpoints']) {
      if (p.tracker.version(type) === undefined) throw new Error(`${p.child.name}: ready but no ACK of ${type} seen`);
    }
  }
  return proxies;
}

async function metricsText(control: Control): Promise<string> {
  try {
    const r = await httpGet(control.adminPort, '/metrics', 5000);
    return r.status === 200 ? r.body : '';
  } catch {
    return '';
  }
}

/** CPU time (user + system) a process has used so far, from /proc/PID/stat; NaN when unreadable. */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th (clock ticks).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}
/** USER_HZ: 100 on every Linux build that matters (getconf CLK_TCK). */
const CLOCK_TICKS_PER_SECOND = 100;

// ---- push rounds ------------------------------------------------------------------------------------------

interface RoundResult {
  round: number;
  kind: EditKind;
  change: string;
  savedAt: number;
  /** Per proxy: ms from save to its ACK line, or null (failure). */
  latenciesMs: (number | null)[];
  /** ms from save to the control server's "mesh config applied" log line (debounce + parse + compile + write). */
  controlAppliedMs: number | null;
  /** Per proxy: its own response-received → ACK time, when it logs one. */
  applyMs: number[];
  failures: { proxy: string; why: string }[];
}

/** The pino `time` of the control server's first "mesh config applied" line logged at or after `since`. */
async function controlAppliedAt(control: Control, since: number, timeoutMs: number): Promise<number | undefined> {
  const parse = (line: string): number | undefined => {
    if (!line.includes('"mesh config applied"')) return undefined;
    try {
      const rec = JSON.parse(line) as { msg?: unknown; time?: unknown };
      return rec.msg === 'mesh config applied' && typeof rec.time === 'number' && rec.time >= since ? rec.time : undefined;
    } catch {
      return undefined;
    }
  };
  // The line may still be in the pipe when the proxies' ACKs have arrived: wait for it (bounded).
  const line = await control.child.waitForLine((l) => parse(l) !== undefined, timeoutMs).catch(() => undefined);
  return line === undefined ? undefined : parse(line);
}

async function runRounds(
  label: string,
  control: Control,
  mesh: BenchMesh,
  file: string,
  proxies: BenchProxy[],
  rounds: number,
  timeoutMs: number,
): Promise<RoundResult[]> {
  const results: RoundResult[] = [];
  for (let round = 1; round <= rounds; round++) {
    const kind: EditKind = round % 2 === 1 ? 'endpoints' : 'routes';
    const before = proxies.map((p) => p.tracker.version(kind));
    const change = mesh.edit(kind);
    // Waiters first, then the save: no ACK can slip between the two.
    const waits = proxies.map((p, i) =>
      p.tracker.next((e: XdsEvent) => e.type === kind && (!e.ack || e.version !== before[i]), timeoutMs),
    );
    const savedAt = Date.now();
    mesh.save(file);
    const events = await Promise.all(waits);
    const failures: RoundResult['failures'] = [];
    const latenciesMs = events.map((e, i) => {
      const name = proxies[i]!.child.name;
      if (e === undefined) {
        failures.push({ proxy: name, why: proxies[i]!.child.running ? `no ACK of a new ${kind} version within ${timeoutMs} ms` : 'proxy exited' });
        return null;
      }
      if (!e.ack) {
        failures.push({ proxy: name, why: `NACK of ${kind} version ${e.version}: ${e.reason ?? '?'}` });
        return null;
      }
      return e.time - savedAt;
    });
    const ok = latenciesMs.filter((v): v is number => v !== null);
    const s = latencyStats(ok);
    const appliedAt = await controlAppliedAt(control, savedAt, 2000);
    const controlAppliedMs = appliedAt === undefined ? null : appliedAt - savedAt;
    log(
      `  ${label} round ${String(round).padStart(2)} ${kind.padEnd(9)} ${change}: control pushed at ` +
        `${controlAppliedMs === null ? 'n/a' : fmtMs(controlAppliedMs)}, first ACK ${fmtMs(s.min)}, last ACK ${fmtMs(s.max)}` +
        `${failures.length ? `, ${failures.length} FAILED (${failures[0]!.why})` : ''}`,
    );
    const applyMs = events.flatMap((e) => (e?.applyMs === undefined ? [] : [e.applyMs]));
    results.push({ round, kind, change, savedAt, latenciesMs, controlAppliedMs, applyMs, failures });
    await sleep(P.pauseMs);
  }
  return results;
}

interface PushSummary {
  all: LatencyStats;
  byKind: Record<EditKind, LatencyStats>;
  failures: number;
  samplesExpected: number;
  controlPushMeanMs: number | undefined;
  controlPushes: number | undefined;
  /** Per round: save → control server's "mesh config applied" log line. */
  controlApplied: LatencyStats;
  /** Per proxy and round: response received → applied and ACKed, inside the proxy. */
  proxyApply: LatencyStats;
}

function summarize(results: RoundResult[], proxies: number, metricsBefore: string, metricsAfter: string): PushSummary {
  const values = (k?: EditKind): number[] =>
    results.filter((r) => k === undefined || r.kind === k).flatMap((r) => r.latenciesMs.filter((v): v is number => v !== null));
  const h = 'pillion_control_push_duration_seconds';
  const dSum = (promValue(metricsAfter, `${h}_sum`) ?? NaN) - (promValue(metricsBefore, `${h}_sum`) ?? NaN);
  const dCount = (promValue(metricsAfter, `${h}_count`) ?? NaN) - (promValue(metricsBefore, `${h}_count`) ?? NaN);
  return {
    all: latencyStats(values()),
    byKind: { endpoints: latencyStats(values('endpoints')), routes: latencyStats(values('routes')) },
    failures: results.reduce((n, r) => n + r.failures.length, 0),
    samplesExpected: results.length * proxies,
    controlPushMeanMs: Number.isFinite(dSum) && dCount > 0 ? (dSum / dCount) * 1000 : undefined,
    controlPushes: Number.isFinite(dCount) ? dCount : undefined,
    controlApplied: latencyStats(results.map((r) => r.controlAppliedMs).filter((v): v is number => v !== null)),
    proxyApply: latencyStats(results.flatMap((r) => r.applyMs)),
  };
}

// ---- memory -----------------------------------------------------------------------------------------------

interface MemorySample {
  when: string;
  rssBytes: number | undefined;
  peakRssBytes: number | undefined;
  heapUsedBytes: number | undefined;
  heapTotalBytes: number | undefined;
  externalBytes: number | undefined;
  /** From the control server's /metrics, when it exports them (prom-client default metrics). */
  metricsRssBytes: number | undefined;
  metricsHeapUsedBytes: number | undefined;
}

let memorySeq = 0;
async function sampleMemory(control: Control, when: string): Promise<MemorySample> {
  const pid = control.child.pid;
  let heap: Record<string, unknown> | undefined;
  if (pid !== undefined) {
    const seq = ++memorySeq;
    control.child.signal('SIGUSR2');
    heap = await control.child.waitForJson({ msg: 'bench memory', seq }, 10_000).catch(() => undefined);
  }
  // Read /proc after the GC: RSS then reflects what the heap needs now (V8 may keep freed pages mapped).
  const rss = pid === undefined ? undefined : readRss(pid);
  const metrics = await metricsText(control);
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
  return {
    when,
    rssBytes: rss ? rss.rssKiB * 1024 : undefined,
    peakRssBytes: rss ? rss.peakKiB * 1024 : undefined,
    heapUsedBytes: num(heap?.heapUsed),
    heapTotalBytes: num(heap?.heapTotal),
    externalBytes: num(heap?.external),
    metricsRssBytes: promValue(metrics, 'process_resident_memory_bytes'),
    metricsHeapUsedBytes: promValue(metrics, 'nodejs_heap_size_used_bytes'),
  };
}

// ---- report -----------------------------------------------------------------------------------------------

function pushTable(title: string, s: PushSummary): string {
  const row = (name: string, l: LatencyStats): string =>
    `| ${name} | ${l.samples} | ${fmtMs(l.p50)} | ${fmtMs(l.p99)} | ${fmtMs(l.max)} | ${fmtMs(l.mean)} |`;
  return [
    `### ${title}`,
    '',
    '| change | samples (round × proxy) | p50 | p99 | max | mean |',
    '|---|---:|---:|---:|---:|---:|',
    row('all', s.all),
    row('endpoints (EDS)', s.byKind.endpoints),
    row('routes (RDS)', s.byKind.routes),
    row('↳ of which: save → control pushed ("mesh config applied", per round)', s.controlApplied),
    row('↳ inside each proxy: response received → applied and ACKed (applyMs)', s.proxyApply),
    '',
    `failures (no ACK of a new version within the round timeout, or a NACK): ${s.failures} of ${s.samplesExpected}`,
    `control server, fs event → DiscoveryResponse written (pillion_control_push_duration_seconds, mean over ` +
      `${s.controlPushes ?? 'n/a'} pushes): ${s.controlPushMeanMs === undefined ? 'n/a' : `${s.controlPushMeanMs.toFixed(1)} ms`}`,
  ].join('\n');
}

function memoryTable(samples: MemorySample[]): string {
  const lines = [
    '| control server, 1,000 services | VmRSS | VmHWM (peak) | V8 heap used (after GC) | V8 heap total | external | /metrics RSS |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const m of samples) {
    lines.push(
      `| ${m.when} | ${fmtMiB(m.rssBytes)} | ${fmtMiB(m.peakRssBytes)} | ${fmtMiB(m.heapUsedBytes)} | ${fmtMiB(m.heapTotalBytes)} | ` +
        `${fmtMiB(m.externalBytes)} | ${m.metricsRssBytes === undefined ? 'not exported' : fmtMiB(m.metricsRssBytes)} |`,
    );
  }
  return lines.join('\n');
}

// ---- main -------------------------------------------------------------------------------------------------

async function main(): Promise<boolean> {
  mkdirSync(outDir, { recursive: true });
  const startedAt = new Date();
  log(`# Pillion xDS push benchmark${quick ? ' (quick)' : ''}`);
  log('');
  log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}, node ${process.version}`);
  log(
    `push: ${P.services} services, ${P.proxies} proxies, ${P.rounds} rounds (alternately one service's endpoints → EDS, ` +
      `one extra route → RDS), timeout ${P.roundTimeoutMs} ms per round, ${P.pauseMs} ms pause`,
  );
  log(
    `latency = proxy's "xds ACK" log time − Date.now() just before the file save (temp file + rename); it includes ` +
      `the control server's file-watch debounce of ${WATCH_DEBOUNCE_MS} ms (xds/watch.ts, default in xds/server.ts)`,
  );
  log('');

  // -- push latency --
  const dir = group.tempDir('pillion-bench-xds-');
  const file = join(dir, 'mesh.yaml');
  const mesh = new BenchMesh(P.services);
  mesh.save(file);
  log(`starting control server and ${P.proxies} proxies…`);
  const control = await startControl('control', file, false);
  const proxies = await startProxies('proxy', control, P.proxies);
  await sleep(1000); // let the start-up burst settle on a small machine
  const warmup = P.warmupRounds > 0 ? await runRounds('warm-up', control, mesh, file, proxies, P.warmupRounds, P.roundTimeoutMs) : [];
  const mBefore = await metricsText(control);
  const cpuBefore = [control.child, ...proxies.map((p) => p.child)].map((c) => cpuMs(c.pid));
  const results = await runRounds('push', control, mesh, file, proxies, P.rounds, P.roundTimeoutMs);
  const cpuAfter = [control.child, ...proxies.map((p) => p.child)].map((c) => cpuMs(c.pid));
  const mAfter = await metricsText(control);
  const cpuPerRound = cpuAfter.map((v, i) => (v - cpuBefore[i]!) / P.rounds);
  const push = summarize(results, P.proxies, mBefore, mAfter);
  const cold = latencyStats(warmup.flatMap((r) => r.latenciesMs.filter((v): v is number => v !== null)));
  const exited = [control, ...proxies].filter((c) => !c.child.running).map((c) => c.child.name);
  await Promise.all([...proxies.map((p) => p.child.stop()), control.child.stop()]);

  // -- memory at 1,000 services --
  let memory: MemorySample[] = [];
  let bigPush: PushSummary | undefined;
  let bigResults: RoundResult[] = [];
  let bigReadyMs: number | undefined;
  if (!flags['no-memory']) {
    log('');
    log(`memory: control server with ${P.memServices} services, ${P.memProxies} proxies…`);
    const bigFile = join(dir, 'mesh-1000.yaml');
    const bigMesh = new BenchMesh(P.memServices);
    bigMesh.save(bigFile);
    const bigControl = await startControl('control-1000', bigFile, true);
    await sleep(500);
    memory.push(await sampleMemory(bigControl, 'config loaded, no proxy'));
    const t0 = Date.now();
    const bigProxies = await startProxies('mproxy', bigControl, P.memProxies);
    bigReadyMs = Date.now() - t0;
    await sleep(1000);
    memory.push(await sampleMemory(bigControl, `${P.memProxies} proxies connected (snapshots compiled)`));
    const bBefore = await metricsText(bigControl);
    bigResults = await runRounds('push@1000', bigControl, bigMesh, bigFile, bigProxies, P.memRounds, P.memRoundTimeoutMs);
    const bAfter = await metricsText(bigControl);
    bigPush = summarize(bigResults, P.memProxies, bBefore, bAfter);
    memory.push(await sampleMemory(bigControl, `after ${P.memRounds} pushes`));
    await Promise.all([...bigProxies.map((p) => p.child.stop()), bigControl.child.stop()]);
  }

  // -- report --
  const warmupFailures = warmup.reduce((n, r) => n + r.failures.length, 0);
  const pass = push.failures === 0 && warmupFailures === 0 && push.all.samples > 0 && push.all.p99 < P.targetP99Ms;
  log('');
  log(
    pushTable(
      `Push latency: file saved → applied (ACKed) by ${P.proxies} proxies, ${P.services} services, ${P.rounds} rounds ` +
        `after ${P.warmupRounds} warm-up rounds`,
      push,
    ),
  );
  log(`(includes the control server's ${WATCH_DEBOUNCE_MS} ms file-watch debounce)`);
  if (warmup.length > 0) {
    log(
      `warm-up (the first ${P.warmupRounds} pushes after the proxies started, JIT still compiling the config path): ` +
        `p50 ${fmtMs(cold.p50)}, p99 ${fmtMs(cold.p99)}, max ${fmtMs(cold.max)}, ` +
        `${warmup.reduce((n, r) => n + r.failures.length, 0)} failure(s)`,
    );
  }
  const proxyCpu = cpuPerRound.slice(1).reduce((a, b) => a + b, 0);
  log(
    `CPU time per round (user + system, /proc): control server ${fmtMs(cpuPerRound[0]!)}, ` +
      `proxies ${fmtMs(proxyCpu / P.proxies)} each (${fmtMs(proxyCpu)} together, on ${cpus().length} cores)`,
  );
  if (memory.length > 0) {
    log('');
    log(`### Control server memory, ${P.memServices} services`);
    log('');
    log(memoryTable(memory));
    log('');
    log(`${P.memProxies} proxies warm (all of LDS/RDS/CDS/EDS ACKed) in ${bigReadyMs ?? 'n/a'} ms from spawn`);
    if (bigPush) {
      log('');
      log(pushTable(`Push latency at ${P.memServices} services, ${P.memProxies} proxies, ${P.memRounds} rounds (informative, no target)`, bigPush));
    }
  }
  if (exited.length > 0) log(`\nwarning: exited during the run: ${exited.join(', ')}`);
  log('');
  log(
    `${pass ? 'PASS' : 'FAIL'}: p99 push latency ${fmtMs(push.all.p99)} (target < ${P.targetP99Ms} ms), ` +
      `${push.failures} failure(s), ${P.services} services, ${P.proxies} proxies`,
  );

  const json = {
    bench: 'xds-push',
    startedAt: startedAt.toISOString(),
    durationMs: Date.now() - startedAt.getTime(),
    quick,
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, loadavg: loadavg() },
    params: { ...P, watchDebounceMs: WATCH_DEBOUNCE_MS },
    warmup: { stats: cold, rounds: warmup },
    push: { summary: push, rounds: results, cpuMsPerRound: { control: cpuPerRound[0], proxies: cpuPerRound.slice(1) } },
    memory: { services: P.memServices, proxies: P.memProxies, samples: memory, readyMs: bigReadyMs, push: bigPush, rounds: bigResults },
    target: { name: `p99 push latency < ${P.targetP99Ms} ms`, p99Ms: push.all.p99, failures: push.failures, pass },
    exitedDuringRun: exited,
  };
  const out = join(outDir, 'xds-push.json');
  writeFileSync(out, `${JSON.stringify(json, null, 2)}\n`);
  log(`wrote ${out}`);
  return pass;
}

let exitCode = 0;
try {
  exitCode = (await main()) ? 0 : 1;
} catch (err) {
  process.stderr.write(`bench:xds failed: ${(err as Error).stack ?? String(err)}\n`);
  exitCode = 1;
} finally {
  await group.close();
}
process.exit(exitCode);
