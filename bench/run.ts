// Benchmark entry (`npm run bench`): Pillion against the backend itself, nginx, HAProxy and http-proxy on
// this machine, in ONE run with interleaved rounds, so the noise of a shared 2-core machine hits every target
// alike. Prints a markdown table per case and the issue's targets as PASS/FAIL lines; writes
// .bench-out/latest.json. Flags: --quick, --only small,large,latency,cpu,h2,grpc,tcp,paired,fault,mtls,concurrency,soak, --rounds N,
// --cpu-prof, --trace-headers w3c|b3 (every autocannon request carries that trace context, to price its
// propagation). The paired case also prices the resilient shape (retries + outlier detection on); the fault case
// (bench/fault.ts) kills and restarts one of three endpoints under load, with retries and without. The mtls case
// (bench/mtls.ts) prices mTLS between two sidecars against plaintext between the same two, nginx beside it.
// The h2 and grpc cases (h2load; bench/grpc-load.ts for gRPC streaming) put HAProxy with HTTP/2 on both sides
// beside Pillion and judge the ratio on back-to-back pairs.
// The concurrency case (bench/concurrency.ts) compares `--concurrency 2` with 1 on its own processes.
// The cpu case reads each proxy's own CPU time (/proc) around wrk runs: CPU per small request, and RSS under load.
// The soak case (bench/soak.ts: 10 minutes of mixed traffic with aborts and endpoint restarts; 1 with --quick)
// runs last, on its own processes, and prints RSS, fds and heap at its start and end.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { readRss, readTreeRssKiB, sleep } from '../src/cli/children.js';
import { treeCpuMs } from './proc-cpu.js';
import { benchChildGroup } from './child-group.js';
import { FAULT_RUNS, FAULT_TIMELINE, FAULT_TIMELINE_QUICK, faultTable, runFault, type FaultResult } from './fault.js';
import { GRPC_MESSAGE_BYTES, GRPC_UNARY_PATH, grpcUnaryH2loadArgs, runGrpcStream, type GrpcStreamLoad } from './grpc-load.js';
import { runAutocannon, runFixedRate, runH2load, runTcpConnections, runTcpStream, runWrk, type H2Load, type LoadResult } from './load.js';
import { mtlsErrorLines, mtlsTable, runMtlsCase, type MtlsOutcome } from './mtls.js';
import { runConcurrencyCase, type ConcurrencyResult } from './concurrency.js';
import {
  NGINX_STREAM_MODULE,
  RESILIENT_POLICY,
  startBackend,
  startHaproxy,
  startHttpProxy,
  startNginx,
  startPillion,
  type Target,
} from './peers.js';
import {
  check,
  checkLine,
  fmt,
  markdownTable,
  rangeOf,
  summarize,
  type CaseSpec,
  type RoundResult,
  type TargetCheck,
  type TargetSummary,
} from './report.js';
import { ensurePackageFile, ensureTools, type ToolStatus } from './tools.js';

const ALL_CASES = ['small', 'large', 'latency', 'cpu', 'h2', 'grpc', 'tcp', 'paired', 'fault', 'mtls', 'concurrency', 'soak'] as const;
type CaseName = (typeof ALL_CASES)[number];

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    'no-install': { type: 'boolean', default: false },
    'trace-headers': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (flags.help) {
  process.stdout.write(
    'usage: node dist/bench/run.js [--quick] [--only small,large,latency,cpu,h2,grpc,tcp,paired,fault,mtls,concurrency,soak] [--rounds N] [--cpu-prof] [--no-install] [--trace-headers w3c|b3]\n',
  );
  process.exit(0);
}

const quick = flags.quick === true;
const only = new Set<CaseName>(
  (flags.only ?? ALL_CASES.join(','))
    .split(',')
    .map((s) => s.trim())
    .filter((s): s is CaseName => {
      if (!(ALL_CASES as readonly string[]).includes(s)) {
        if (s) process.stderr.write(`ignoring unknown case "${s}" (known: ${ALL_CASES.join(', ')})\n`);
        return false;
      }
      return true;
    }),
);
const rounds = flags.rounds ? Math.max(1, Number(flags.rounds)) : quick ? 1 : 3;
/**
 * Whether a case that uses the shared targets (Pillion, nginx, HAProxy, http-proxy against one backend) runs.
 * The mtls and concurrency cases start their own proxies and the soak its own processes: `--only mtls` then skips starting and
 * warming the shared ones, which would only take memory and a few seconds from a case that does not read them.
 */
const shared = ALL_CASES.some((c) => c !== 'mtls' && c !== 'soak' && c !== 'concurrency' && only.has(c));
const outDir = resolve(process.cwd(), '.bench-out');

// Durations and counts: every loop is bounded in time and count.
const P = quick
  ? { smallSec: 1, largeSec: 1, latencySec: 1, warmSec: 0.5, h2Requests: 2_000, h2PairRequests: 2_000, grpcStreamSec: 1, tcpBytes: 8 << 20 }
  : { smallSec: 4, largeSec: 4, latencySec: 5, warmSec: 1, h2Requests: 40_000, h2PairRequests: 20_000, grpcStreamSec: 3, tcpBytes: 64 << 20 };
/** HTTP/2 and gRPC targets: Pillion ≥ this × HAProxy (HTTP/2 on both sides), on back-to-back pairs. */
const H2_TARGET = 0.8;
/** gRPC streaming: streams on one connection, messages in flight on each (enough that no side waits on a round trip). */
const GRPC_STREAMS = 10;
const GRPC_WINDOW = 100;
const SMALL_CONNS = 50;
const LARGE_CONNS = 8;
const RATE = 2000;
const TCP_CONNS = 4;
/** Connection-rate load: connections open at once, and seconds per run. */
const TCP_SETUP_CONCURRENCY = 16;
const TCP_SETUP_SEC = quick ? 1 : 2;
/**
 * Paired runs for the two ratio targets: back-to-back short runs of Pillion and the other target, the order
 * alternating. This machine's speed swings by 2× within tens of seconds, which a 6-target round cycle cannot
 * average out; within a pair of short runs both sides see nearly the same machine.
 */
