// Interception benchmark (`npm run bench:intercept`, root): what transparent interception costs beyond the proxy
// itself. Two "pods" (network namespaces joined by a veth, test/helpers/netns.ts), each with `pillion iptables`
// rules, and in ONE run with interleaved rounds, the same HTTP load from the client pod to the server pod's app:
//   intercepted  http.get-style to the server pod's IP:8080; both sidecars `--interception redirect` (iptables
//                REDIRECT, SO_ORIGINAL_DST, the use_original_dst hand-offs)
//   explicit     to 127.0.0.1:16001 with Host: server; a second pair of sidecars without interception, the client's
//                dialing the server's inbound port 16006 (excluded from the server pod's rules)
//   direct       to the server pod's IP:18080 (excluded), no sidecar: the network and the app alone
// Plaintext between the sidecars (mTLS is priced by the mtls case of `npm run bench`). Prints a table and the
// ratios intercepted / explicit: throughput, the median latency each adds over direct, and p99. Flags: --quick,
// --rounds N (at most 10; 3 by default, 1 with --quick), --cpu-prof DIR (the sidecars write V8 CPU profiles there
// at exit). Also prints each path's sidecar CPU time per request (both sidecars, from /proc, closed-loop runs).
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { createPodPair, netnsUnavailable, waitForOutput, type Netns, type PodPair } from '../test/helpers/netns.js';
import { runPillion, type PillionProcess } from '../test/helpers/process.js';
import { processCpuMs } from './proc-cpu.js';
import { originalDstAvailable, originalDstProblem } from '../src/listener/original-dst.js';
import { median } from './report.js';
import type { LoadResult } from './load.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const LOADER = fileURLToPath(new URL('./intercept-load.js', import.meta.url));
const PROBE = fileURLToPath(new URL('../../test/fixtures/netns-probe.mjs', import.meta.url));
const CLIENT_UID = 1337;
const SERVER_UID = 1338;
const TARGETS = ['direct', 'explicit', 'intercepted'] as const;
type TargetName = (typeof TARGETS)[number];

const { values: flags } = parseArgs({
  options: { quick: { type: 'boolean', default: false }, rounds: { type: 'string' }, 'cpu-prof': { type: 'string' } },
});
const quick = flags.quick === true;
const rounds = flags.rounds ? Math.max(1, Math.min(10, Number(flags.rounds))) : quick ? 1 : 3;
const closedSec = quick ? 3 : 8;
const fixedSec = quick ? 3 : 8;
const CONNECTIONS = 16;
const RATE = 200;

const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable !== undefined) {
  process.stderr.write(`bench:intercept needs network namespaces and the native helper: ${unavailable}\n`);
  process.exit(2);
}

const pods: PodPair = createPodPair('pl-bn');
const dir = mkdtempSync(join(tmpdir(), 'pillion-bench-intercept-'));
const sidecars: PillionProcess[] = [];
const children: ChildProcess[] = [];

async function cleanup(): Promise<void> {
  // A profiled sidecar writes its profile only on a normal exit: SIGTERM (drain), SIGKILL as the fallback.
  const sig = profDir !== undefined ? 'SIGTERM' : 'SIGKILL';
  for (const s of sidecars) s.child.kill(sig);
  const kill = setTimeout(() => {
    for (const s of sidecars) s.child.kill('SIGKILL');
  }, 10_000);
  await Promise.all(sidecars.map((s) => s.exited));
  clearTimeout(kill);
  for (const c of children) c.kill();
  pods.delete();
  rmSync(dir, { recursive: true, force: true });
}
// SIGTERM too: otherwise the sidecars, the app and the network namespaces outlive a stopped bench.
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(sig, () => {
    cleanup().then(
      () => process.exit(code),
      () => process.exit(code),
    );
  });
}

function meshFile(name: string, serverPort: number): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${pods.podV4}, port: 8080 }]
  - name: server
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${pods.peerV4}, port: ${serverPort} }]
    policy: { retries: { attempts: 0 } }
