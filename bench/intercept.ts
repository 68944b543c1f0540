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
// --rounds N (at most 10; 3 by default, 1 with --quick).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { createPodPair, netnsUnavailable, waitForOutput, type Netns, type PodPair } from '../test/helpers/netns.js';
import { runPillion, type PillionProcess } from '../test/helpers/process.js';
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

const { values: flags } = parseArgs({ options: { quick: { type: 'boolean', default: false }, rounds: { type: 'string' } } });
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
  for (const s of sidecars) s.child.kill('SIGKILL');
  await Promise.all(sidecars.map((s) => s.exited));
  for (const c of children) c.kill();
  pods.delete();
  rmSync(dir, { recursive: true, force: true });
}
process.once('SIGINT', () => {
  cleanup().then(
    () => process.exit(130),
    () => process.exit(130),
  );
});

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

function sidecar(ns: Netns, uid: number, service: string, file: string, extra: string[]): PillionProcess {
  const wrapper = ['ip', 'netns', 'exec', ns.name, 'setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
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
  sidecar(pods.peer, SERVER_UID, 'server', intercepted, redirect);
  sidecar(pods.pod, CLIENT_UID, 'client', intercepted, redirect);
  sidecar(pods.peer, SERVER_UID, 'server', explicit, ports);
  sidecar(pods.pod, CLIENT_UID, 'client', explicit, ports);
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
    for (const t of order) results[t].closed.push(load({ ...SPECS[t], kind: 'closed' }));
    for (const t of order) results[t].fixed.push(load({ ...SPECS[t], kind: 'fixed' }));
    process.stderr.write(`round ${r + 1}/${rounds} done\n`);
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
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await cleanup();
}