const PAIRS = quick ? 3 : 10;
const PAIR_SEC = quick ? 1 : 1.5;
/** CPU case: wrk runs per proxy (rotating order), seconds each; RSS is sampled this far into each run. */
const CPU_RUNS = quick ? 2 : 6;
const CPU_SEC = quick ? 1 : 3;
const CPU_RSS_SAMPLE_AT = 0.75;
/** Issue 19's targets for the small-request path. */
const CPU_TARGET_US = 20;
const RSS_UNDER_LOAD_TARGET_MIB = 60;
const ADDED_P99_TARGET_MS = 0.7;
/** Pillion trims malloc and lets go of the binary's pages after two idle seconds (its GC waits for ten). */
const IDLE_MEMORY_WAIT_MS = 5000;

const log = (s: string): void => void process.stdout.write(`${s}\n`);

const group = benchChildGroup('bench');

interface CaseOutcome {
  spec: CaseSpec;
  rounds: RoundResult[];
  summary: TargetSummary[];
}

async function main(): Promise<void> {
  mkdirSync(outDir, { recursive: true });
  log(`# Pillion benchmark${quick ? ' (quick)' : ''}`);
  log('');
  log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; rounds: ${rounds}; cases: ${[...only].join(', ')}`);
  const loadAtStart = loadavg();
  log(`load average at start: ${loadAtStart.map((l) => l.toFixed(2)).join(' ')} (other work on this machine skews every figure; compare ratios within this run)`);

  const tools: ToolStatus[] = ensureTools(
        [
          { bin: 'nginx', pkg: 'nginx' },
          { bin: 'haproxy', pkg: 'haproxy' },
          { bin: 'wrk', pkg: 'wrk' },
          { bin: 'h2load', pkg: 'nghttp2-client' },
        ],
        log,
        flags['no-install'] !== true,
      );
  const have = (bin: string): boolean => tools.some((t) => t.bin === bin && t.path);
  const skipped: string[] = [];
  for (const t of tools) if (t.missing) skipped.push(`${t.bin}: ${t.missing}`);
  // nginx's TCP (stream) proxy is a separate Debian package; without it nginx has no row in the TCP case.
  if (have('nginx') && only.has('tcp') && !ensurePackageFile(NGINX_STREAM_MODULE, 'libnginx-mod-stream', log, flags['no-install'] !== true)) {
    skipped.push('nginx TCP row: libnginx-mod-stream unavailable');
  }

  const dir = group.tempDir('pillion-bench-');
  const backend = await startBackend(group);
  log(`backend: http ${backend.ports.http}, h2c ${backend.ports.h2}, tcp sink ${backend.ports.tcp} (pid ${backend.child.pid})`);

  const direct: Target = {
    name: 'direct',
    httpPort: backend.ports.http,
    h2Port: backend.ports.h2,
    tcpPort: backend.ports.tcp,
  };
  const targets: Target[] = [direct];
  const tryStart = async (name: string, start: () => Promise<Target>): Promise<void> => {
    try {
      const t = await start();
      targets.push(t);
      log(`${name}: started (pid ${t.pid ?? '?'}${t.httpPort ? `, http ${t.httpPort}` : ''}${t.tcpPort ? `, tcp ${t.tcpPort}` : ''})`);
    } catch (err) {
      const msg = (err as Error).message.split('\n').slice(0, 6).join(' / ');
      skipped.push(`${name}: ${msg}`);
      log(`${name}: SKIPPED (${msg})`);
    }
  };
  const cpuProfDir = flags['cpu-prof'] ? outDir : undefined;
  if (shared) {
    await tryStart('pillion', () =>
      startPillion(group, dir, backend.ports, { name: 'pillion', accessLog: 'off', ...(cpuProfDir ? { cpuProf: cpuProfDir } : {}) }),
    );
    await tryStart('pillion+accesslog', () =>
      startPillion(group, dir, backend.ports, { name: 'pillion+accesslog', accessLog: join(dir, 'access.log') }),
    );
    if (have('nginx')) await tryStart('nginx', () => startNginx(group, dir, backend.ports));
    if (have('haproxy')) await tryStart('haproxy', () => startHaproxy(group, dir, backend.ports));
    await tryStart('http-proxy', () => startHttpProxy(group, backend.ports));
  }
  // The resilient shape is priced in the paired case only: kept out of `targets`, so the other cases' rounds
  // (and their tables) are as before.
  let resilient: Target | undefined;
  if (only.has('paired')) {
    try {
      resilient = await startPillion(group, dir, backend.ports, { name: 'pillion+resilient', accessLog: 'off', backendPolicy: RESILIENT_POLICY });
      log(`pillion+resilient: started (pid ${resilient.pid ?? '?'}, http ${resilient.httpPort}; ${RESILIENT_POLICY})`);
      await runAutocannon(httpLoad(resilient, '/small', SMALL_CONNS, P.warmSec)).catch(() => undefined);
    } catch (err) {
      skipped.push(`pillion+resilient: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const names = targets.map((t) => t.name);
  const httpTargets = targets.filter((t) => t.httpPort !== undefined);
  const h2Targets = targets.filter((t) => t.h2Port !== undefined && (t.name === 'direct' || t.name === 'pillion' || t.name === 'haproxy'));

  // Warm-up: JIT, pools and keep-alive sockets, not measured.
  for (const t of shared ? httpTargets : []) {
    await runAutocannon(httpLoad(t, '/small', SMALL_CONNS, P.warmSec)).catch(() => undefined);
  }

  const outcomes: CaseOutcome[] = [];
  const runCase = async (
    spec: CaseSpec,
    caseTargets: Target[],
    run: (t: Target, round: number) => Promise<LoadResult>,
  ): Promise<void> => {
    log('');
    log(`running ${spec.name}: ${rounds} round(s) × [${caseTargets.map((t) => t.name).join(', ')}]`);
    const results: RoundResult[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (const t of caseTargets) {
        if (t.child && !t.child.running) {
          results.push({ round, target: t.name, error: `process exited (${t.child.exitCode ?? t.child.exitSignal})` });
          continue;
        }
        try {
          const result = await run(t, round);
          results.push({ round, target: t.name, result });
          log(`  round ${round} ${t.name.padEnd(18)} ${fmt(result.rps, 0).padStart(8)} req/s  p50 ${fmt(result.p50)} ms  p99 ${fmt(result.p99)} ms  ${fmt(result.mbps, 1)} MB/s${result.errors + result.non2xx > 0 ? `  errors ${result.errors} non-2xx ${result.non2xx}` : ''}`);
        } catch (err) {
          const msg = (err as Error).message.split('\n')[0] ?? String(err);
          results.push({ round, target: t.name, error: msg });
          log(`  round ${round} ${t.name.padEnd(18)} ERROR ${msg}`);
        }
        await sleep(200);
      }
    }
    outcomes.push({ spec, rounds: results, summary: summarize(spec, results, names) });
  };

  if (only.has('small')) {
    await runCase(
      { name: 'small', title: `Small responses (~50 B), ${SMALL_CONNS} connections, ${P.smallSec} s per round, autocannon`, metric: 'rps' },
      httpTargets,
      (t) => runAutocannon(httpLoad(t, '/small', SMALL_CONNS, P.smallSec)),
    );
  }
  if (only.has('large')) {
    const useWrk = have('wrk');
    await runCase(
      { name: 'large', title: `1 MiB responses, ${LARGE_CONNS} connections, ${P.largeSec} s per round, ${useWrk ? 'wrk' : 'autocannon'}`, metric: 'mbps' },
      httpTargets,
      (t) => (useWrk ? runWrk : runAutocannon)(httpLoad(t, '/large', LARGE_CONNS, P.largeSec)),
    );
  }
  if (only.has('latency')) {
    await runCase(
      { name: 'latency', title: `Fixed rate ${RATE} req/s, small responses, ${P.latencySec} s per round, open-loop client, µs resolution`, metric: 'rps', addedLatency: true },
      httpTargets,
      (t) => {
        const load = { port: t.httpPort as number, path: '/small', rate: RATE, durationSec: P.latencySec, warmupSec: P.warmSec, maxSockets: 64 };
        return runFixedRate(t.host ? { ...load, host: t.host } : load);
      },
    );
  }
  if (only.has('h2')) {
    if (!have('h2load')) skipped.push('h2 case: h2load unavailable');
    else {
      await runCase(
        { name: 'h2', title: `HTTP/2 (h2c), h2load -c 10 -m 10 -n ${P.h2Requests}, small responses`, metric: 'rps' },
        h2Targets,
        (t, round) => runH2load(h2Load(t, '/small', P.h2Requests, join(dir, `h2load-${t.name}-${round}.log`))),
      );
    }
  }
  if (only.has('grpc')) {
    if (!have('h2load')) skipped.push('grpc unary: h2load unavailable');
    else {
      await runCase(
        { name: 'grpc-unary', title: `gRPC unary (${GRPC_MESSAGE_BYTES} B messages echoed), h2load -c 10 -m 10 -n ${P.h2Requests}`, metric: 'rps' },
        h2Targets,
        (t, round) => runH2load(grpcUnaryLoad(t, P.h2Requests, join(dir, `h2load-grpc-${t.name}-${round}.log`))),
      );
    }
    await runCase(
      {
        name: 'grpc-stream',
        title: `gRPC streaming, messages/s (${GRPC_MESSAGE_BYTES} B echoed), ${GRPC_STREAMS} bidirectional streams × ${GRPC_WINDOW} in flight, ${P.grpcStreamSec} s per round`,
        metric: 'rps',
      },
      h2Targets,
      (t) => runGrpcStream(grpcStreamLoad(t, P.grpcStreamSec)),
    );
  }
  if (only.has('tcp')) {
    await runCase(
      { name: 'tcp', title: `TCP stream, ${TCP_CONNS} connections × ${P.tcpBytes >> 20} MiB to a sink`, metric: 'mbps' },
      targets.filter((t) => t.tcpPort !== undefined),
      (t) => tcpStream(t),
    );
    await runCase(
      { name: 'tcp-setup', title: `TCP connection setup, ${TCP_SETUP_CONCURRENCY} at once, 4 B each way, ${TCP_SETUP_SEC} s per round (rps = connections/s)`, metric: 'rps' },
      targets.filter((t) => t.tcpPort !== undefined),
      (t) => tcpSetup(t),
    );
  }

  const cpuRuns = new Map<string, CpuRun[]>();
  if (only.has('cpu')) {
    if (!have('wrk')) skipped.push('cpu case: wrk unavailable');
    else await runCpuCase(targets.filter((t) => t.pid !== undefined && t.httpPort !== undefined && CPU_PEERS.includes(t.name)), cpuRuns);
  }

  const pairedRuns = {
    throughput: [] as number[],
    vsNginx: [] as number[],
    addedP99: [] as number[],
    resilientThroughput: [] as number[],
    resilientVsNginx: [] as number[],
    resilientVsPlain: [] as number[],
    tcpVsNginx: [] as number[],
    tcpVsHaproxy: [] as number[],
    tcpSetupVsNginx: [] as number[],
    tcpSetupVsHaproxy: [] as number[],
    largeVsNginx: [] as number[],
    h2VsHaproxy: [] as number[],
    grpcUnaryVsHaproxy: [] as number[],
    grpcStreamVsHaproxy: [] as number[],
  };
  // The TCP and 1 MiB targets are ratios to nginx: judged on pairs, like the small-response ones.
  {
    const pillion = targets.find((t) => t.name === 'pillion');
    const nginx = targets.find((t) => t.name === 'nginx');
    const haproxy = targets.find((t) => t.name === 'haproxy');
    const mbps = (a: LoadResult, b: LoadResult): number => a.mbps / b.mbps;
    const rps = (a: LoadResult, b: LoadResult): number => a.rps / b.rps;
    const pairs = async (what: string, key: keyof typeof pairedRuns, other: Target | undefined, run: (t: Target) => Promise<LoadResult>, ratio: typeof mbps): Promise<void> => {
      if (!pillion || !other || (other.tcpPort === undefined && what.startsWith('TCP'))) return;
      log(`running paired ${what}: ${PAIRS} × (pillion, ${other.name}) back to back, order alternating`);
      pairedRuns[key] = await paired(pillion, other, run, ratio);
      log(`  Pillion ÷ ${other.name} per pair: ${pairedRuns[key].map((v) => fmt(v)).join(' ')}`);
    };
    if (only.has('tcp')) {
      log('');
      await pairs('TCP stream MB/s', 'tcpVsNginx', nginx, tcpStream, mbps);
      await pairs('TCP stream MB/s', 'tcpVsHaproxy', haproxy, tcpStream, mbps);
      await pairs('TCP connections/s', 'tcpSetupVsNginx', nginx, tcpSetup, rps);
      await pairs('TCP connections/s', 'tcpSetupVsHaproxy', haproxy, tcpSetup, rps);
    }
    if (only.has('large') && have('wrk')) {
      log('');
      await pairs('1 MiB responses MB/s (wrk)', 'largeVsNginx', nginx, (t) => runWrk(httpLoad(t, '/large', LARGE_CONNS, 2)), mbps);
    }
  }
  {
    const pillion = targets.find((t) => t.name === 'pillion');
    const haproxy = targets.find((t) => t.name === 'haproxy' && t.h2Port !== undefined);
    const rps = (a: LoadResult, b: LoadResult): number => a.rps / b.rps;
    if (pillion && haproxy && only.has('h2') && have('h2load')) {
      log('');
      log(`running paired HTTP/2: ${PAIRS} × (pillion, haproxy) back to back, h2load -n ${P.h2PairRequests} each, order alternating`);
      pairedRuns.h2VsHaproxy = await paired(pillion, haproxy, (t) => runH2load(h2Load(t, '/small', P.h2PairRequests, join(dir, `h2load-pair-${t.name}.log`))), rps);
      log(`  Pillion ÷ HAProxy per pair: ${pairedRuns.h2VsHaproxy.map((v) => fmt(v)).join(' ')}`);
    }
    if (pillion && haproxy && only.has('grpc')) {
      if (have('h2load')) {
        log(`running paired gRPC unary: ${PAIRS} × (pillion, haproxy), h2load -n ${P.h2PairRequests} each`);
        pairedRuns.grpcUnaryVsHaproxy = await paired(pillion, haproxy, (t) => runH2load(grpcUnaryLoad(t, P.h2PairRequests, join(dir, `h2load-grpc-pair-${t.name}.log`))), rps);
        log(`  Pillion ÷ HAProxy per pair: ${pairedRuns.grpcUnaryVsHaproxy.map((v) => fmt(v)).join(' ')}`);
      }
      log(`running paired gRPC streaming: ${PAIRS} × (pillion, haproxy), ${PAIR_SEC} s each`);
      pairedRuns.grpcStreamVsHaproxy = await paired(pillion, haproxy, (t) => runGrpcStream(grpcStreamLoad(t, PAIR_SEC)), rps);
      log(`  Pillion ÷ HAProxy per pair: ${pairedRuns.grpcStreamVsHaproxy.map((v) => fmt(v)).join(' ')}`);
    }
  }
  if (only.has('paired')) {
    const pillion = targets.find((t) => t.name === 'pillion');
    const httpProxy = targets.find((t) => t.name === 'http-proxy');
    if (pillion && httpProxy) {
      log('');
      log(`running paired throughput: ${PAIRS} × (pillion, http-proxy) back to back, ${PAIR_SEC} s each, order alternating`);
      pairedRuns.throughput = await paired(pillion, httpProxy, (t) => runAutocannon(httpLoad(t, '/small', SMALL_CONNS, PAIR_SEC)), (a, b) => a.rps / b.rps);
      log(`  Pillion ÷ http-proxy per pair: ${pairedRuns.throughput.map((v) => fmt(v)).join(' ')}`);
    }
    const nginx = targets.find((t) => t.name === 'nginx');
    if (pillion && nginx) {
      log(`running paired throughput: ${PAIRS} × (pillion, nginx) back to back, ${PAIR_SEC} s each, order alternating`);
      pairedRuns.vsNginx = await paired(pillion, nginx, (t) => runAutocannon(httpLoad(t, '/small', SMALL_CONNS, PAIR_SEC)), (a, b) => a.rps / b.rps);
      log(`  Pillion ÷ nginx per pair: ${pairedRuns.vsNginx.map((v) => fmt(v)).join(' ')}`);
    }
    if (resilient) {
      const small = (t: Target) => runAutocannon(httpLoad(t, '/small', SMALL_CONNS, PAIR_SEC));
      const rps = (a: LoadResult, b: LoadResult): number => a.rps / b.rps;
      if (httpProxy) {
        log(`running paired throughput: ${PAIRS} × (pillion+resilient, http-proxy)`);
        pairedRuns.resilientThroughput = await paired(resilient, httpProxy, small, rps);
        log(`  Pillion+resilient ÷ http-proxy per pair: ${pairedRuns.resilientThroughput.map((v) => fmt(v)).join(' ')}`);
      }
      if (nginx) {
        log(`running paired throughput: ${PAIRS} × (pillion+resilient, nginx)`);
        pairedRuns.resilientVsNginx = await paired(resilient, nginx, small, rps);
        log(`  Pillion+resilient ÷ nginx per pair: ${pairedRuns.resilientVsNginx.map((v) => fmt(v)).join(' ')}`);
      }
      if (pillion) {
        log(`running paired throughput: ${PAIRS} × (pillion+resilient, pillion)`);
        pairedRuns.resilientVsPlain = await paired(resilient, pillion, small, rps);
        log(`  Pillion+resilient ÷ Pillion per pair: ${pairedRuns.resilientVsPlain.map((v) => fmt(v)).join(' ')}`);
      }
    }
    if (pillion) {
      log(`running paired latency: ${PAIRS} × (pillion, direct) at ${RATE} req/s, 2 s each, order alternating`);
      const fixed = (t: Target) => {
        const load = { port: t.httpPort as number, path: '/small', rate: RATE, durationSec: 2, warmupSec: 0.5, maxSockets: 64 };
        return runFixedRate(t.host ? { ...load, host: t.host } : load);
      };
      pairedRuns.addedP99 = await paired(pillion, direct, fixed, (a, b) => a.p99 - b.p99);
      log(`  added p99 per pair, ms: ${pairedRuns.addedP99.map((v) => fmt(v, 2)).join(' ')}`);
    }
  }

  const faultRuns: FaultResult[] = [];
  if (only.has('fault')) {
    const tl = quick ? FAULT_TIMELINE_QUICK : FAULT_TIMELINE;
    log('');
    log(
      `running fault: ${tl.connections} connections to 3 endpoints for ${tl.endAtMs / 1000} s, one SIGKILLed at ${tl.killAtMs / 1000} s and restarted at ${tl.restartAtMs / 1000} s; outlier detection on; retries off, on with the default bound, on with a budget`,
    );
    for (const { label, policy } of FAULT_RUNS) {
      try {
        const r = await runFault(group, dir, label, policy, tl);
        faultRuns.push(r);
        log(`  ${label}: ${r.requests} requests, ${r.failed} failed (${fmt(r.successRate * 100, 3)} % ok), ejection ${fmt(r.ejectionAfterMs, 0)} ms after the kill, p99 during the fault ${fmt(r.p99FaultMs)} ms`);
      } catch (err) {
        const msg = (err as Error).message.split('\n')[0] ?? String(err);
        skipped.push(`fault (${label}): ${msg}`);
        log(`  ${label}: ERROR ${msg}`);
      }
      await sleep(500);
    }
  }

  let mtls: MtlsOutcome | undefined;
  if (only.has('mtls')) {
    log('');
    if (!have('wrk')) log('mtls: wrk unavailable, autocannon instead (it saturates near 30k req/s here)');
    try {
      mtls = await runMtlsCase(group, dir, backend.ports, { quick, haveNginx: have('nginx'), haveWrk: have('wrk'), log, ...(cpuProfDir ? { cpuProf: cpuProfDir } : {}) });
      skipped.push(...mtls.skipped);
    } catch (err) {
      // openssl missing, or the CA could not be made: the other cases' results still get reported.
      const msg = (err as Error).message.split('\n')[0] ?? String(err);
      skipped.push(`mtls: ${msg}`);
      log(`mtls: ERROR ${msg}`);
    }
  }

  let concurrency: ConcurrencyResult | undefined;
  if (only.has('concurrency')) {
    log('');
    log('running concurrency: pillion proxy --concurrency 1 vs 2 (bench/concurrency.ts)');
    if (!have('wrk')) skipped.push('concurrency: wrk unavailable');
    else {
      try {
        concurrency = await runConcurrencyCase({ group, dir, pairs: quick ? 2 : 4, seconds: quick ? 2 : 4, rr: false, log: (l) => log(`  ${l}`) });
      } catch (err) {
        const msg = (err as Error).message.split('\n')[0] ?? String(err);
        skipped.push(`concurrency: ${msg}`);
        log(`concurrency: ERROR ${msg}`);
      }
    }
  }

  // Memory after the run: once as the load ends, once after a quiet spell (Pillion hands freed memory back to
  // the kernel when its event loop goes idle: src/process/idle-memory.ts). Peak = VmHWM, the whole run.
  const readMemory = (): Map<string, { rssMiB: number; peakMiB?: number }> => {
    const rows = new Map<string, { rssMiB: number; peakMiB?: number }>();
    for (const t of targets) {
      if (t.pid === undefined) continue;
      const own = readRss(t.pid);
      const tree = readTreeRssKiB(t.pid);
      if (!own || tree === undefined) continue;
      rows.set(t.name, tree === own.rssKiB ? { rssMiB: tree / 1024, peakMiB: own.peakKiB / 1024 } : { rssMiB: tree / 1024 });
    }
    return rows;
  };
  const atEnd = readMemory();
  if (shared) await sleep(IDLE_MEMORY_WAIT_MS);
  const afterIdle = readMemory();
  const memory = [...afterIdle].map(([target, idle]) => ({ target, rssMiB: idle.rssMiB, atEndMiB: atEnd.get(target)?.rssMiB ?? NaN, peakMiB: idle.peakMiB }));

  // Report.
  log('');
  for (const o of outcomes) {
    log(`## ${o.spec.title}`);
    log('');
    log(markdownTable(o.spec, o.summary));
    for (const s of o.summary) for (const f of s.failures) log(`  ${s.target} ${f}`);
    log('');
  }
  if (pairedRuns.resilientVsPlain.length + pairedRuns.resilientThroughput.length + pairedRuns.resilientVsNginx.length > 0) {
    log('## Paired small-response ratios, plain and resilient (retries + outlier detection on)');
    log('');
    log('| ratio | plain Pillion | resilient Pillion |');
    log('| --- | ---: | ---: |');
    const cell = (v: readonly number[]): string => (v.length > 0 ? `${fmt(median(v))} (${fmt(Math.min(...v))} – ${fmt(Math.max(...v))})` : '–');
    log(`| ÷ http-proxy (median of ${PAIRS} pairs, range) | ${cell(pairedRuns.throughput)} | ${cell(pairedRuns.resilientThroughput)} |`);
    log(`| ÷ nginx | ${cell(pairedRuns.vsNginx)} | ${cell(pairedRuns.resilientVsNginx)} |`);
    log(`| resilient ÷ plain Pillion | | ${cell(pairedRuns.resilientVsPlain)} |`);
    log('');
  }
  if (faultRuns.length > 0) {
    const tl = quick ? FAULT_TIMELINE_QUICK : FAULT_TIMELINE;
    log(`## Fault: one of three endpoints SIGKILLed at ${tl.killAtMs / 1000} s, restarted at ${tl.restartAtMs / 1000} s, ${tl.connections} connections, ${tl.endAtMs / 1000} s`);
    log('');
    log(faultTable(faultRuns, tl));
    log('');
  }
  if (mtls && mtls.results.length > 0) {
    log('## mTLS between two sidecars vs plaintext between the same two (client sidecar → server sidecar → backend)');
    log('');
    log(mtlsTable(mtls));
    for (const line of mtlsErrorLines(mtls)) log(`  ${line}`);
    log('');
  }
  if (memory.length > 0) {
    log('## Memory (VmRSS of the process tree; peak = VmHWM of a single process over the run)');
    log('');
    log(`| target | as the load ends, MiB | after ${IDLE_MEMORY_WAIT_MS / 1000} s idle, MiB | peak MiB |`);
    log('| --- | ---: | ---: | ---: |');
    for (const m of memory) {
      log(`| ${m.target} | ${fmt(m.atEndMiB, 1)} | ${fmt(m.rssMiB, 1)} | ${m.peakMiB !== undefined ? fmt(m.peakMiB, 1) : '–'} |`);
    }
    log('');
  }

  if (cpuRuns.size > 0) {
    log(`## CPU per small request and RSS under load (wrk -c ${SMALL_CONNS}, ${CPU_RUNS} × ${CPU_SEC} s each, order rotating; the proxy's own utime + stime from /proc)`);
    log('');
    log(cpuTable(cpuRuns));
    log('');
  }
  const get = (c: string, t: string): TargetSummary | undefined =>
    outcomes.find((o) => o.spec.name === c)?.summary.find((s) => s.target === t);
  const pSmall = get('small', 'pillion');
  const hpSmall = get('small', 'http-proxy');
  const ngSmall = get('small', 'nginx');
  const pLat = get('latency', 'pillion');
  const pMem = memory.find((m) => m.target === 'pillion');
  const checks: TargetCheck[] = [];
  // Without a shared-target case these four would all read "not measured": left out rather than printed as SKIP.
  if (shared) checks.push(
    check(
      'Pillion small-response throughput / http-proxy ≥ 1.5',
      pairedRuns.throughput.length > 0 ? median(pairedRuns.throughput) : pSmall && hpSmall ? pSmall.rps / hpSmall.rps : NaN,
      '>=',
      1.5,
      `${pairedSummary(pairedRuns.throughput, 2, '')}small case: ${fmt(pSmall?.rps ?? NaN, 0)} / ${fmt(hpSmall?.rps ?? NaN, 0)} req/s = ${fmt(pSmall && hpSmall ? pSmall.rps / hpSmall.rps : NaN)}`,
    ),
    check(
      `added p99 at ${RATE.toLocaleString('en')} req/s ≤ ${ADDED_P99_TARGET_MS} ms`,
      pairedRuns.addedP99.length > 0 ? median(pairedRuns.addedP99) : (pLat?.addedP99 ?? NaN),
      '<=',
      ADDED_P99_TARGET_MS,
      `${pairedSummary(pairedRuns.addedP99, 3, ' ms')}latency case: Pillion p99 ${fmt(pLat?.p99 ?? NaN, 3)} ms, direct p99 ${fmt(get('latency', 'direct')?.p99 ?? NaN, 3)} ms, added (median of per-round differences) ${fmt(pLat?.addedP99 ?? NaN, 3)} ms`,
    ),
    check(
      'proxy RSS ≤ 80 MiB after the run',
      pMem?.rssMiB ?? NaN,
      '<=',
      80,
      `VmRSS ${fmt(pMem?.rssMiB ?? NaN, 1)} MiB ${IDLE_MEMORY_WAIT_MS / 1000} s after the load (${fmt(pMem?.atEndMiB ?? NaN, 1)} MiB as it ended, peak ${fmt(pMem?.peakMiB ?? NaN, 1)} MiB)`,
    ),
    check(
      'stretch: Pillion small-response throughput ≥ 0.7 × nginx',
      pairedRuns.vsNginx.length > 0 ? median(pairedRuns.vsNginx) : pSmall && ngSmall ? pSmall.rps / ngSmall.rps : NaN,
      '>=',
      0.7,
      `${pairedSummary(pairedRuns.vsNginx, 2, '')}small case: ${fmt(pSmall?.rps ?? NaN, 0)} / ${fmt(ngSmall?.rps ?? NaN, 0)} req/s = ${fmt(pSmall && ngSmall ? pSmall.rps / ngSmall.rps : NaN)}`,
    ),
  );
  if (cpuRuns.size > 0) {
    const cpu = (t: string) => (cpuRuns.get(t) ?? []).map((r) => r.cpuUsPerRequest);
    const rss = (cpuRuns.get('pillion+accesslog') ?? []).map((r) => r.rssMiB);
    checks.push(
      check(
        `CPU per small request ≤ ${CPU_TARGET_US} µs (Pillion's own CPU under wrk)`,
        median(cpu('pillion')),
        '<=',
        CPU_TARGET_US,
        `median of ${cpu('pillion').length} runs ${fmt(median(cpu('pillion')), 1)} µs (${rangeOf(cpu('pillion'), 1)}); with the access log ${fmt(median(cpu('pillion+accesslog')), 1)} µs; nginx ${fmt(median(cpu('nginx')), 1)} µs, HAProxy ${fmt(median(cpu('haproxy')), 1)} µs`,
      ),
      check(
        `RSS ≤ ${RSS_UNDER_LOAD_TARGET_MIB} MiB under steady load with the access log on`,
        median(rss),
        '<=',
        RSS_UNDER_LOAD_TARGET_MIB,
        `VmRSS ${CPU_RSS_SAMPLE_AT * 100} % into each run: median ${fmt(median(rss), 1)} MiB (${rangeOf(rss, 1)}); without the access log ${fmt(median((cpuRuns.get('pillion') ?? []).map((r) => r.rssMiB)), 1)} MiB`,
      ),
    );
  }
  const pairedCheck = (name: string, values: readonly number[], limit: number, c: string, t: string, metric: 'mbps' | 'rps'): void => {
    const p = get(c, 'pillion');
    const o = get(c, t);
    const fromRounds = p && o ? p[metric] / o[metric] : NaN;
    checks.push(check(name, values.length > 0 ? median(values) : fromRounds, '>=', limit, `${pairedSummary(values, 2, '')}${c} case: ${fmt(p?.[metric] ?? NaN, 0)} / ${fmt(o?.[metric] ?? NaN, 0)} = ${fmt(fromRounds)}`));
  };
  if (only.has('tcp')) {
    pairedCheck('TCP stream MB/s ≥ 0.9 × nginx (stream proxy)', pairedRuns.tcpVsNginx, 0.9, 'tcp', 'nginx', 'mbps');
    pairedCheck('TCP stream MB/s ≥ 0.9 × HAProxy (mode tcp), for reference', pairedRuns.tcpVsHaproxy, 0.9, 'tcp', 'haproxy', 'mbps');
    pairedCheck('TCP connection setup/s ≥ 0.9 × nginx, for reference', pairedRuns.tcpSetupVsNginx, 0.9, 'tcp-setup', 'nginx', 'rps');
    pairedCheck('TCP connection setup/s ≥ 0.9 × HAProxy, for reference', pairedRuns.tcpSetupVsHaproxy, 0.9, 'tcp-setup', 'haproxy', 'rps');
  }
  if (only.has('large')) pairedCheck('1 MiB responses MB/s ≥ 1.0 × nginx', pairedRuns.largeVsNginx, 1.0, 'large', 'nginx', 'mbps');
  // HTTP/2 and gRPC against HAProxy (h2 on both sides): paired medians, else the round medians.
  const h2Check = (label: string, pairs: readonly number[], caseName: string): void => {
    const p = get(caseName, 'pillion');
    const h = get(caseName, 'haproxy');
    const rounds = p && h ? p.rps / h.rps : NaN;
    checks.push(
      check(
        `${label}: Pillion ≥ ${H2_TARGET} × HAProxy (h2 on both sides)`,
        pairs.length > 0 ? median(pairs) : rounds,
        '>=',
        H2_TARGET,
        `${pairedSummary(pairs, 2, '')}round medians ${fmt(p?.rps ?? NaN, 0)} / ${fmt(h?.rps ?? NaN, 0)} = ${fmt(rounds)}`,
      ),
    );
  };
  if (only.has('h2')) h2Check('HTTP/2 req/s (h2load 10 × 10)', pairedRuns.h2VsHaproxy, 'h2');
  if (only.has('grpc')) {
    h2Check('gRPC unary calls/s', pairedRuns.grpcUnaryVsHaproxy, 'grpc-unary');
    h2Check('gRPC streaming messages/s', pairedRuns.grpcStreamVsHaproxy, 'grpc-stream');
  }
  if (mtls) checks.push(...mtls.checks);
  if (concurrency) {
    checks.push({
      name: '--concurrency 2 ÷ --concurrency 1, small-response req/s (wrk and the backend pinned to one CPU)',
      status: 'INFO',
      detail: `median of ${concurrency.ratios.length} pairs ${fmt(concurrency.ratio)} (${concurrency.ratios.map((r) => fmt(r)).join(', ')}); ${concurrency.conclusion}`,
    });
  }
  const loadAtEnd = loadavg();
  log(`load average at end: ${loadAtEnd.map((l) => l.toFixed(2)).join(' ')}`);
  log('');
  log('## Targets');
  log('');
  for (const c of checks) log(checkLine(c));
  if (skipped.length > 0) {
    log('');
    log('## Skipped');
    for (const s of skipped) log(`- ${s}`);
  }

  const json = {
    startedAt: new Date(startedAt).toISOString(),
    durationSec: (Date.now() - startedAt) / 1000,
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, loadAtStart, loadAtEnd },
    options: { quick, rounds, cases: [...only], cpuProf: flags['cpu-prof'] },
    tools,
    targets: targets.map((t) => t.name),
    cases: outcomes.map((o) => ({ name: o.spec.name, title: o.spec.title, metric: o.spec.metric, summary: o.summary, rounds: o.rounds })),
    memory,
    paired: pairedRuns,
    cpu: Object.fromEntries(cpuRuns),
    fault: faultRuns,
    mtls,
    concurrency,
    checks,
    skipped,
  };
  writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  log('');
  log(`results: ${join(outDir, 'latest.json')}${cpuProfDir ? `; CPU profiles of Pillion: ${cpuProfDir}/*.cpuprofile` : ''}`);
}

/** `compare(a's result, b's result)` for PAIRS back-to-back runs, a first on even pairs and b first on odd ones. */
async function paired(
  a: Target,
  b: Target,
  run: (t: Target) => Promise<LoadResult>,
  compare: (ra: LoadResult, rb: LoadResult) => number,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < PAIRS; i++) {
    try {
      const first = i % 2 === 0 ? a : b;
      const r1 = await run(first);
      await sleep(100);
      const r2 = await run(first === a ? b : a);
      await sleep(100);
      out.push(first === a ? compare(r1, r2) : compare(r2, r1));
    } catch (err) {
      log(`  pair ${i + 1}: ERROR ${(err as Error).message.split('\n')[0]}`);
    }
  }
  return out;
}

