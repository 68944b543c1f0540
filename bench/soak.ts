// Soak (`npm run bench:soak`, or `node dist/bench/soak.js` after a build): mixed traffic through one real
// `pillion proxy` for a long while, to see whether it holds still: HTTP/1.1 keep-alive and `Connection: close`,
// HTTP/2 (prior knowledge), opaque TCP, about 5 % of them abandoned by the client at a random point, and the two
// upstream endpoints (bench/backend-server.ts processes, HTTP/1.1 + h2c + TCP sink each) restarted in turn,
// one every 30 s. Prints the proxy's RSS and fds (/proc), V8 heap (from /metrics) and active gauges at the
// start, every minute and at the end (after 5 s of quiet, when the idle-memory release has run); writes
// .bench-out/soak.json. Not part of `npm test`.
//
// Flags: --minutes N (default 10; fractions allowed), --rate R (requests/connections started per second,
// default 600), --restart-every S (default 30). Every loop is bounded in time and in flight (at most 256).
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { freePorts, httpGet, readRss, resolveFromHere, sleep, waitForHttp, type ManagedChild } from '../src/cli/children.js';
import { benchChildGroup } from './child-group.js';

const { values: flags } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    rate: { type: 'string', default: '600' },
    'restart-every': { type: 'string', default: '30' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  process.stdout.write('usage: node dist/bench/soak.js [--minutes N] [--rate R] [--restart-every S]\n');
  process.exit(0);
}
const MINUTES = Math.max(0.1, Number(flags.minutes));
const RATE = Math.max(10, Number(flags.rate));
const RESTART_MS = Math.max(5, Number(flags['restart-every'])) * 1000;
const MAX_IN_FLIGHT = 256;
const ABORT_SHARE = 0.05;
const REQUEST_TIMEOUT_MS = 10_000;

const log = (s: string): void => void process.stdout.write(`${s}\n`);
const group = benchChildGroup('soak');

// ==== the mesh: two backend processes behind one proxy =====================================================

interface BackendPorts {
  http: number;
  h2: number;
  tcp: number;
}

async function startBackendAt(name: string, ports?: BackendPorts): Promise<{ child: ManagedChild; ports: BackendPorts }> {
  const args = [resolveFromHere(import.meta.url, './backend-server.js')];
  if (ports) args.push('--http-port', String(ports.http), '--h2-port', String(ports.h2), '--tcp-port', String(ports.tcp));
  const child = group.spawn({ name, command: process.execPath, args });
  const line = await child.waitForJson({ msg: 'backend listening' }, 10_000);
  return { child, ports: { http: line.http as number, h2: line.h2 as number, tcp: line.tcp as number } };
}

function meshYaml(a: BackendPorts, b: BackendPorts, egress: number, unused: number): string {
  const eps = (k: keyof BackendPorts): string => `[{ address: 127.0.0.1, port: ${a[k]} }, { address: 127.0.0.1, port: ${b[k]} }]`;
  return `services:
  - name: soak-client
    ports: [{ port: 8000, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${unused} }]
    egress: [{ localPort: ${egress}, service: sink, port: 9000 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: ${eps('http')}
    policy: { connectTimeout: 1s, timeout: 10s }
  - name: backendh2
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: ${eps('h2')}
    policy: { connectTimeout: 1s, timeout: 10s }
  - name: sink
    ports: [{ port: 9000, protocol: tcp }]
    endpoints: ${eps('tcp')}
    policy: { connectTimeout: 1s }
`;
}

// ==== traffic ================================================================================================

type Kind = 'h1-keepalive' | 'h1-close' | 'h2' | 'tcp';
const KINDS: readonly [Kind, number][] = [
  ['h1-keepalive', 0.35],
  ['h1-close', 0.15],
  ['h2', 0.35],
  ['tcp', 0.15],
];

interface Counts {
  ok: number;
  aborted: number;
  failed: number;
}
const counts = new Map<Kind, Counts>(KINDS.map(([k]) => [k, { ok: 0, aborted: 0, failed: 0 }]));
const failures = new Map<string, number>();
let inFlight = 0;

