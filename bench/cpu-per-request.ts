// CPU per proxied small request: the proxy process's own utime + stime (/proc/PID/stat) across a closed-loop wrk
// run, divided by the requests wrk completed. On a shared machine this moves far less than req/s does.
// CLI: node dist/bench/cpu-per-request.js [--rounds 3] [--seconds 5] [--connections 50] [--access-log off|file]
//      [--node-arg=--trace-gc ...]
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ChildGroup, readRss, sleep } from '../src/cli/children.js';
import { runWrk } from './load.js';
import { processCpuMs } from './proc-cpu.js';
import { median } from './report.js';
import { startBackend, startPillion } from './peers.js';

export interface CpuPerRequestOptions {
  rounds?: number;
  durationSec?: number;
  connections?: number;
  /** 'off', or 'file' for an access log written to a temp file. */
  accessLog?: 'off' | 'file';
  nodeArgs?: readonly string[];
}

export interface CpuPerRequestRound {
  requests: number;
  rps: number;
  cpuUsPerRequest: number;
  p99Ms: number;
}

export interface CpuPerRequestResult {
  rounds: CpuPerRequestRound[];
  medianCpuUsPerRequest: number;
  /** Proxy RSS right after the last round (steady load just ended), MiB. */
  rssMiB: number;
}

/** utime + stime of one process in seconds. */
function cpuSeconds(pid: number): number {
  const ms = processCpuMs(pid);
  if (ms === undefined) throw new Error(`process ${pid} is gone`);
  return ms / 1000;
}

export async function measureCpuPerRequest(opts: CpuPerRequestOptions = {}): Promise<CpuPerRequestResult> {
  const rounds = Math.min(20, Math.max(1, opts.rounds ?? 3));
  const durationSec = Math.min(10, Math.max(1, opts.durationSec ?? 5));
  const connections = opts.connections ?? 50;
  const group = new ChildGroup();
  group.installExitHandlers();
  try {
    const dir = group.tempDir('pillion-cpu-');
    const { ports } = await startBackend(group);
    const proxy = await startPillion(group, dir, ports, {
      name: 'pillion',
      accessLog: opts.accessLog === 'file' ? join(dir, 'access.log') : 'off',
      nodeArgs: opts.nodeArgs ?? [],
    });
    const pid = proxy.pid;
    if (pid === undefined || proxy.httpPort === undefined) throw new Error('the proxy has no pid or port');
    const load = { port: proxy.httpPort, host: proxy.host, path: '/small', connections };
    await runWrk({ ...load, durationSec: 1 }); // warm-up: JIT, pools
    const out: CpuPerRequestRound[] = [];
    for (let i = 0; i < rounds; i++) {
      const before = cpuSeconds(pid);
      const r = await runWrk({ ...load, durationSec });
      await sleep(100); // let the proxy finish the last responses' bookkeeping
      const cpu = cpuSeconds(pid) - before;
      out.push({ requests: r.requests, rps: r.rps, cpuUsPerRequest: (cpu * 1e6) / r.requests, p99Ms: r.p99 });
    }
    const rssMiB = (readRss(pid)?.rssKiB ?? NaN) / 1024;
    return { rounds: out, medianCpuUsPerRequest: median(out.map((r) => r.cpuUsPerRequest)), rssMiB };
  } finally {
    await group.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  const get = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const opts: CpuPerRequestOptions = {
    rounds: Number(get('--rounds') ?? 3),
    durationSec: Number(get('--seconds') ?? 5),
    connections: Number(get('--connections') ?? 50),
    accessLog: get('--access-log') === 'file' ? 'file' : 'off',
    nodeArgs: args.filter((a) => a.startsWith('--node-arg=')).map((a) => a.slice('--node-arg='.length)),
  };
  measureCpuPerRequest(opts).then(
    (r) => {
      for (const x of r.rounds)
        console.log(`${x.requests} requests, ${Math.round(x.rps)} req/s, p99 ${x.p99Ms.toFixed(2)} ms, ${x.cpuUsPerRequest.toFixed(1)} µs CPU/request`);
      console.log(`median ${r.medianCpuUsPerRequest.toFixed(1)} µs CPU per request; RSS ${r.rssMiB.toFixed(1)} MiB`);
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