const CPU_PEERS = ['pillion', 'pillion+accesslog', 'nginx', 'haproxy'];

interface CpuRun {
  rps: number;
  cpuUsPerRequest: number;
  rssMiB: number;
  /** The part of rssMiB that is file-backed (RssFile: the binary's and libraries' pages). */
  fileMiB: number;
}

/** wrk against each target in turn, CPU_RUNS times (the order rotating), reading its process tree's CPU and RSS. */
async function runCpuCase(cpuTargets: readonly Target[], out: Map<string, CpuRun[]>): Promise<void> {
  log('');
  log(`running cpu: ${CPU_RUNS} × [${cpuTargets.map((t) => t.name).join(', ')}], wrk -c ${SMALL_CONNS} ${CPU_SEC} s each, order rotating`);
  for (let i = 0; i < CPU_RUNS; i++) {
    for (let j = 0; j < cpuTargets.length; j++) {
      const t = cpuTargets[(i + j) % cpuTargets.length]!;
      const pid = t.pid as number;
      const before = treeCpuMs(pid);
      let rssKiB = NaN;
      let fileKiB = NaN;
      const sample = setTimeout(() => {
        rssKiB = readTreeRssKiB(pid) ?? NaN;
        fileKiB = readTreeRssKiB(pid, 'fileKiB') ?? NaN;
      }, CPU_SEC * CPU_RSS_SAMPLE_AT * 1000);
      try {
        const r = await runWrk(httpLoad(t, '/small', SMALL_CONNS, CPU_SEC));
        const after = treeCpuMs(pid);
        if (before === undefined || after === undefined || !(r.requests > 0)) throw new Error('process gone or no requests');
        const run = { rps: r.rps, cpuUsPerRequest: ((after - before) * 1000) / r.requests, rssMiB: rssKiB / 1024, fileMiB: fileKiB / 1024 };
        out.set(t.name, [...(out.get(t.name) ?? []), run]);
        log(`  ${t.name.padEnd(18)} ${fmt(r.rps, 0).padStart(8)} req/s  CPU ${fmt(run.cpuUsPerRequest, 1)} µs/request  RSS ${fmt(run.rssMiB, 1)} MiB`);
      } catch (err) {
        log(`  ${t.name.padEnd(18)} ERROR ${(err as Error).message.split('\n')[0]}`);
      } finally {
        clearTimeout(sample);
      }
      await sleep(200);
    }
  }
}