function fail(kind: Kind, why: string): void {
  counts.get(kind)!.failed++;
  failures.set(`${kind}: ${why}`, (failures.get(`${kind}: ${why}`) ?? 0) + 1);
}

let outbound = 0;
let egress = 0;
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 32 });
let session: http2.ClientHttp2Session | null = null;

function h2session(): http2.ClientHttp2Session {
  if (session === null || session.closed || session.destroyed) {
    const s = http2.connect(`http://127.0.0.1:${outbound}`);
    s.on('error', () => {});
    s.on('close', () => {
      if (session === s) session = null;
    });
    session = s;
  }
  return session;
}

function h1(kind: Kind, abort: boolean): Promise<void> {
  return new Promise((done) => {
    const path = Math.random() < 0.1 ? '/large' : '/small';
    const req = http.request(
      {
        host: '127.0.0.1',
        port: outbound,
        path,
        agent: kind === 'h1-keepalive' ? keepAlive : false,
        headers: { host: 'backend:8080', ...(kind === 'h1-close' ? { connection: 'close' } : {}) },
      },
      (res) => {
        res.on('data', () => {
          if (abort) req.destroy();
        });
        res.on('end', () => {
          if (res.statusCode === 200) counts.get(kind)!.ok++;
          else fail(kind, `status ${res.statusCode} ${String(res.headers['x-pillion-reason'] ?? '')}`);
          done();
        });
        res.on('error', () => undefined);
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error('timeout')));
    req.on('error', (err) => {
      if (abort) counts.get(kind)!.aborted++;
      else fail(kind, err.message);
      done();
    });
    req.on('close', () => done());
    req.end();
    if (abort) setTimeout(() => req.destroy(), Math.random() * 5);
  });
}

function h2(abort: boolean): Promise<void> {
  return new Promise((done) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = h2session().request({ ':path': Math.random() < 0.1 ? '/large' : '/small', ':authority': 'backendh2:8080' }, { endStream: true });
    } catch (err) {
      fail('h2', (err as Error).message);
      return done();
    }
    let status = 0;
    let reason = '';
    stream.setTimeout(REQUEST_TIMEOUT_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.on('response', (h) => {
      status = Number(h[':status']);
      reason = String(h['x-pillion-reason'] ?? '');
    });
    stream.on('data', () => undefined);
    stream.on('error', () => undefined);
    stream.on('close', () => {
      if (abort) counts.get('h2')!.aborted++;
      else if (status === 200 && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR) counts.get('h2')!.ok++;
      else fail('h2', `status ${status} ${reason} rst ${stream.rstCode}`);
      done();
    });
    if (abort) setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), Math.random() * 5);
  });
}

const TCP_PAYLOAD = Buffer.alloc(64 * 1024, 't');

function tcp(abort: boolean): Promise<void> {
  return new Promise((done) => {
    const socket = net.connect(egress, '127.0.0.1');
    let reply = '';
    let finished = false;
    const finish = (ok: boolean, why: string): void => {
      if (finished) return;
      finished = true;
      if (abort) counts.get('tcp')!.aborted++;
      else if (ok) counts.get('tcp')!.ok++;
      else fail('tcp', why);
      socket.destroy();
      done();
    };
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => finish(false, 'timeout'));
    socket.on('error', (err) => finish(false, err.message));
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    socket.on('end', () => finish(reply === `ok ${TCP_PAYLOAD.length}\n`, `reply ${JSON.stringify(reply.slice(0, 30))}`));
    socket.on('close', () => finish(false, 'closed without a reply'));
    socket.on('connect', () => {
      if (abort) {
        socket.write(TCP_PAYLOAD.subarray(0, 1000));
        setTimeout(() => finish(true, ''), Math.random() * 5);
        return;
      }
      socket.end(TCP_PAYLOAD);
    });
  });
}

function pickKind(): Kind {
  let r = Math.random();
  for (const [k, share] of KINDS) {
    if (r < share) return k;
    r -= share;
  }
  return 'h1-keepalive';
}