`,
  );
  chmodSync(file, 0o644);
  return file;
}

const profDir = flags['cpu-prof'];
if (profDir !== undefined) {
  mkdirSync(profDir, { recursive: true });
  chmodSync(profDir, 0o777);
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** CPU ticks of this process's waited-for children (cutime + cstime): the load runs, spawned synchronously. */
function childTicks(): number {
  const stat = readFileSync('/proc/self/stat', 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[13]) + Number(fields[14]);
}

/** The machine's softirq ticks (all CPUs, /proc/stat): packet processing no process is charged for. */
function softirqTicks(): number {
  const cpu = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.split(/ +/);
  return Number(cpu[7]);
}

function profScript(out: string): string {
  const file = join(dir, 'node-cpu-prof.sh');
  writeFileSync(file, `#!/bin/sh\nshift\nexec ${process.execPath} --cpu-prof --cpu-prof-dir=${out} "$@"\n`);
  chmodSync(file, 0o755);
  return file;
}

function sidecar(ns: Netns, uid: number, service: string, file: string, extra: string[]): PillionProcess {
  // Node refuses --cpu-prof in NODE_OPTIONS: a script between setpriv and node adds it (its first argument, node, dropped).
  const prof = profDir === undefined ? [] : [profScript(profDir)];
  const wrapper = ['ip', 'netns', 'exec', ns.name, 'setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups', ...prof];
  const p = runPillion(['proxy', '--config', file, '--service', service, '--app-port', '8080', '--access-log', 'off', ...extra], MAIN, wrapper);
  sidecars.push(p);
  return p;
}

interface Spec {
  kind: 'closed' | 'fixed';
  address: string;
  port: number;
  host?: string;
  uid?: number;
}

const SPECS: Record<TargetName, Omit<Spec, 'kind'>> = {
  direct: { address: pods.peerV4, port: 18080, uid: CLIENT_UID },
  explicit: { address: '127.0.0.1', port: 16001, host: 'server' },
  intercepted: { address: pods.peerV4, port: 8080 },
};