function cpuTable(runs: ReadonlyMap<string, readonly CpuRun[]>): string {
  const rows = [
    '| target | CPU per request, µs: median (range) | RSS under load, MiB | of it file-backed, MiB | req/s (median) |',
    '| --- | ---: | ---: | ---: | ---: |',
  ];
  for (const [name, r] of runs) {
    const us = r.map((x) => x.cpuUsPerRequest);
    const rss = r.map((x) => x.rssMiB);
    const file = median(r.map((x) => x.fileMiB));
    rows.push(`| ${name} | ${fmt(median(us), 1)} (${rangeOf(us, 1)}) | ${fmt(median(rss), 1)} (${rangeOf(rss, 1)}) | ${fmt(file, 1)} | ${fmt(median(r.map((x) => x.rps)), 0)} |`);
  }
  return rows.join('\n');
}

/** "median of N paired runs X (range a–b); " or nothing when no pair was run. */
function pairedSummary(values: readonly number[], digits: number, unit: string): string {
  if (values.length === 0) return '';
  const range = `${fmt(Math.min(...values), digits)}–${fmt(Math.max(...values), digits)}`;
  return `median of ${values.length} paired runs ${fmt(median(values), digits)}${unit} (range ${range}); `;
}

function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Trace context every autocannon request carries with --trace-headers w3c|b3 (the proxy continues it). */
const TRACE_HEADERS: Record<string, Record<string, string>> = {
  w3c: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'congo=t61rcWkgMzE' },
  b3: { 'x-b3-traceid': '4bf92f3577b34da6a3ce929d0e0e4736', 'x-b3-spanid': '00f067aa0ba902b7', 'x-b3-sampled': '1' },
};
const traceHeaders = flags['trace-headers'] === undefined ? undefined : TRACE_HEADERS[flags['trace-headers']];
if (flags['trace-headers'] !== undefined && traceHeaders === undefined) {
  process.stderr.write(`unknown --trace-headers "${flags['trace-headers']}" (known: w3c, b3)\n`);
  process.exit(2);
}

