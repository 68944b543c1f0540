// Proxy CPU per proxied HTTP/2 stream (h2load -c 10 -m 10, /small or gRPC unary): each proxy's own CPU time,
// summed over its threads from /proc/PID/task/*/schedstat (ns, so GC helper threads count too), across an h2load
// run, divided by the streams h2load completed. Targets run back to back in alternating order, so a pair shares
// the machine's load; on a shared machine this moves far less than req/s does.
// CLI: node dist/bench/h2-cpu-per-stream.js [--pairs 8] [--requests 40000] [--case h2,grpc]
//      [--base <other build's dist/src/cli/main.js>] [--control <a copy of this build's main.js>] [--no-haproxy]
//      [--control-node-arg=<flag> ...] [--control-arg=<proxy argument> ...]
//      [--pillion-arg=<proxy argument, every Pillion> ...] [--concurrent] [--cpu-prof <dir> (Pillion's profile)]
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ChildGroup, sleep } from '../src/cli/children.js';
import { grpcUnaryH2loadArgs, GRPC_UNARY_PATH } from './grpc-load.js';
import { runH2load, type H2Load } from './load.js';
import { median } from './report.js';
import { startBackend, startHaproxy, startPillion, type Target } from './peers.js';
import { which } from './tools.js';

/** CPU time of all threads of a process so far, ns (threads that already exited are not counted). */
function threadsCpuNs(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ')[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return total;
}