/** One load run in the client pod (as `uid` when given: the client's proxy uid is never redirected). */
function load(spec: Spec): LoadResult {
  const arg = JSON.stringify({ ...spec, durationSec: spec.kind === 'closed' ? closedSec : fixedSec, connections: CONNECTIONS, rate: RATE });
  const cmd = spec.uid === undefined ? [process.execPath, LOADER, arg] : ['--reuid', String(spec.uid), '--regid', String(spec.uid), '--clear-groups', process.execPath, LOADER, arg];
  const out = spec.uid === undefined ? pods.pod.run(cmd[0]!, cmd.slice(1)) : pods.pod.run('setpriv', cmd);
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

try {
  chmodSync(dir, 0o755);
  pods.pod.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(CLIENT_UID), '--apply']);
  pods.peer.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(SERVER_UID), '--exclude-inbound-ports', '16006,18080', '--apply']);
  const app = pods.peer.spawn(process.execPath, [PROBE, 'http', 'server=8080,direct=18080']);
  app.on('error', () => {});
  children.push(app);
  await waitForOutput(app, 'ready');
  const intercepted = meshFile('intercepted', 8080);
  const explicit = meshFile('explicit', 16006);
  const redirect = ['--interception', 'redirect'];
  const ports = ['--interception', 'none', '--inbound-port', '16006', '--outbound-port', '16001', '--admin-port', '16000'];
  const pairs: Record<TargetName, PillionProcess[]> = {
    direct: [],
    intercepted: [sidecar(pods.pod, CLIENT_UID, 'client', intercepted, redirect), sidecar(pods.peer, SERVER_UID, 'server', intercepted, redirect)],
    explicit: [sidecar(pods.pod, CLIENT_UID, 'client', explicit, ports), sidecar(pods.peer, SERVER_UID, 'server', explicit, ports)],
  };
  // The profiles are named by pid (CPU.<date>.<time>.<pid>...): which is which.
  if (profDir !== undefined) for (const t of ['explicit', 'intercepted'] as const) process.stderr.write(`${t}: client pid ${pairs[t][0]!.child.pid}, server pid ${pairs[t][1]!.child.pid}\n`);
  /** CPU ms of the path's [client, server] sidecar, and the requests, over its closed-loop runs. */
  // [client, server, load generator, machine softirq]
  const cpu: Record<TargetName, { ms: number[]; requests: number }> = {
    direct: { ms: [0, 0, 0, 0], requests: 0 },
    explicit: { ms: [0, 0, 0, 0], requests: 0 },
    intercepted: { ms: [0, 0, 0, 0], requests: 0 },
  };
  const closedRun = (t: TargetName): LoadResult => {
    const before = pairs[t].map((s) => processCpuMs(s.child.pid!) ?? NaN);
    const loaderBefore = childTicks();
    const softBefore = softirqTicks();
    const res = load({ ...SPECS[t], kind: 'closed' });
    cpu[t].ms[2]! += (childTicks() - loaderBefore) * TICK_MS;
    cpu[t].ms[3]! += (softirqTicks() - softBefore) * TICK_MS;
    pairs[t].forEach((s, i) => (cpu[t].ms[i]! += (processCpuMs(s.child.pid!) ?? NaN) - before[i]!));
    cpu[t].requests += res.requests;
    return res;
  };
  await Promise.all(sidecars.map((s) => s.waitForLine((l) => l.msg === 'proxy ready', 20_000)));

  const results: Record<TargetName, { closed: LoadResult[]; fixed: LoadResult[] }> = {
    direct: { closed: [], fixed: [] },
    explicit: { closed: [], fixed: [] },
    intercepted: { closed: [], fixed: [] },
  };
  // Warm every path once (JIT, pools), unrecorded.
  for (const t of TARGETS) load({ ...SPECS[t], kind: 'fixed' });
  for (let r = 0; r < rounds; r++) {
    // Interleaved, the order rotated per round: the shared machine's noise hits every target alike.
    const order = TARGETS.map((_, i) => TARGETS[(i + r) % TARGETS.length]!);
    for (const t of order) results[t].closed.push(closedRun(t));
    for (const t of order) results[t].fixed.push(load({ ...SPECS[t], kind: 'fixed' }));
    const rps = (t: TargetName) => results[t].closed[r]!.rps;
    process.stderr.write(`round ${r + 1}/${rounds} done: req/s intercepted ${rps('intercepted').toFixed(0)}, explicit ${rps('explicit').toFixed(0)}, ratio ${(rps('intercepted') / rps('explicit')).toFixed(2)}\n`);
  }

  const row = (t: TargetName) => {
    const c = results[t].closed;
    const f = results[t].fixed;
    return {
      rps: median(c.map((x) => x.rps)),
      p50: median(f.map((x) => x.p50)),
      p99: median(f.map((x) => x.p99)),
      errors: [...c, ...f].reduce((n, x) => n + x.errors + x.non2xx, 0),
    };
  };
  const rows = Object.fromEntries(TARGETS.map((t) => [t, row(t)])) as Record<TargetName, ReturnType<typeof row>>;
  const lines = [
    `interception bench: ${rounds} round(s); closed loop ${CONNECTIONS} connections × ${closedSec} s; fixed rate ${RATE}/s × ${fixedSec} s (latency)`,
    '',
    '| path | req/s (closed loop) | p50 ms (fixed rate) | p99 ms | errors + non-2xx |',
    '|---|---|---|---|---|',
    ...TARGETS.map((t) => `| ${t} | ${rows[t].rps.toFixed(0)} | ${rows[t].p50.toFixed(3)} | ${rows[t].p99.toFixed(3)} | ${rows[t].errors} |`),
    '',
    `throughput intercepted / explicit: ${(rows.intercepted.rps / rows.explicit.rps).toFixed(2)}`,
    `p50 added over direct, intercepted / explicit: ${((rows.intercepted.p50 - rows.direct.p50) / (rows.explicit.p50 - rows.direct.p50)).toFixed(2)} (${(rows.intercepted.p50 - rows.direct.p50).toFixed(3)} ms vs ${(rows.explicit.p50 - rows.direct.p50).toFixed(3)} ms)`,
    // The p99 of a few thousand requests is one slow moment of a shared machine, often the direct path's own: a plain ratio.
    `p99 intercepted / explicit: ${(rows.intercepted.p99 / rows.explicit.p99).toFixed(2)}`,
    // Closed-loop runs only. The load generator's CPU includes the kernel work of its sends (loopback, the NAT of
    // the intercepted path); softirq is the whole machine's, so other work on it shows there too.
    ...TARGETS.map((t) => {
      const us = cpu[t].ms.map((ms) => ((ms * 1000) / Math.max(1, cpu[t].requests)).toFixed(1));
      return `CPU per request, ${t}: client sidecar ${us[0]} µs, server sidecar ${us[1]} µs, load generator ${us[2]} µs, machine softirq ${us[3]} µs (${cpu[t].requests} requests)`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await cleanup();
}