function tcpStream(t: Target): Promise<LoadResult> {
  return runTcpStream({ port: t.tcpPort as number, connections: TCP_CONNS, bytesPerConnection: P.tcpBytes, timeoutSec: quick ? 30 : 60 });
}

function tcpSetup(t: Target): Promise<LoadResult> {
  return runTcpConnections({ port: t.tcpPort as number, concurrency: TCP_SETUP_CONCURRENCY, durationSec: TCP_SETUP_SEC });
}

function httpLoad(t: Target, path: string, connections: number, durationSec: number) {
  const load = { port: t.httpPort as number, path, connections, durationSec, ...(traceHeaders === undefined ? {} : { headers: traceHeaders }) };
  return t.host ? { ...load, host: t.host } : load;
}

function h2Load(t: Target, path: string, requests: number, logFile: string): H2Load {
  const load: H2Load = { port: t.h2Port as number, path, clients: 10, streams: 10, requests, timeoutSec: quick ? 30 : 90, logFile };
  if (t.authority) load.authority = t.authority;
  return load;
}

function grpcUnaryLoad(t: Target, requests: number, logFile: string): H2Load {
  return { ...h2Load(t, GRPC_UNARY_PATH, requests, logFile), extraArgs: grpcUnaryH2loadArgs(`${logFile}.body`) };
}