interface Args {
  pairs: number;
  requests: number;
  cases: string[];
  base: string | undefined;
  /** A copy of this build, run as a third target: an A/A control for the A/B's noise. */
  control: string | undefined;
  /** More node flags for the control only (`--control-node-arg=--max-semi-space-size=16`): a flag's A/B. */
  controlNodeArgs: string[];
  /** More `pillion proxy` arguments for the control only (`--control-arg=--idle-memory-release --control-arg=off`). */
  controlArgs: string[];
  /** More `pillion proxy` arguments for every Pillion target (`--pillion-arg=--idle-memory-release --pillion-arg=off`). */
  pillionArgs: string[];
  haproxy: boolean;
  cpuProf: string | undefined;
  concurrent: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  return {
    pairs: Math.min(30, Math.max(1, Number(get('--pairs') ?? 8))),
    requests: Math.min(500_000, Math.max(1_000, Number(get('--requests') ?? 40_000))),
    cases: (get('--case') ?? 'h2,grpc').split(','),
    base: get('--base'),
    control: get('--control'),
    pillionArgs: argv.filter((a) => a.startsWith('--pillion-arg=')).map((a) => a.slice('--pillion-arg='.length)),
    controlArgs: argv.filter((a) => a.startsWith('--control-arg=')).map((a) => a.slice('--control-arg='.length)),
    controlNodeArgs: argv.filter((a) => a.startsWith('--control-node-arg=')).map((a) => a.slice('--control-node-arg='.length)),
    haproxy: !argv.includes('--no-haproxy') && which('haproxy') !== undefined,
    cpuProf: get('--cpu-prof'),
    concurrent: argv.includes('--concurrent'),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (which('h2load') === undefined) throw new Error('h2load is not installed (apt-get install nghttp2-client)');
  const group = new ChildGroup();
  group.installExitHandlers();
  try {
    const dir = group.tempDir('pillion-h2cpu-');
    const { ports } = await startBackend(group);
    const targets: Target[] = [
      await startPillion(group, dir, ports, { name: 'pillion', accessLog: 'off', proxyArgs: args.pillionArgs, ...(args.cpuProf !== undefined ? { cpuProf: join(args.cpuProf, 'pillion') } : {}) }),
    ];
    if (args.base !== undefined) targets.push(
        await startPillion(group, dir, ports, {
          name: 'base',
          accessLog: 'off',
          mainJs: args.base,
          proxyArgs: args.pillionArgs,
          ...(args.cpuProf !== undefined ? { cpuProf: join(args.cpuProf, 'base') } : {}),
        }),
      );
    if (args.control !== undefined) targets.push(await startPillion(group, dir, ports, { name: 'control', accessLog: 'off', mainJs: args.control, nodeArgs: args.controlNodeArgs, proxyArgs: [...args.pillionArgs, ...args.controlArgs] }));
    if (args.haproxy) targets.push(await startHaproxy(group, dir, ports));
    const load = (t: Target, kase: string, requests: number): H2Load => {
      const l: H2Load = {
        port: t.h2Port as number,
        path: kase === 'grpc' ? GRPC_UNARY_PATH : '/small',
        clients: 10,
        streams: 10,
        requests,
        timeoutSec: 120,
        logFile: join(dir, `h2load-${t.name}.log`),
      };
      if (t.authority !== undefined) l.authority = t.authority;
      if (kase === 'grpc') l.extraArgs = grpcUnaryH2loadArgs(join(dir, `grpc-${t.name}.body`));
      return l;
    };
    for (const kase of args.cases) {
      for (const t of targets) await runH2load(load(t, kase, Math.min(args.requests, 20_000))); // warm-up: JIT, pools
      const cpu = new Map<string, number[]>(targets.map((t) => [t.name, []]));
      const rps = new Map<string, number[]>(targets.map((t) => [t.name, []]));
      const measure = async (t: Target): Promise<void> => {
        const pid = t.pid as number;
        const before = threadsCpuNs(pid);
        const r = await runH2load(load(t, kase, args.requests));
        await sleep(50);
        const ns = threadsCpuNs(pid) - before;
        if (r.errors > 0 || r.non2xx > 0 || r.requests === 0) throw new Error(`${t.name}: ${r.errors} errors, ${r.non2xx} non-2xx of ${r.requests}`);
        cpu.get(t.name)!.push(ns / 1e3 / r.requests);
        rps.get(t.name)!.push(r.rps);
      };
      for (let i = 0; i < args.pairs; i++) {
        // Concurrent: every target under its own h2load at the same time, so they share the machine's load moment
        // by moment (req/s is then not comparable, CPU per stream is).
        if (args.concurrent) await Promise.all(targets.map(measure));
        // Each target takes each place in the order in turn (two targets: alternating).
        else for (let k = 0; k < targets.length; k++) await measure(targets[(i + k) % targets.length]!);
      }
      const line = (vals: readonly number[], d = 2): string =>
        `median ${median(vals).toFixed(d)} [${Math.min(...vals).toFixed(d)}–${Math.max(...vals).toFixed(d)}]`;
      console.log(`\n${kase}: ${args.pairs} rounds × ${args.requests} streams, µs proxy CPU per stream (all threads)`);
      for (const t of targets) {
        console.log(`  ${t.name.padEnd(8)} ${line(cpu.get(t.name)!)}  req/s ${line(rps.get(t.name)!, 0)}  all: ${cpu.get(t.name)!.map((v) => v.toFixed(2)).join(' ')}`);
      }
      const ratio = (a: string, b: string, m: Map<string, number[]>): number[] => m.get(a)!.map((v, i) => v / m.get(b)![i]!);
      if (args.base !== undefined) console.log(`  pillion ÷ base CPU per pair: ${line(ratio('pillion', 'base', cpu), 3)}`);
      if (args.control !== undefined) console.log(`  control ÷ pillion CPU per pair (A/A): ${line(ratio('control', 'pillion', cpu), 3)}`);
      if (args.control !== undefined && args.base !== undefined) console.log(`  control ÷ base CPU per pair: ${line(ratio('control', 'base', cpu), 3)}`);
      if (args.haproxy) {
        console.log(`  pillion ÷ haproxy CPU per pair: ${line(ratio('pillion', 'haproxy', cpu), 3)}`);
        console.log(`  pillion ÷ haproxy req/s per pair: ${line(ratio('pillion', 'haproxy', rps), 3)}`);
        if (args.base !== undefined) console.log(`  base ÷ haproxy req/s per pair: ${line(ratio('base', 'haproxy', rps), 3)}`);
      }
    }
  } finally {
    await group.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
