// The mTLS case of `npm run bench` (`--only mtls`, issue 16): what mutual TLS between two sidecars costs on the
// hot path, as ratios within one run. Two real `pillion proxy` processes in a row (client sidecar outbound →
// server sidecar inbound → the bench backend), once with identities (mTLS STRICT) and once without (the mesh
// file says `mtls: DISABLE`), and beside them nginx in the same two-hop shape (`proxy_ssl_*` to an nginx that
// requires a client certificate) against the same two nginx processes in plaintext. Each measure runs in
// back-to-back pairs, the order alternating, and the median of the per-pair ratios is the figure: this
// machine's speed swings by 2× within tens of seconds, which only a pair of short runs sees as one machine.
// The CA and the keys are made with openssl at bench time in a temp dir and removed at the end.
import { createSecureContext, connect as tlsConnect, type PeerCertificate, type SecureContext } from 'node:tls';
import { connect as netConnect, type Socket } from 'node:net';
import { httpGet, sleep, type ChildGroup } from '../src/cli/children.js';
// The test CA is the one the mTLS tests use: openssl in a temp dir, SPIFFE URI SANs, nothing in the repository.
import { TestCa, type IssuedCert } from '../test/tls/test-ca.js';
import { runAutocannon, runFixedRate, runWrk, type HttpLoad, type LoadResult } from './load.js';
import { startNginxChains, startPillionChain, type BackendPorts, type IdentityFiles, type SidecarChain } from './peers.js';
import { processCpuMs } from './proc-cpu.js';
import { check, fmt, median, rangeOf, type TargetCheck } from './report.js';

export interface MtlsParams {
  /** Back-to-back pairs per measure and proxy. */
  pairs: number;
  /** Seconds of each wrk run (small and 1 MiB): whole seconds, wrk's `-d` takes no fractions. */
  wrkSec: number;
  /** Seconds of each fixed-rate run, after its own unmeasured warm-up. */
  latencySec: number;
  latencyWarmSec: number;
  /** Each run of the fresh-connection loop ends at this many seconds or connections, whichever comes first. */
  connectSec: number;
  connectMax: number;
  /** Seconds of unmeasured wrk per chain before the first measure (whole seconds, as wrkSec). */
  warmSec: number;
}

/** ~150 s in all on this machine (two proxies × four measures × pairs × two sides); --quick ~40 s. */
export const MTLS_FULL: MtlsParams = { pairs: 5, wrkSec: 2, latencySec: 1.5, latencyWarmSec: 0.5, connectSec: 1, connectMax: 20_000, warmSec: 1 };
export const MTLS_QUICK: MtlsParams = { pairs: 2, wrkSec: 1, latencySec: 0.8, latencyWarmSec: 0.3, connectSec: 0.5, connectMax: 5_000, warmSec: 1 };

const SMALL_CONNS = 50;
const LARGE_CONNS = 8;
const RATE = 2000;
/** Fresh connections in flight at once: enough to keep a one-threaded server busy while the client waits. */
const CONNECT_CONCURRENCY = 16;
/** The throughput target: mTLS may cost at most 20 % of plaintext's small-response throughput. */
const TARGET_RATIO = 0.8;

const TD = 'spiffe://cluster.local/ns/default/sa';

type Measure = 'small' | 'large' | 'p99' | 'connect';

export interface MtlsRow {
  measure: Measure;
  label: string;
  unit: string;
  /** Medians of the mTLS side's and the plaintext side's own figures over the pairs. */
  tls: number;
  plain: number;
  /** Per pair: mTLS ÷ plaintext, or for p99 mTLS − plaintext (ms). */
  perPair: number[];
  /** Errors, non-2xx and failed connections over all runs, both sides. */
  errors: number;
  /** For the connection loop, mTLS side: the connections it completed. */
  clientCompleted?: number;
  /** TLS connections Pillion's server sidecar accepted during the measure (its metrics). */
  serverCounted?: number;
  /**
   * Throughput measures, Pillion: CPU time of both sidecars per request (µs) or per MB (ms), medians of each side,
   * and per pair plaintext's ÷ mTLS's: the throughput ratio the two would have if the sidecars had the cores to
   * themselves, which the per-pair throughput ratio only approaches when nothing else runs on the machine. For
   * p99: CPU per request (µs) at the fixed rate, which both sides run at alike.
   */
  cpu?: { tls: number; plain: number; perPair: number[] };
}