function grpcStreamLoad(t: Target, durationSec: number): GrpcStreamLoad {
  const load: GrpcStreamLoad = { port: t.h2Port as number, streams: GRPC_STREAMS, window: GRPC_WINDOW, durationSec };
  if (t.authority) load.authority = t.authority;
  return load;
}

const startedAt = Date.now();
let exitCode = 0;
try {
  await main();
} catch (err) {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  exitCode = 1;
} finally {
  // A longer grace period lets Pillion write its CPU profile on the way out.
  await group.close(flags['cpu-prof'] ? 10_000 : 3000);
}
if (exitCode === 0 && only.has('soak')) exitCode = await runSoak(quick ? 1 : 10);
process.exit(exitCode);

/** The soak, after the other cases' processes are gone: its own proxy and backends, its own report. */
function runSoak(minutes: number): Promise<number> {
  process.stdout.write(`\n# Soak: ${minutes} min of mixed traffic (bench/soak.ts)\n`);
  const soak = join(dirname(fileURLToPath(import.meta.url)), 'soak.js');
  const child = spawn(process.execPath, [soak, '--minutes', String(minutes)], { stdio: 'inherit' });
  return new Promise((resolveExit) => {
    child.once('error', (err) => {
      process.stderr.write(`soak failed to start: ${err.message}\n`);
      resolveExit(1);
    });
    child.once('exit', (code) => resolveExit(code ?? 1));
  });
}
