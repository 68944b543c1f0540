// PROTOTYPE measurement, not part of the product's bench: CPU per small proxied HTTP/1.1 request (the
// forwarder's own utime + stime from /proc, whole process tree, over a closed-loop `wrk -c 50` run ÷ requests)
// for the three minimal forwarders here (A native llhttp + consume, B onread + wasm llhttp, C onread + JS
// parser), Pillion and nginx, all in front of one nginx backend returning a fixed 52-byte body. Every round
// runs every target once, in an order rotated per round, so each target's rounds are paired with the others'.
// (and D, a raw 1:1 byte pipe with no HTTP at all: the runtime's floor for two reads and two writes per request).
// node dist/bench/prototypes/measure.js [--rounds 8] [--seconds 5] [--connections 50] [--only A,B,C,D,pillion,nginx]
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { ChildGroup, childPids, freePorts, resolveFromHere, sleep, waitForPort } from '../../src/cli/children.js';
import { runWrk } from '../load.js';
import { startNginx, startPillion } from '../peers.js';
import { median, rangeOf } from '../report.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    only: { type: 'string', default: 'A,B,C,D,pillion,nginx' },
  },
});
const ROUNDS = Math.min(20, Math.max(1, Number(values.rounds)));
const SECONDS = Math.min(10, Math.max(1, Number(values.seconds)));
const CONNECTIONS = Math.min(500, Math.max(1, Number(values.connections)));
const ONLY = new Set(values.only.split(','));

/** Linux's USER_HZ. */
const TICK_US = 10_000;

/** utime and stime of a process and its descendants, µs. */
function treeCpu(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const out = { user: Number(f[11]) * TICK_US, sys: Number(f[12]) * TICK_US };
  for (const child of childPids(pid)) {
    try {
      const c = treeCpu(child);
      out.user += c.user;
      out.sys += c.sys;
    } catch {
      /* gone */
    }
  }
  return out;
}

interface Target {
  name: string;
  port: number;
  pid: number;
}
interface Round {
  target: string;
  round: number;
  requests: number;
  rps: number;
  userUs: number;
  sysUs: number;
  totalUs: number;
  errors: number;
  non2xx: number;
}

const FORWARDERS: ReadonlyArray<{ key: string; name: string; file: string }> = [
  { key: 'A', name: 'A native llhttp + consume', file: './fwd-native-llhttp.js' },
  { key: 'B', name: 'B onread + wasm llhttp', file: './fwd-wasm-llhttp.js' },
  { key: 'C', name: 'C onread + JS head parser', file: './fwd-js-parser.js' },
  { key: 'D', name: 'D raw pipe, no HTTP (runtime floor)', file: './fwd-raw-pipe.js' },
];

async function startBackendNginx(group: ChildGroup, dir: string): Promise<number> {
  const [port] = await freePorts(1);
  const conf = `user root;
worker_processes 1;
pid ${dir}/backend-nginx.pid;
error_log ${dir}/backend-nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/backend-body;
  proxy_temp_path ${dir}/backend-proxy;
  fastcgi_temp_path ${dir}/backend-fastcgi;
  uwsgi_temp_path ${dir}/backend-uwsgi;
  scgi_temp_path ${dir}/backend-scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:${port};
    location / { default_type application/octet-stream; return 200 '{"ok":true,"service":"bench-backend","size":"small"}'; }
  }
}
`;
  const confPath = join(dir, 'backend-nginx.conf');
  writeFileSync(confPath, conf);
  const child = group.spawn({
    name: 'backend-nginx',
    command: 'nginx',
    args: ['-p', dir, '-c', confPath, '-e', `${dir}/backend-nginx-error.log`, '-g', 'daemon off;'],
  });
  await waitForPort(port!, 10_000, child);
  return port!;
}

