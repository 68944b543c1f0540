// Load generators for the benchmark. Every loop is bounded in time and count. autocannon (in this process)
// for closed-loop HTTP/1.1, wrk (Debian) for large bodies where autocannon's own cost would dominate, h2load
// for HTTP/2, our own open-loop fixed-rate client for sub-millisecond latency (autocannon records whole
// milliseconds), and a bounded byte stream for TCP.
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { readFileSync, rmSync } from 'node:fs';

export interface LoadResult {
  /** Requests per second (HTTP) or 0 for TCP. */
  rps: number;
  /** Milliseconds. NaN when the tool does not say. */
  p50: number;
  p99: number;
  /** Megabytes (10^6 B) per second of response payload (HTTP) or of streamed bytes (TCP). */
  mbps: number;
  requests: number;
  errors: number;
  non2xx: number;
  tool: string;
}

export interface HttpLoad {
  /** Where to connect (default 127.0.0.1; a pod address in the interception bench). */
  address?: string;
  port: number;
  path: string;
  /** Host header (a mesh service name for Pillion). */
  host?: string;
  /** Extra request headers (trace context, to price its propagation). */
  headers?: Record<string, string>;
  connections: number;
  durationSec: number;
  /** wrk only: run it on this CPU (`taskset -c`), away from the process measured. */
  cpu?: number;
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Closed-loop load with autocannon, `connections` keep-alive connections for `durationSec`. */
export async function runAutocannon(load: HttpLoad): Promise<LoadResult> {
  const opts: autocannon.Options = {
    url: `http://${hostPort(load.address ?? '127.0.0.1', load.port)}${load.path}`,
    connections: load.connections,
    duration: load.durationSec,
    pipelining: 1,
    timeout: 10,
  };
  if (load.host || load.headers) opts.headers = { ...load.headers, ...(load.host ? { host: load.host } : {}) };
  let guard: NodeJS.Timeout | undefined;
  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
    // Belt and braces: never run past the requested duration by much.
    guard = setTimeout(() => instance.stop(), (load.durationSec + 15) * 1000);
  }).finally(() => clearTimeout(guard));
  return {
    rps: result.requests.total / Math.max(result.duration, 0.001),
    p50: result.latency.p50,
    p99: result.latency.p99,
    mbps: result.throughput.total / Math.max(result.duration, 0.001) / 1e6,
    requests: result.requests.total,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    tool: 'autocannon',
  };
}

/** Runs a command with a hard timeout; resolves with stdout (and exit code). */
export function runCommand(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + err.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function parseWrkDuration(s: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(s.trim());
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

function parseSize(s: string): number {
  const m = /^([\d.]+)([KMGT]?B)$/.exec(s.trim());
  if (!m) return NaN;
  const mult: Record<string, number> = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
  return Number(m[1]) * (mult[m[2] as string] ?? 1);
}

/** Closed-loop load with wrk (1 thread), parsed from its text output. */
export async function runWrk(load: HttpLoad): Promise<LoadResult> {
  const args = [
    '-t1',
    `-c${load.connections}`,
    `-d${Math.max(1, Math.round(load.durationSec))}s`, // wrk takes whole seconds
    '--latency',
    '--timeout',
    '10s',
    `http://127.0.0.1:${load.port}${load.path}`,
  ];
  if (load.host) args.push('-H', `Host: ${load.host}`);
  const pinned = load.cpu === undefined ? args : ['-c', String(load.cpu), 'wrk', ...args];
  const { code, stdout, stderr } = await runCommand(load.cpu === undefined ? 'wrk' : 'taskset', pinned, (load.durationSec + 20) * 1000);
  if (code !== 0) throw new Error(`wrk failed (${code}): ${stderr || stdout}`);
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const transfer = parseSize(/Transfer\/sec:\s+(\S+)/.exec(stdout)?.[1] ?? '');
  const p50 = parseWrkDuration(/^\s+50%\s+(\S+)/m.exec(stdout)?.[1] ?? '');
  const p99 = parseWrkDuration(/^\s+99%\s+(\S+)/m.exec(stdout)?.[1] ?? '');
  const total = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  return { rps, p50, p99, mbps: transfer / 1e6, requests: total, errors, non2xx, tool: 'wrk' };
}

export interface H2Load {
  port: number;
  path: string;
  authority?: string;
  clients: number;
  streams: number;
  requests: number;
  timeoutSec: number;
  logFile: string;
  /** More h2load arguments (a gRPC body and headers: bench/grpc-load.ts). */
  extraArgs?: readonly string[];
}

/** h2load over h2c (prior knowledge), bounded by request count and a hard timeout; percentiles from its log. */
export async function runH2load(load: H2Load): Promise<LoadResult> {
  const args = [
    '-c',
    String(load.clients),
    '-m',
    String(load.streams),
    '-n',
    String(load.requests),
    '-T',
    '10',
    '--log-file',
    load.logFile,
    `http://127.0.0.1:${load.port}${load.path}`,
  ];
  if (load.authority) args.push('-H', `:authority: ${load.authority}`);
  if (load.extraArgs) args.push(...load.extraArgs);
  const { code, stdout, stderr } = await runCommand('h2load', args, load.timeoutSec * 1000);
  if (code !== 0 && !/finished in/.test(stdout)) throw new Error(`h2load failed (${code}): ${stderr || stdout}`);
  const fin = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s, ([\d.]+)([KMG]?B)\/s/.exec(stdout);
  const reqs = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  // Log lines: start time (µs since epoch), status, request duration (µs).
  const durations: number[] = [];
  try {
    for (const line of readFileSync(load.logFile, 'utf8').split('\n')) {
      const parts = line.split('\t');
      if (parts.length >= 3 && parts[1]?.startsWith('2')) durations.push(Number(parts[2]) / 1000);
    }
  } finally {
    rmSync(load.logFile, { force: true });
  }
  durations.sort((a, b) => a - b);
  const bytesPerSec = fin ? parseSize(`${fin[4]}${fin[5]}`) : NaN;
  return {
    rps: fin ? Number(fin[3]) : NaN,
    p50: percentile(durations, 0.5),
    p99: percentile(durations, 0.99),
    mbps: bytesPerSec / 1e6,
    requests: reqs ? Number(reqs[4]) : 0,
    errors: reqs ? Number(reqs[5]) + Number(reqs[6]) : 0,
    non2xx: codes ? Number(codes[2]) + Number(codes[3]) + Number(codes[4]) : 0,
    tool: 'h2load',
  };
}

export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx] as number;
}

