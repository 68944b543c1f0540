// The benchmark's fault case: steady closed-loop load through one Pillion process to three backend processes,
// one of which is killed (SIGKILL) and later restarted on its port: without retries, with retries under the
// default bound, and with retries under a budget as large as the load (outlier detection on in every run). Reports the success rate, p99 before and during the fault, when outlier detection
// ejected the dead endpoint (from /clusters: ejectedUntil − baseEjectionTime, the proxy's own clock), when the
// last failure happened, and whether the restarted endpoint took traffic again. Bounded in time and count.
import { Agent, request } from 'node:http';
import { resolveFromHere, sleep, type ChildGroup, type ManagedChild } from '../src/cli/children.js';
import { startPillion, type BackendPorts } from './peers.js';

export interface FaultTimeline {
  /** Milliseconds from the start of the load. */
  killAtMs: number;
  restartAtMs: number;
  endAtMs: number;
  connections: number;
}

export const FAULT_TIMELINE: FaultTimeline = { killAtMs: 2000, restartAtMs: 4500, endAtMs: 8000, connections: 16 };
export const FAULT_TIMELINE_QUICK: FaultTimeline = { killAtMs: 1000, restartAtMs: 2000, endAtMs: 4000, connections: 16 };

/** Outlier detection in both runs; the gateway-failure threshold is Envoy's default (5). */
const BASE_EJECTION_MS = 3000;
const OUTLIER = `outlierDetection: { consecutiveGatewayFailure: 5, interval: 500ms, baseEjectionTime: ${BASE_EJECTION_MS}ms, maxEjectionPercent: 34 }`;
const RETRIES = 'retries: { attempts: 2, retryOn: [5xx, reset, connect-failure] }';
/** A budget as large as the load: every client may be retrying at the moment of the kill. */
const RETRIES_BUDGET = 'retries: { attempts: 2, retryOn: [5xx, reset, connect-failure], budget: { percent: 100, minConcurrency: 3 } }';

/**
 * The runs, in print order: no retries; retries with the default bound (3 retries in flight per cluster,
 * Envoy's max_retries); retries with a budget of 100 % of the requests in flight.
 */
export const FAULT_RUNS: ReadonlyArray<{ label: string; policy: string }> = [
  { label: 'retries off', policy: OUTLIER },
  { label: 'retries on (default: 3 in flight)', policy: `${RETRIES}, ${OUTLIER}` },
  { label: 'retries on (budget 100 %)', policy: `${RETRIES_BUDGET}, ${OUTLIER}` },
];

export interface FaultResult {
  label: string;
  requests: number;
  failed: number;
  successRate: number;
  /** Failures among the requests started after the ejection. */
  failedAfterEjection: number;
  p99BeforeMs: number;
  p99FaultMs: number;
  maxFaultMs: number;
  /** Kill → ejection, ms; NaN when no ejection was seen. */
  ejectionAfterMs: number;
  /** Kill → the end of the last failed request, ms; 0 when none failed. */
  lastFailureAfterMs: number;
  retries: number;
  retriesSkipped: number;
  /** Requests the restarted endpoint served after its restart (it is back once its ejection ends). */
  servedAfterRestart: number;
}

async function startBackendProcess(group: ChildGroup, name: string, httpPort = 0): Promise<{ child: ManagedChild; ports: BackendPorts }> {
  const child = group.spawn({
    name,
    command: process.execPath,
    args: [resolveFromHere(import.meta.url, './backend-server.js'), '--http-port', String(httpPort)],
  });
  const line = await child.waitForJson({ msg: 'backend listening' }, 10_000);
  return { child, ports: { http: line.http as number, h2: line.h2 as number, tcp: line.tcp as number } };
}

interface EndpointView {
  port: number;
  totalRequests: number;
  ejectedUntil: string | null;
  timesEjected: number;
}

async function backendEndpoints(adminPort: number): Promise<EndpointView[]> {
  const all = (await (await fetch(`http://127.0.0.1:${adminPort}/clusters?format=pillion`)).json()) as Array<{ name: string; endpoints: EndpointView[] }>;
  return all.find((c) => c.name.startsWith('backend.'))?.endpoints ?? [];
}