export interface MtlsProxyResult {
  proxy: string;
  rows: MtlsRow[];
}

export interface MtlsOutcome {
  params: MtlsParams;
  results: MtlsProxyResult[];
  checks: TargetCheck[];
  skipped: string[];
}

type Log = (s: string) => void;

export async function runMtlsCase(
  group: ChildGroup,
  dir: string,
  backend: BackendPorts,
  /** cpuProf: a directory for --cpu-prof profiles of the four sidecars (<chain>-client/-server.cpuprofile). */
  opts: { quick: boolean; haveNginx: boolean; haveWrk: boolean; log: Log; cpuProf?: string },
): Promise<MtlsOutcome> {
  const { log } = opts;
  const params = opts.quick ? MTLS_QUICK : MTLS_FULL;
  const skipped: string[] = [];
  const results: MtlsProxyResult[] = [];
  const ca = new TestCa('pillion-bench-ca');
  try {
    const files = (c: IssuedCert): IdentityFiles => ({ certFile: c.certFile, keyFile: c.keyFile, caFile: ca.caFile });
    // CN = the service name: nginx can check only DNS names or the CN (see startNginxChains).
    const client = ca.issue({ spiffeId: `${TD}/frontend`, cn: 'frontend' });
    const server = ca.issue({ spiffeId: `${TD}/backend`, cn: 'backend' });
    // The fresh-connection loop is a third mesh workload calling the server side directly.
    const loopCert = ca.issue({ spiffeId: `${TD}/bench-client`, cn: 'bench-client' });
    const loopContext = createSecureContext({ cert: loopCert.certPem, key: loopCert.keyPem, ca: ca.caPem });
    const identities = { client: files(client), server: files(server) };

    const chains: Array<{ proxy: string; tls: SidecarChain; plain: SidecarChain }> = [];
    try {
      const tls = await startPillionChain(group, dir, backend, 'pillion-mtls', identities, opts.cpuProf);
      const plain = await startPillionChain(group, dir, backend, 'pillion-plain', undefined, opts.cpuProf);
      log(`pillion chains: mTLS outbound ${tls.client.httpPort} → inbound ${tls.serverPort}; plaintext outbound ${plain.client.httpPort} → inbound ${plain.serverPort}`);
      chains.push({ proxy: 'Pillion', tls, plain });
    } catch (err) {
      skipped.push(`mtls (Pillion): ${firstLine(err)}`);
      log(`mtls: Pillion chains SKIPPED (${firstLine(err)})`);
    }
    if (opts.haveNginx) {
      try {
        const nginx = await startNginxChains(group, dir, backend, identities);
        log(`nginx chains: proxy_ssl ${nginx.tls.client.httpPort} → ssl_verify_client ${nginx.tls.serverPort}; plaintext ${nginx.plain.client.httpPort} → ${nginx.plain.serverPort}`);
        chains.push({ proxy: 'nginx', ...nginx });
      } catch (err) {
        skipped.push(`mtls (nginx): ${firstLine(err)}`);
        log(`mtls: nginx chains SKIPPED (${firstLine(err)})`);
      }
    } else {
      skipped.push('mtls (nginx): nginx unavailable');
    }

    const closedLoop = opts.haveWrk ? runWrk : runAutocannon;
    const tool = opts.haveWrk ? 'wrk' : 'autocannon';
    const http = (c: SidecarChain, path: string, connections: number, durationSec: number): HttpLoad => {
      const load: HttpLoad = { port: c.client.httpPort as number, path, connections, durationSec };
      if (c.client.host) load.host = c.client.host;
      return load;
    };
    // Warm-up, not measured: V8's JIT in the sidecars, the upstream pools and TLS sessions of every chain.
    for (const c of chains) {
      for (const side of [c.tls, c.plain]) await closedLoop(http(side, '/small', SMALL_CONNS, params.warmSec)).catch(() => undefined);
    }

    const measures: Array<{
      measure: Measure;
      label: string;
      unit: string;
      run: (c: SidecarChain) => Promise<{ value: number; errors: number; count?: number; cpu?: number }>;
    }> = [
      {
        measure: 'small',
        label: `small responses, req/s (${tool}, ${SMALL_CONNS} conns)`,
        unit: 'req/s',
        run: (c) => withCpu(c, 1e3, async () => fromLoad(await closedLoop(http(c, '/small', SMALL_CONNS, params.wrkSec)), (r) => r.rps), params.wrkSec),
      },
      {
        measure: 'large',
        label: `1 MiB responses, MB/s (${tool}, ${LARGE_CONNS} conns)`,
        unit: 'MB/s',
        run: (c) => withCpu(c, 1, async () => fromLoad(await closedLoop(http(c, '/large', LARGE_CONNS, params.wrkSec)), (r) => r.mbps), params.wrkSec),
      },
      {
        measure: 'p99',
        label: `p99 at a fixed ${RATE.toLocaleString('en-US')} req/s, ms (open loop, µs resolution)`,
        unit: 'ms',
        run: async (c) => {
          const load = { port: c.client.httpPort as number, path: '/small', rate: RATE, durationSec: params.latencySec, warmupSec: params.latencyWarmSec, maxSockets: 64 };
          // CPU per request at the same rate on both sides: both batch alike (one request per event-loop turn,
          // mostly), so this is what TLS adds per request, free of the closed loop's throughput feedback.
          // From the end of the warm-up: the connections (and handshakes) it needed are not counted.
          let before: number | undefined;
          const onMeasureStart = (): void => {
            before = chainCpuMs(c);
          };
          const r = fromLoad(await runFixedRate({ ...load, ...(c.client.host ? { host: c.client.host } : {}), onMeasureStart }), (l) => l.p99);
          const after = chainCpuMs(c);
          const sent = Math.round(RATE * params.latencySec);
          return before === undefined || after === undefined ? r : { ...r, cpu: ((after - before) * 1e3) / sent };
        },
      },
      {
        measure: 'connect',
        label: `new connections/s to the server side (TLS: full handshakes with a client certificate; ${CONNECT_CONCURRENCY} at once, one request each)`,
        unit: 'conn/s',
        run: async (c) => {
          const r = await runConnectLoop({
            port: c.serverPort,
            concurrency: CONNECT_CONCURRENCY,
            durationSec: params.connectSec,
            maxConnections: params.connectMax,
            ...(c.tls ? { tls: { context: loopContext, expectUri: `${TD}/backend` } } : {}),
          });
          return { value: r.perSec, errors: r.errors, count: r.done };
        },
      },
    ];

    for (const c of chains) {
      log('');
      log(`running mtls (${c.proxy}): ${params.pairs} × (mTLS, plaintext) back to back per measure, order alternating`);
      const rows: MtlsRow[] = [];
      for (const m of measures) {
        // The server sidecar's TLS connection count around each measure: shows whether the client sidecar's
        // pool reuses its mTLS connections (a handshake per request would be a different cost altogether).
        const before = await serverConnections(c.tls);
        const pairs = await pairedRuns(params.pairs, c.tls, c.plain, m.run, log);
        const after = await serverConnections(c.tls);
        const perPair = pairs.map(([t, p]) => (m.measure === 'p99' ? t.value - p.value : t.value / p.value));
        const row: MtlsRow = {
          measure: m.measure,
          label: m.label,
          unit: m.unit,
          tls: median(pairs.map(([t]) => t.value)),
          plain: median(pairs.map(([, p]) => p.value)),
          perPair,
          errors: pairs.reduce((a, [t, p]) => a + t.errors + p.errors, 0),
        };
        if (m.measure === 'connect') row.clientCompleted = pairs.reduce((a, [t]) => a + (t.count ?? 0), 0);
        const cpuPairs = pairs.filter(([t, p]) => t.cpu !== undefined && p.cpu !== undefined && t.cpu > 0);
        if (cpuPairs.length > 0) {
          row.cpu = {
            tls: median(cpuPairs.map(([t]) => t.cpu!)),
            plain: median(cpuPairs.map(([, p]) => p.cpu!)),
            perPair: cpuPairs.map(([t, p]) => p.cpu! / t.cpu!),
          };
        }
        if (before !== undefined && after !== undefined) row.serverCounted = after - before;
        rows.push(row);
        const digits = m.measure === 'p99' ? 3 : 0;
        log(
          `  ${m.measure.padEnd(8)} mTLS ${fmt(row.tls, digits)} ${m.unit}, plaintext ${fmt(row.plain, digits)} ${m.unit}; per pair ${m.measure === 'p99' ? 'mTLS − plaintext, ms' : 'mTLS ÷ plaintext'}: ${perPair.map((v) => fmt(v, m.measure === 'p99' ? 3 : 2)).join(' ')}${row.errors > 0 ? `; errors ${row.errors}` : ''}${row.cpu !== undefined ? `; sidecars' CPU per ${m.measure !== 'large' ? 'request mTLS ' + fmt(row.cpu.tls, 1) + ' µs, plaintext ' + fmt(row.cpu.plain, 1) + ' µs' : 'MB mTLS ' + fmt(row.cpu.tls, 2) + ' ms, plaintext ' + fmt(row.cpu.plain, 2) + ' ms'}, per pair plaintext ÷ mTLS: ${row.cpu.perPair.map((v) => fmt(v, 2)).join(' ')}` : ''}${row.serverCounted !== undefined ? `; TLS connections the server sidecar accepted: ${row.serverCounted}${row.clientCompleted !== undefined ? ` (the loop completed ${row.clientCompleted})` : ''}` : ''}`,
        );
      }
      results.push({ proxy: c.proxy, rows });
    }
  } finally {
    ca.close();
  }

  const row = (proxy: string, measure: Measure): MtlsRow | undefined => results.find((r) => r.proxy === proxy)?.rows.find((r) => r.measure === measure);
  const ratioCheck = (name: string, measure: Measure): TargetCheck => {
    const p = row('Pillion', measure);
    const n = row('nginx', measure);
    const v = p && p.perPair.length > 0 ? median(p.perPair) : NaN;
    return check(
      name,
      v,
      '>=',
      TARGET_RATIO,
      `Pillion mTLS ÷ plaintext, median of ${p?.perPair.length ?? 0} pairs ${fmt(v)} (${rangeOf(p?.perPair ?? [])}); ${fmt(p?.tls ?? NaN, 0)} vs ${fmt(p?.plain ?? NaN, 0)} ${p?.unit ?? ''}; nginx proxy_ssl ÷ plaintext ${fmt(n && n.perPair.length > 0 ? median(n.perPair) : NaN)}${p?.cpu ? `; Pillion sidecars' CPU per unit, plaintext ÷ mTLS ${fmt(median(p.cpu.perPair))} (${rangeOf(p.cpu.perPair)})` : ''}`,
    );
  };
  const checks = [
    ratioCheck('mTLS costs ≤ 20 % of small-response throughput (mTLS ÷ plaintext ≥ 0.8)', 'small'),
    ratioCheck('the same for 1 MiB bodies (mTLS ÷ plaintext ≥ 0.8)', 'large'),
  ];
  return { params, results, checks, skipped };
}