export interface FixedRateLoad {
  /** Where to connect (default 127.0.0.1). */
  address?: string;
  port: number;
  path: string;
  host?: string;
  rate: number;
  durationSec: number;
  /** Keep-alive sockets available to the generator. */
  maxSockets: number;
  /** Sent at the same rate before the measured part, not recorded (sockets opened, JIT warm). */
  warmupSec: number;
  /** Called as the first measured request goes out (the CPU of the target can be read from there on). */
  onMeasureStart?: () => void;
}

/**
 * Open-loop load at a fixed rate (wrk2-style): requests are issued on schedule whether or not earlier ones
 * have finished, so a slow target cannot slow the client down (no coordinated omission). Latency runs from
 * the moment a request is issued (queueing in the client's socket pool included) to the end of its response,
 * not from the 1 ms timer tick, so the client's timer granularity is not charged to the target.
 * Microsecond resolution. Bounded by rate × duration requests and by duration + 10 s of wall time.
 */
export async function runFixedRate(load: FixedRateLoad): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: load.maxSockets });
  const warmup = Math.round(load.rate * load.warmupSec);
  const total = warmup + Math.round(load.rate * load.durationSec);
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let sent = 0;
  let done = 0;
  const headers: Record<string, string> = load.host ? { host: load.host } : {};
  const start = performance.now();
  const intervalMs = 1000 / load.rate;

  await new Promise<void>((resolve) => {
    const hardStop = setTimeout(finish, (load.warmupSec + load.durationSec + 10) * 1000);
    function finish(): void {
      clearInterval(ticker);
      clearTimeout(hardStop);
      resolve();
    }
    function fire(record: boolean): void {
      const issued = performance.now();
      const req = request(
        { host: load.address ?? '127.0.0.1', port: load.port, path: load.path, agent, headers },
        (res) => {
          res.on('data', noop);
          res.on('end', () => {
            if ((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300) {
              if (record) latencies.push(performance.now() - issued);
            } else {
              non2xx++;
            }
            if (++done === total) finish();
          });
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', () => {
        errors++;
        if (++done === total) finish();
      });
      req.end();
    }
    const ticker = setInterval(() => {
      const due = Math.min(total, Math.floor((performance.now() - start) / intervalMs) + 1);
      while (sent < due) {
        if (sent === warmup) load.onMeasureStart?.();
        fire(sent >= warmup);
        sent++;
      }
    }, 1);
  });
  agent.destroy();
  const elapsed = (performance.now() - start) / 1000 - load.warmupSec;
  latencies.sort((a, b) => a - b);
  return {
    rps: Math.max(0, done - warmup) / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    mbps: NaN,
    requests: latencies.length,
    errors: errors + (total - done),
    non2xx,
    tool: 'fixed-rate',
  };
}