async function main(): Promise<void> {
  const group = new ChildGroup();
  group.installExitHandlers();
  try {
    const dir = group.tempDir('pillion-proto-');
    const backend = await startBackendNginx(group, dir);
    const targets: Target[] = [];
    for (const f of FORWARDERS) {
      if (!ONLY.has(f.key)) continue;
      const child = group.spawn({
        name: f.key,
        command: process.execPath,
        args: [...NODE_FLAGS, resolveFromHere(import.meta.url, f.file), '--port', '0', '--upstream', String(backend)],
      });
      try {
        const line = await child.waitForJson({ msg: 'listening' }, 10_000);
        targets.push({ name: f.name, port: line.port as number, pid: child.pid! });
      } catch (err) {
        console.log(`${f.name}: SKIPPED (${String(err).split('\n')[0]})`);
      }
    }
    const ports = { http: backend, h2: backend, tcp: backend };
    if (ONLY.has('pillion')) {
      const p = await startPillion(group, dir, ports, { name: 'pillion', accessLog: 'off' });
      targets.push({ name: 'Pillion (dist/src/cli/main.js)', port: p.httpPort!, pid: p.pid! });
    }
    if (ONLY.has('nginx')) {
      mkdirSync(join(dir, 'nginx-proxy'), { recursive: true });
      const n = await startNginx(group, join(dir, 'nginx-proxy'), ports);
      targets.push({ name: 'nginx (proxy_pass, keepalive 64)', port: n.httpPort!, pid: n.pid! });
    }
    const load = (port: number, durationSec: number) =>
      runWrk({ port, host: 'backend:8080', path: '/small', connections: CONNECTIONS, durationSec });
    for (const t of targets) {
      const w = await load(t.port, 2); // warm-up: JIT, upstream pools
      if (w.requests === 0 || w.non2xx > 0) throw new Error(`${t.name}: warm-up got ${w.requests} requests, ${w.non2xx} non-2xx`);
    }
    const rounds: Round[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < targets.length; k++) {
        const t = targets[(r + k) % targets.length]!;
        const before = treeCpu(t.pid);
        const w = await load(t.port, SECONDS);
        await sleep(100); // the last responses' bookkeeping
        const after = treeCpu(t.pid);
        const n = Math.max(1, w.requests);
        const row: Round = {
          target: t.name,
          round: r,
          requests: w.requests,
          rps: w.rps,
          userUs: (after.user - before.user) / n,
          sysUs: (after.sys - before.sys) / n,
          totalUs: (after.user - before.user + after.sys - before.sys) / n,
          errors: w.errors,
          non2xx: w.non2xx,
        };
        rounds.push(row);
        console.log(
          `round ${r + 1}/${ROUNDS} ${t.name}: ${row.totalUs.toFixed(2)} µs/request (user ${row.userUs.toFixed(2)}, sys ${row.sysUs.toFixed(2)}), ${Math.round(row.rps)} req/s${row.errors + row.non2xx > 0 ? `, ${row.errors} errors, ${row.non2xx} non-2xx` : ''}`,
        );
      }
    }
    console.log(report(targets, rounds));
    mkdirSync('.bench-out', { recursive: true });
    const out = join('.bench-out', `prototypes-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(out, JSON.stringify({ rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, results: rounds }, null, 1));
    console.log(`raw rounds: ${out}`);
  } finally {
    await group.close();
  }
}

function report(targets: readonly Target[], rounds: readonly Round[]): string {
  const of = (name: string, key: keyof Round): number[] => rounds.filter((x) => x.target === name).map((x) => x[key] as number);
  const lines = [
    `${ROUNDS} rounds × ${SECONDS} s, wrk -t1 -c${CONNECTIONS}; median (min – max) per target`,
    '',
    '| target | CPU µs/request | user µs | system µs | req/s |',
    '|---|---|---|---|---|',
  ];
  for (const t of targets) {
    const cell = (key: keyof Round, d = 2) => `${median(of(t.name, key)).toFixed(d)} (${rangeOf(of(t.name, key), d)})`;
    lines.push(`| ${t.name} | ${cell('totalUs')} | ${cell('userUs')} | ${cell('sysUs')} | ${cell('rps', 0)} |`);
  }
  const base = targets[0];
  if (base !== undefined) {
    lines.push('', `Paired per round, minus ${base.name} (median, min – max):`, '', '| target | Δ CPU µs/request | Δ user µs | Δ system µs |', '|---|---|---|---|');
    for (const t of targets.slice(1)) {
      const diff = (key: keyof Round) => {
        const a = of(base.name, key);
        const b = of(t.name, key);
        return b.map((v, i) => v - a[i]!);
      };
      const cell = (key: keyof Round) => `${median(diff(key)).toFixed(2)} (${rangeOf(diff(key))})`;
      lines.push(`| ${t.name} | ${cell('totalUs')} | ${cell('userUs')} | ${cell('sysUs')} |`);
    }
  }
  return lines.join('\n');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