function startOne(): void {
  const kind = pickKind();
  const abort = Math.random() < ABORT_SHARE;
  inFlight++;
  const p = kind === 'tcp' ? tcp(abort) : kind === 'h2' ? h2(abort) : h1(kind, abort);
  p.then(
    () => inFlight--,
    () => inFlight--,
  );
}

// ==== samples ================================================================================================

interface Sample {
  atSec: number;
  rssMiB: number;
  peakMiB: number;
  fds: number;
  heapUsedMiB: number;
  connectionsActive: number;
  requestsActive: number;
  upstreamConnections: number;
  requests: number;
}

function promSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

async function sample(pid: number, admin: number, startedAt: number): Promise<Sample> {
  const rss = readRss(pid);
  let fds = NaN;
  try {
    fds = readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    /* gone */
  }
  const metrics = (await httpGet(admin, '/metrics', 5_000)).body;
  const done = [...counts.values()].reduce((n, c) => n + c.ok + c.aborted + c.failed, 0);
  return {
    atSec: Math.round((Date.now() - startedAt) / 1000),
    rssMiB: (rss?.rssKiB ?? NaN) / 1024,
    peakMiB: (rss?.peakKiB ?? NaN) / 1024,
    fds,
    heapUsedMiB: promSum(metrics, 'nodejs_heap_size_used_bytes') / 1048576,
    connectionsActive: promSum(metrics, 'pillion_downstream_connections_active'),
    requestsActive: promSum(metrics, 'pillion_downstream_requests_active'),
    upstreamConnections: promSum(metrics, 'pillion_upstream_connections_active'),
    requests: done,
  };
}

const HEAD = '| t (s) | RSS MiB | peak MiB | fds | heap used MiB | downstream conns | requests active | upstream conns | done |';
function row(s: Sample, label = ''): string {
  const f = (n: number, d = 1): string => (Number.isFinite(n) ? n.toFixed(d) : '-');
  return `| ${s.atSec}${label} | ${f(s.rssMiB)} | ${f(s.peakMiB)} | ${s.fds} | ${f(s.heapUsedMiB)} | ${s.connectionsActive} | ${s.requestsActive} | ${s.upstreamConnections} | ${s.requests} |`;
}

// ==== main ===================================================================================================