function noop(): void {}

export interface TcpLoad {
  port: number;
  connections: number;
  bytesPerConnection: number;
  timeoutSec: number;
}

/** Streams a bounded number of bytes over each connection to the sink and waits for its byte count. */
export async function runTcpStream(load: TcpLoad): Promise<LoadResult> {
  const chunk = Buffer.alloc(64 * 1024, 'y');
  const start = performance.now();
  let errors = 0;
  let acked = 0;
  await Promise.all(
    Array.from(
      { length: load.connections },
      () =>
        new Promise<void>((resolve) => {
          const sock = connect({ host: '127.0.0.1', port: load.port, allowHalfOpen: true });
          let left = load.bytesPerConnection;
          let reply = '';
          const timer = setTimeout(() => sock.destroy(new Error('timeout')), load.timeoutSec * 1000);
          const pump = (): void => {
            while (left > 0) {
              const n = Math.min(left, chunk.length);
              left -= n;
              const ok = sock.write(n === chunk.length ? chunk : chunk.subarray(0, n));
              if (!ok) {
                sock.once('drain', pump);
                return;
              }
            }
            sock.end();
          };
          sock.once('connect', pump);
          sock.setEncoding('utf8');
          sock.on('data', (d: string) => (reply += d));
          sock.on('end', () => {
            const m = /^ok (\d+)/.exec(reply);
            if (m) acked += Number(m[1]);
            else errors++;
            sock.destroy();
          });
          sock.on('error', () => errors++);
          sock.on('close', () => {
            clearTimeout(timer);
            resolve();
          });
        }),
    ),
  );
  const elapsed = (performance.now() - start) / 1000;
  if (acked !== load.connections * load.bytesPerConnection) errors += 1;
  return { rps: NaN, p50: NaN, p99: NaN, mbps: acked / elapsed / 1e6, requests: load.connections, errors, non2xx: 0, tool: 'tcp-stream' };
}

export interface TcpConnectLoad {
  port: number;
  /** Connections open at once; each worker opens the next as its last one closes. */
  concurrency: number;
  durationSec: number;
}

const CONNECT_PAYLOAD = Buffer.from('ping');
/** Hard bound on connections per run, whatever the machine's speed. */
const MAX_CONNECTIONS_PER_RUN = 200_000;
const CONNECT_TIMEOUT_MS = 5000;

/**
 * Connection setup rate: each connection sends 4 bytes, half-closes, reads the sink's `ok 4` and closes, so a
 * connection counts only once the whole exchange went through the proxy both ways. rps = connections per second;
 * p50/p99 = ms from connect() to close.
 */
export async function runTcpConnections(load: TcpConnectLoad): Promise<LoadResult> {
  const start = performance.now();
  const deadline = start + load.durationSec * 1000;
  const times: number[] = [];
  let errors = 0;
  let started = 0;
  const one = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      let reply = '';
      let failed = false;
      const sock = connect({ host: '127.0.0.1', port: load.port, allowHalfOpen: true });
      // A connection the proxy never closes would hold its worker past the deadline: bounded, it counts an error.
      const timer = setTimeout(() => sock.destroy(new Error('timeout')), CONNECT_TIMEOUT_MS);
      sock.setEncoding('utf8');
      sock.once('connect', () => sock.end(CONNECT_PAYLOAD));
      sock.on('data', (d: string) => (reply += d));
      sock.on('end', () => sock.destroy());
      sock.on('error', () => (failed = true));
      sock.on('close', () => {
        clearTimeout(timer);
        if (failed || !reply.startsWith('ok 4')) errors++;
        else times.push(performance.now() - t0);
        resolve();
      });
    });
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline && started < MAX_CONNECTIONS_PER_RUN) {
      started++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: load.concurrency }, worker));
  const elapsed = (performance.now() - start) / 1000;
  times.sort((a, b) => a - b);
  const pct = (p: number): number => (times.length === 0 ? NaN : times[Math.min(times.length - 1, Math.floor(times.length * p))]!);
  return { rps: times.length / elapsed, p50: pct(0.5), p99: pct(0.99), mbps: NaN, requests: times.length, errors, non2xx: 0, tool: 'tcp-connect' };
}