/** The mTLS case's table: absolute figures per side and the paired ratios, Pillion and nginx side by side. */
export function mtlsTable(outcome: MtlsOutcome): string {
  const p = outcome.results.find((r) => r.proxy === 'Pillion');
  const n = outcome.results.find((r) => r.proxy === 'nginx');
  const lines = [
    `| measure | Pillion mTLS | Pillion plaintext | Pillion mTLS ÷ plaintext, median of ${outcome.params.pairs} pairs (range) | nginx proxy_ssl | nginx plaintext | nginx mTLS ÷ plaintext |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  const measures = (p ?? n)?.rows ?? [];
  for (const m of measures) {
    const pr = p?.rows.find((r) => r.measure === m.measure);
    const nr = n?.rows.find((r) => r.measure === m.measure);
    const digits = m.measure === 'p99' ? 2 : 0;
    const abs = (r: MtlsRow | undefined, side: 'tls' | 'plain'): string => (r ? fmt(r[side], digits) : '–');
    const cmp = (r: MtlsRow | undefined): string => {
      if (!r || r.perPair.length === 0) return '–';
      return m.measure === 'p99' ? `added ${fmt(median(r.perPair), 3)} ms (${rangeOf(r.perPair, 3)})` : `${fmt(median(r.perPair))} (${rangeOf(r.perPair)})`;
    };
    lines.push(`| ${m.label} | ${abs(pr, 'tls')} | ${abs(pr, 'plain')} | ${cmp(pr)} | ${abs(nr, 'tls')} | ${abs(nr, 'plain')} | ${cmp(nr)} |`);
  }
  for (const m of measures) {
    const c = p?.rows.find((r) => r.measure === m.measure)?.cpu;
    if (c === undefined) continue;
    const perRequest = m.measure !== 'large';
    const unit = perRequest ? 'µs per request' : 'ms per MB';
    const what = m.measure === 'small' ? 'small responses' : m.measure === 'large' ? '1 MiB responses' : `small responses at a fixed ${RATE.toLocaleString('en-US')} req/s`;
    lines.push('');
    lines.push(
      `Pillion's two sidecars' CPU, ${what}: mTLS ${fmt(c.tls, perRequest ? 1 : 2)}, plaintext ${fmt(c.plain, perRequest ? 1 : 2)} ${unit}; plaintext ÷ mTLS ${fmt(median(c.perPair))} (${rangeOf(c.perPair)}).`,
    );
  }
  return lines.join('\n');
}

/** Per-run errors of the case (any > 0 is worth reading before the ratios). */
export function mtlsErrorLines(outcome: MtlsOutcome): string[] {
  const out: string[] = [];
  for (const r of outcome.results) for (const row of r.rows) if (row.errors > 0) out.push(`${r.proxy} ${row.measure}: ${row.errors} errors/non-2xx/failed connections over all runs`);
  return out;
}

/** User + system CPU of a chain's Pillion processes so far, ms; undefined for nginx or when /proc says nothing. */
function chainCpuMs(c: SidecarChain): number | undefined {
  if (c.pids === undefined) return undefined;
  let ms = 0;
  for (const pid of c.pids) {
    const own = processCpuMs(pid);
    if (own === undefined) return undefined;
    ms += own;
  }
  return ms;
}

/** Runs a throughput measure and adds the sidecars' CPU per unit (value × seconds units; `scale` ms → shown unit). */
async function withCpu(c: SidecarChain, scale: number, run: () => Promise<{ value: number; errors: number }>, seconds: number): Promise<{ value: number; errors: number; cpu?: number }> {
  const before = chainCpuMs(c);
  const r = await run();
  const after = chainCpuMs(c);
  if (before === undefined || after === undefined || !(r.value > 0)) return r;
  return { ...r, cpu: ((after - before) * scale) / (r.value * seconds) };
}

function fromLoad(r: LoadResult, pick: (r: LoadResult) => number): { value: number; errors: number } {
  return { value: pick(r), errors: r.errors + r.non2xx };
}

/** `n` back-to-back pairs (a, b), a first on even pairs and b first on odd ones; a failed pair is logged and left out. */
async function pairedRuns<T>(n: number, a: SidecarChain, b: SidecarChain, run: (c: SidecarChain) => Promise<T>, log: Log): Promise<Array<[T, T]>> {
  const out: Array<[T, T]> = [];
  for (let i = 0; i < n; i++) {
    try {
      const aFirst = i % 2 === 0;
      const r1 = await run(aFirst ? a : b);
      await sleep(100);
      const r2 = await run(aFirst ? b : a);
      await sleep(100);
      out.push(aFirst ? [r1, r2] : [r2, r1]);
    } catch (err) {
      log(`  pair ${i + 1}: ERROR ${firstLine(err)}`);
    }
  }
  return out;
}

/** Connections Pillion's server sidecar has counted on its TLS inbound so far; undefined for nginx or on error. */
async function serverConnections(chain: SidecarChain): Promise<number | undefined> {
  if (chain.serverAdminPort === undefined) return undefined;
  try {
    const r = await httpGet(chain.serverAdminPort, '/metrics', 2000);
    let sum = 0;
    for (const line of r.body.split('\n')) {
      if (line.startsWith('pillion_downstream_connections_transport_total{') && line.includes('transport="tls"')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  } catch {
    return undefined;
  }
}

export interface ConnectLoad {
  port: number;
  /** Present: TLS with this client certificate, and the server must present `expectUri` as its URI SAN. */
  tls?: { context: SecureContext; expectUri: string };
  concurrency: number;
  durationSec: number;
  maxConnections: number;
}

const CONNECT_REQUEST = 'GET /small HTTP/1.1\r\nHost: backend:8080\r\nConnection: close\r\n\r\n';

/**
 * Fresh connections, each carrying one request with `Connection: close`, `concurrency` at a time, until
 * `durationSec` or `maxConnections`. Over TLS each is a full handshake (no session is offered for resumption),
 * so the rate is the handshakes per second the server side completes, its client certificate check included.
 * The request makes sure the server finished its side (it reads the request only after verifying us).
 */
export async function runConnectLoop(load: ConnectLoad): Promise<{ perSec: number; done: number; errors: number }> {
  const start = performance.now();
  const deadline = start + load.durationSec * 1000;
  let started = 0;
  let done = 0;
  let errors = 0;
  const one = (): Promise<boolean> =>
    new Promise((resolve) => {
      let sock: Socket;
      if (load.tls) {
        const expect = load.tls.expectUri;
        sock = tlsConnect({
          host: '127.0.0.1',
          port: load.port,
          secureContext: load.tls.context,
          ALPNProtocols: ['http/1.1'],
          // Node's default check knows DNS names and IPs only; a mesh peer is named by its SPIFFE URI SAN.
          checkServerIdentity: (_host: string, cert: PeerCertificate) =>
            (cert.subjectaltname ?? '').split(', ').includes(`URI:${expect}`) ? undefined : new Error(`server is not ${expect}`),
        });
        sock.once('secureConnect', () => sock.write(CONNECT_REQUEST));
      } else {
        sock = netConnect({ host: '127.0.0.1', port: load.port });
        sock.once('connect', () => sock.write(CONNECT_REQUEST));
      }
      let head = '';
      const timer = setTimeout(() => sock.destroy(new Error('timeout')), 5000);
      sock.setEncoding('latin1');
      sock.on('data', (d: string) => {
        if (head.length < 16) head += d;
      });
      sock.on('error', () => undefined);
      sock.once('close', () => {
        clearTimeout(timer);
        resolve(head.startsWith('HTTP/1.1 200'));
      });
    });
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && started < load.maxConnections) {
      started++;
      if (await one()) done++;
      else errors++;
    }
  };
  await Promise.all(Array.from({ length: load.concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  return { perSec: done / elapsed, done, errors };
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}