async function counterSum(adminPort: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{cluster="backend.`)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

function p99(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = values.sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
}

/** One run: fresh backends and proxy, the timeline, the figures. Every child it starts is stopped before it returns. */
export async function runFault(group: ChildGroup, dir: string, label: string, policy: string, tl: FaultTimeline): Promise<FaultResult> {
  const tag = label.replace(/[^a-z0-9]+/g, '-');
  const backends = await Promise.all(['a', 'b', 'victim'].map((n) => startBackendProcess(group, `fault-${tag}-${n}`)));
  const victimPort = backends[2]!.ports.http;
  const proxy = await startPillion(group, dir, backends[0]!.ports, {
    name: `fault-${tag}`,
    accessLog: 'off',
    backendEndpoints: backends.map((b) => b.ports.http),
    backendPolicy: policy,
  });
  const adminPort = proxy.adminPort!;
  let restarted: ManagedChild | undefined;
  try {
    const agent = new Agent({ keepAlive: true, maxSockets: tl.connections });
    const starts: number[] = [];
    const ends: number[] = [];
    const oks: boolean[] = [];
    const t0 = performance.now();
    const wall0 = Date.now();
    const stopAt = t0 + tl.endAtMs;
    const one = (): Promise<void> =>
      new Promise((resolve) => {
        const start = performance.now();
        const done = (ok: boolean): void => {
          starts.push(start - t0);
          ends.push(performance.now() - t0);
          oks.push(ok);
          resolve();
        };
        const req = request({ host: '127.0.0.1', port: proxy.httpPort, path: '/small', agent, headers: { host: proxy.host! } }, (res) => {
          res.resume();
          res.on('end', () => done(res.statusCode === 200));
          res.on('error', () => done(false));
        });
        req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
        req.on('error', () => done(false));
        req.end();
      });
    const client = async (): Promise<void> => {
      // Bounded by time, and by count as a backstop (far above what 8 s of load on this machine reaches).
      for (let n = 0; n < 200_000 && performance.now() < stopAt; n++) await one();
    };

    // The fault, on its own schedule beside the clients; the watcher catches the ejection before it expires.
    let ejectedAtWall = NaN;
    let victimTotalAtRestart = 0;
    const fault = (async () => {
      await sleep(tl.killAtMs);
      const killWall = Date.now();
      backends[2]!.child.signal('SIGKILL');
      await backends[2]!.child.exited;
      const watchUntil = performance.now() + (tl.restartAtMs - tl.killAtMs);
      while (performance.now() < watchUntil) {
        const v = (await backendEndpoints(adminPort)).find((e) => e.port === victimPort);
        if (Number.isNaN(ejectedAtWall) && v?.ejectedUntil) ejectedAtWall = Date.parse(v.ejectedUntil) - BASE_EJECTION_MS * v.timesEjected;
        await sleep(50);
      }
      await sleep(Math.max(0, tl.restartAtMs - (performance.now() - t0)));
      victimTotalAtRestart = (await backendEndpoints(adminPort)).find((e) => e.port === victimPort)?.totalRequests ?? 0;
      restarted = (await startBackendProcess(group, `fault-${tag}-victim-2`, victimPort)).child;
      return killWall;
    })();
    await Promise.all(Array.from({ length: tl.connections }, client));
    const killWall = await fault;
    agent.destroy();

    const killMs = killWall - wall0;
    const restartMs = tl.restartAtMs;
    const ejectMs = ejectedAtWall - wall0;
    const before: number[] = [];
    const during: number[] = [];
    let failed = 0;
    let failedAfterEjection = 0;
    let lastFailureEnd = -Infinity;
    for (let i = 0; i < starts.length; i++) {
      const latency = ends[i]! - starts[i]!;
      if (starts[i]! < killMs) before.push(latency);
      else if (starts[i]! < restartMs) during.push(latency);
      if (!oks[i]) {
        failed++;
        if (starts[i]! > ejectMs) failedAfterEjection++;
        lastFailureEnd = Math.max(lastFailureEnd, ends[i]!);
      }
    }
    const maxFault = during.reduce((a, b) => Math.max(a, b), 0);
    const victimNow = (await backendEndpoints(adminPort)).find((e) => e.port === victimPort);
    return {
      label,
      requests: starts.length,
      failed,
      successRate: starts.length > 0 ? (starts.length - failed) / starts.length : NaN,
      failedAfterEjection,
      p99BeforeMs: p99(before),
      p99FaultMs: p99(during),
      maxFaultMs: maxFault,
      ejectionAfterMs: ejectedAtWall - killWall,
      lastFailureAfterMs: failed > 0 ? lastFailureEnd - killMs : 0,
      retries: await counterSum(adminPort, 'pillion_upstream_retries_total'),
      retriesSkipped: await counterSum(adminPort, 'pillion_upstream_retries_skipped_total'),
      servedAfterRestart: (victimNow?.totalRequests ?? 0) - victimTotalAtRestart,
    };
  } finally {
    await Promise.all([proxy.child?.stop(), restarted?.stop(), ...backends.map((b) => b.child.stop())]);
  }
}

/** The two runs' figures side by side, as a markdown table. */
export function faultTable(runs: readonly FaultResult[], tl: FaultTimeline): string {
  const f = (n: number, d = 1): string => (Number.isFinite(n) ? n.toFixed(d) : '–');
  const rows: Array<[string, (r: FaultResult) => string]> = [
    ['requests', (r) => String(r.requests)],
    ['failed (non-200 or error)', (r) => String(r.failed)],
    ['success rate', (r) => `${f(r.successRate * 100, 3)} %`],
    ['kill → ejection, ms', (r) => f(r.ejectionAfterMs, 0)],
    ['kill → end of the last failure, ms', (r) => (r.failed > 0 ? f(r.lastFailureAfterMs, 0) : 'none failed')],
    ['failures sent after the ejection', (r) => String(r.failedAfterEjection)],
    ['p99 before the kill, ms', (r) => f(r.p99BeforeMs, 2)],
    [`p99 kill → restart (${(tl.restartAtMs - tl.killAtMs) / 1000} s), ms`, (r) => f(r.p99FaultMs, 2)],
    ['slowest request kill → restart, ms', (r) => f(r.maxFaultMs, 1)],
    ['retries made / not made (budget)', (r) => `${r.retries} / ${r.retriesSkipped}`],
    ['requests to the restarted endpoint', (r) => String(r.servedAfterRestart)],
  ];
  const head = `| | ${runs.map((r) => r.label).join(' | ')} |`;
  const sep = `|---|${runs.map(() => '---:').join('|')}|`;
  return [head, sep, ...rows.map(([name, cell]) => `| ${name} | ${runs.map(cell).join(' | ')} |`)].join('\n');
}