async function main(): Promise<void> {
  log(`# Pillion soak: ${MINUTES} min, ~${RATE} starts/s, ${ABORT_SHARE * 100} % client aborts, an endpoint restarted every ${RESTART_MS / 1000} s`);
  log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}; load average ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const dir = group.tempDir('pillion-soak-');
  const backends = [await startBackendAt('backend-a'), await startBackendAt('backend-b')];
  const [egressPort, unused] = await freePorts(2);
  egress = egressPort!;
  const config = join(dir, 'mesh.yaml');
  writeFileSync(config, meshYaml(backends[0]!.ports, backends[1]!.ports, egress, unused!));
  const proxy = group.spawn({
    name: 'pillion',
    command: process.execPath,
    args: [
      ...NODE_FLAGS,
      resolveFromHere(import.meta.url, '../src/cli/main.js'),
      'proxy', '--config', config, '--service', 'soak-client', '--app-port', String(unused),
      '--admin-port', '0', '--inbound-port', '0', '--outbound-port', '0', '--access-log', 'off',
    ],
    keepLines: 200,
  });
  outbound = (await proxy.waitForJson({ msg: 'listening', listener: 'outbound' }, 20_000)).port as number;
  const admin = (await proxy.waitForJson({ msg: 'admin listening' }, 20_000)).port as number;
  await waitForHttp(admin, '/ready', 20_000, { child: proxy });
  const pid = proxy.pid!;
  log(`pillion pid ${pid}: outbound ${outbound}, egress ${egress}, admin ${admin}; backends ${backends.map((b) => b.child.pid).join(', ')}`);

  const startedAt = Date.now();
  const endAt = startedAt + MINUTES * 60_000;
  const samples: Sample[] = [];
  log('');
  log(HEAD);
  log('|---|---|---|---|---|---|---|---|---|');
  const first = await sample(pid, admin, startedAt);
  samples.push(first);
  log(row(first, ' start'));

  // Traffic: RATE starts a second, in 10 ms ticks, never more than MAX_IN_FLIGHT at once.
  let skipped = 0;
  const perTick = RATE / 100;
  let carry = 0;
  const ticker = setInterval(() => {
    carry += perTick;
    while (carry >= 1) {
      carry--;
      if (inFlight >= MAX_IN_FLIGHT) skipped++;
      else startOne();
    }
  }, 10);

  // Restarts: A, B, A, ... one every RESTART_MS, on the same ports.
  let restarts = 0;
  const restarter = setInterval(() => {
    const i = restarts++ % 2;
    const b = backends[i]!;
    (async () => {
      await b.child.stop(2_000);
      backends[i] = await startBackendAt(`backend-${i === 0 ? 'a' : 'b'}-${restarts}`, b.ports);
    })().catch((err: Error) => log(`restart failed: ${err.message}`));
  }, RESTART_MS);

  let nextMinute = startedAt + 60_000;
  while (Date.now() < endAt) {
    await sleep(Math.min(1_000, endAt - Date.now()));
    if (!proxy.running) break;
    if (Date.now() >= nextMinute && Date.now() < endAt) {
      nextMinute += 60_000;
      const s = await sample(pid, admin, startedAt);
      samples.push(s);
      log(row(s));
    }
  }
  clearInterval(ticker);
  clearInterval(restarter);
  const drainBy = Date.now() + REQUEST_TIMEOUT_MS + 2_000;
  while (inFlight > 0 && Date.now() < drainBy) await sleep(50);
  session?.close();
  keepAlive.destroy();
  const atStop = await sample(pid, admin, startedAt);
  samples.push(atStop);
  log(row(atStop, ' traffic stopped'));
  await sleep(5_000);
  const end = proxy.running ? await sample(pid, admin, startedAt) : undefined;
  if (end) {
    samples.push(end);
    log(row(end, ' end (5 s idle)'));
  }

  log('');
  log('| traffic | ok | aborted (on purpose) | failed |');
  log('|---|---|---|---|');
  for (const [k, c] of counts) log(`| ${k} | ${c.ok} | ${c.aborted} | ${c.failed} |`);
  log(`upstream restarts: ${restarts}; starts skipped at the in-flight cap: ${skipped}`);
  if (failures.size > 0) {
    log('failures (expected a few around each restart: a request already sent to the endpoint going down):');
    for (const [why, n] of [...failures].sort((a, b) => b[1] - a[1]).slice(0, 12)) log(`  ${n} × ${why}`);
  }
  const alive = proxy.running;
  log(alive ? 'proxy: alive' : `proxy: EXITED (${proxy.exitCode ?? proxy.exitSignal}); last output:\n  ${proxy.lines.slice(-15).join('\n  ')}`);
  if (end) {
    log(`RSS start → end: ${first.rssMiB.toFixed(1)} → ${end.rssMiB.toFixed(1)} MiB (peak ${end.peakMiB.toFixed(1)}); fds ${first.fds} → ${end.fds}; heap ${first.heapUsedMiB.toFixed(1)} → ${end.heapUsedMiB.toFixed(1)} MiB; active: ${end.connectionsActive} connections, ${end.requestsActive} requests`);
  }
  const outDir = resolve(process.cwd(), '.bench-out');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'soak.json'), JSON.stringify({ minutes: MINUTES, rate: RATE, samples, counts: Object.fromEntries(counts), failures: Object.fromEntries(failures), restarts, skipped, alive }, null, 2));
  await group.close();
  process.exit(alive && end !== undefined && end.requestsActive === 0 ? 0 : 1);
}

main().catch(async (err: Error) => {
  process.stderr.write(`soak: ${err.stack ?? err.message}\n`);
  await group.close();
  process.exit(1);
});
