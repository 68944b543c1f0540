// `pillion demo`: a whole mesh on this machine, as thin orchestration. A mesh config in a temp dir; services
// frontend (calls backend and inventory through its sidecar), backend (3 instances: steady, flaky with 30 %
// 503s, slow with +150 ms) and inventory (HTTP/2); every instance is an examples/demo-app.js process with its
// own `pillion proxy` sidecar process, each supervised (an exit is reported and restarted: supervisor.ts); a
// bounded-rate traffic generator (demo-traffic.ts) sends to frontend's sidecar; the screen (demo-view.ts) is
// redrawn every second, or printed as plain lines when stdout is not a terminal.
import { loadOrCreateTokenKey, mintToken } from '../../xds/ca/token.js';
import { NODE_FLAGS } from './node-flags.js';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ChildGroup, freePorts, resolveFromHere, waitForHttp } from './children.js';
import { TrafficGenerator } from './demo-traffic.js';
import { EventFeed, FEED_EVENTS_SHOWN, instanceTable, MeshView, type Instance } from './demo-view.js';
import { describeEvent, Supervisor } from './supervisor.js';

export interface DemoOptions {
  /** Stop by itself after this many seconds (default: run until SIGINT/SIGTERM, at most 24 h). */
  durationSec?: number;
  /** Use ports basePort, basePort+1, ... (each checked free) instead of ports the OS picks. */
  basePort?: number;
  /** Requests per second of the traffic generator (default 50, at most 500). */
  rate?: number;
  /** Copy every child's output to ours (debugging). */
  verbose?: boolean;
}

/** Flags of `pillion demo`: --duration SEC, --base-port N, --rate N, --verbose. For the CLI's dispatcher. */
export function parseDemoArgs(argv: readonly string[]): DemoOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      duration: { type: 'string' },
      'base-port': { type: 'string' },
      rate: { type: 'string' },
      verbose: { type: 'boolean', default: false },
    },
    allowPositionals: true,
  });
  const opts: DemoOptions = {};
  if (values.duration !== undefined) opts.durationSec = Number(values.duration);
  if (values['base-port'] !== undefined) opts.basePort = Number(values['base-port']);
  if (values.rate !== undefined) opts.rate = Number(values.rate);
  if (values.verbose) opts.verbose = true;
  return opts;
}

const SERVICE_PORT = 8080;
const MAX_DURATION_SEC = 24 * 3600;

export async function runDemo(opts: DemoOptions = {}): Promise<void> {
  const rate = Math.min(500, Math.max(1, opts.rate ?? 50));
  const durationSec = Math.min(MAX_DURATION_SEC, opts.durationSec ?? MAX_DURATION_SEC);
  const tty = process.stdout.isTTY === true;
  const out = (s: string): void => void process.stdout.write(`${s}\n`);

  const group = new ChildGroup();
  let stopRequested: (why: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  group.installExitHandlers((sig) => stopRequested(sig));
  // What happened to the children (exits with their stderr, restarts) and to the config: printed at once as plain
  // lines off a terminal, kept for the screen on one (redrawn at once).
  const feed = new EventFeed(FEED_EVENTS_SHOWN);
  let redrawNow: () => void = () => {};
  const report = (lines: readonly string[]): void => {
    if (tty) {
      feed.push(lines);
      redrawNow();
    } else for (const l of lines) out(l);
  };
  const supervisor = new Supervisor(group, (e) => report(describeEvent(e)));

  try {
    const instances: Instance[] = [
      { service: 'frontend', name: 'frontend-1', note: 'calls backend + inventory', appArgs: [], h2: false },
      { service: 'backend', name: 'backend-1', note: 'steady', appArgs: [], h2: false },
      { service: 'backend', name: 'backend-2', note: 'flaky: 30% 503', appArgs: ['--fail-rate', '0.3'], h2: false },
      { service: 'backend', name: 'backend-3', note: 'slow: +150 ms', appArgs: ['--delay-ms', '150'], h2: false },
      { service: 'inventory', name: 'inventory-1', note: 'HTTP/2', appArgs: ['--h2'], h2: true },
    ].map((i) => ({ ...i, appPort: 0, inboundPort: 0, outboundPort: 0, adminPort: 0 }) as Instance);

    const ports = await pickPorts(instances.length * 4 + 3, opts.basePort);
    const [xdsPort, controlAdminPort, secureXdsPort] = ports.splice(instances.length * 4, 3) as [number, number, number];
    instances.forEach((inst, i) => {
      [inst.appPort, inst.inboundPort, inst.outboundPort, inst.adminPort] = ports.slice(i * 4, i * 4 + 4) as [
        number,
        number,
        number,
        number,
      ];
    });
    const frontend = instances[0] as Instance;
    const backends = instances.filter((i) => i.service === 'backend');

    const dir = group.tempDir('pillion-demo-');
    const meshPath = join(dir, 'mesh.yaml');
    writeFileSync(meshPath, meshConfig(instances));

    const appJs = resolveFromHere(import.meta.url, '../../examples/demo-app.js');
    const mainJs = resolveFromHere(import.meta.url, './main.js');
    out(`pillion demo: mesh config ${meshPath}`);

    // The control server compiles the mesh file for every sidecar and pushes edits to it live; it is also the mesh
    // CA: each sidecar proves its identity with a token and gets a short-lived certificate over xDS's TLS port.
    // Restarted, it keeps its ports and CA directory, and the sidecars reconnect to it.
    const caDir = join(dir, 'ca');
    const control = supervisor.spawn({
      name: 'control',
      command: process.execPath,
      args: [
        ...NODE_FLAGS, mainJs, 'control', '--config', meshPath, '--port', String(xdsPort), '--admin-port', String(controlAdminPort),
        '--ca-dir', caDir, '--secure-port', String(secureXdsPort), '--log-level', 'warn',
      ],
      echo: opts.verbose === true,
    });
    await waitForHttp(controlAdminPort, '/healthz', 20_000, { child: control.current });
    const tokenKey = loadOrCreateTokenKey(caDir);

    // Apps first, then sidecars (a sidecar's inbound needs its app; frontend's outbound needs the peers).
    for (const inst of instances) {
      const args = [appJs, '--name', inst.name, '--port', String(inst.appPort), ...inst.appArgs];
      if (inst.service === 'frontend') {
        args.push('--via', String(inst.outboundPort), '--call', `backend:${SERVICE_PORT}/work`, '--call', `inventory:${SERVICE_PORT}/items`);
      }
      inst.app = supervisor.spawn({ name: inst.name, command: process.execPath, args, echo: opts.verbose === true });
    }
    await Promise.all(instances.map((i) => i.app!.current.waitForJson({ msg: 'demo-app listening' }, 10_000)));

    for (const inst of instances) {
      const tokenFile = join(dir, `${inst.name}.token`);
      writeFileSync(tokenFile, mintToken(tokenKey, { namespace: 'default', serviceAccount: inst.service }, 24 * 3600_000, Date.now()), { mode: 0o600 });
      inst.sidecar = supervisor.spawn({
        name: `${inst.name}-sidecar`,
        command: process.execPath,
        args: [
          ...NODE_FLAGS,
          mainJs,
          'proxy',
          '--xds',
          `127.0.0.1:${secureXdsPort}`,
          '--xds-ca',
          join(caDir, 'root-cert.pem'),
          '--token',
          tokenFile,
          '--service',
          inst.service,
          '--node-id',
          inst.name,
          '--namespace',
          'default',
          '--app-port',
          String(inst.appPort),
          '--admin-port',
          String(inst.adminPort),
          '--inbound-port',
          String(inst.inboundPort),
          '--outbound-port',
          String(inst.outboundPort),
          '--log-level',
          'warn',
          '--access-log',
          'off',
        ],
        echo: opts.verbose === true,
      });
    }
    await Promise.all(instances.map((i) => waitForHttp(i.adminPort, '/ready', 20_000, { child: i.sidecar!.current })));

    const header = [
      `traffic: ${rate} req/s to frontend via its sidecar's inbound port ${frontend.inboundPort}; ${opts.durationSec ? `stops after ${durationSec} s` : 'Ctrl-C stops'}`,
      `try: curl -s -H 'Host: frontend:${SERVICE_PORT}' http://127.0.0.1:${frontend.inboundPort}/   ·   curl -s http://127.0.0.1:${frontend.adminPort}/clusters`,
      `ctl: npx pillion ctl clusters --admin 127.0.0.1:${frontend.adminPort}   ·   npx pillion ctl proxies --control 127.0.0.1:${controlAdminPort}`,
      `     (any sidecar's admin port from the table; or once: export PILLION_ADMIN=127.0.0.1:${frontend.adminPort} PILLION_CONTROL=127.0.0.1:${controlAdminPort})`,
      `live config: edit ${meshPath} (e.g. give backend-2's endpoint weight: 5); the control server (xDS :${xdsPort}, admin :${controlAdminPort}/proxies) pushes it to every sidecar`,
      `kill one: kill -9 <pid> of an app or sidecar; the demo says why it died and restarts it`,
      '',
    ].join('\n');
    const table = (): string => instanceTable(instances, control, xdsPort, controlAdminPort);
    // On a terminal the header is part of every redraw (the screen is cleared once); otherwise printed once.
    if (tty) process.stdout.write('\x1b[2J');
    else out(`\n${table()}\n\n${header}`);

    const traffic = new TrafficGenerator(frontend.inboundPort, `frontend:${SERVICE_PORT}`, rate);
    const supervised = [control, ...instances.flatMap((i) => [i.app!, i.sidecar!])];
    const view = new MeshView(instances, frontend, backends, controlAdminPort, supervised, report);
    traffic.start();
    const startedAt = Date.now();
    const endTimer = setTimeout(() => stopRequested('duration'), durationSec * 1000);
    let drawing = false;
    let drawAgain = false;
    let lastText = '';
    // Home, then each line cleared to its end, then the rest of the screen: no flicker.
    const paint = (text: string): void =>
      void process.stdout.write(`\x1b[H${`${table()}\n\n${header}\n${text}${feed.render()}`.replace(/\n/g, '\x1b[K\n')}\x1b[K\n\x1b[J`);
    const draw = (): void => {
      if (drawing) {
        drawAgain = true;
        return;
      }
      drawing = true;
      view
        .render(traffic, (Date.now() - startedAt) / 1000, tty)
        .then(
          (text) => {
            lastText = text;
            if (tty) paint(text);
            else out(text);
          },
          // A summary that cannot be read this second is skipped; the next one tries again.
          (err: unknown) => out(`(summary unavailable: ${err instanceof Error ? err.message : String(err)})`),
        )
        .finally(() => {
          drawing = false;
          if (drawAgain) {
            drawAgain = false;
            if (tty) paint(lastText);
          }
        });
    };
    // An event repaints the screen at once with the last summary (a new one comes with the next tick).
    redrawNow = () => {
      if (drawing) drawAgain = true;
      else paint(lastText);
    };
    const ticker = setInterval(draw, 1000);

    const why = await stopped;
    redrawNow = () => {};
    supervisor.stop();
    clearInterval(ticker);
    clearTimeout(endTimer);
    await traffic.stop();
    const final = await view.render(traffic, (Date.now() - startedAt) / 1000, false);
    out('');
    out(`stopping (${why}); final: ${final}`);
  } finally {
    supervisor.stop();
    await group.close(5000);
  }
}

async function pickPorts(n: number, basePort: number | undefined): Promise<number[]> {
  if (basePort === undefined) return freePorts(n);
  const ports: number[] = [];
  for (let p = basePort; ports.length < n && p < 65536; p++) if (await isFree(p)) ports.push(p);
  if (ports.length < n) throw new Error(`not enough free ports from ${basePort}`);
  return ports;
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

function meshConfig(instances: readonly Instance[]): string {
  const eps = (service: string): string =>
    instances
      .filter((i) => i.service === service)
      .map((i) => `      - { address: 127.0.0.1, port: ${i.inboundPort}, weight: 1 }`)
      .join('\n');
  // Sidecar to sidecar is mTLS STRICT (the default) with certificates from the control server's CA. The frontend is
  // PERMISSIVE: the demo's traffic generator stands outside the mesh and calls it in plaintext.
  return `trustDomain: cluster.local
services:
  - name: frontend
    namespace: default
    ports: [{ port: ${SERVICE_PORT}, protocol: http }]
    endpoints:
${eps('frontend')}
    policy:
      connectTimeout: 1s
      timeout: 5s
      mtls: PERMISSIVE
  - name: backend
    namespace: default
    ports: [{ port: ${SERVICE_PORT}, protocol: http }]
    endpoints:
${eps('backend')}
    policy:
      loadBalancer: { policy: least_request, choiceCount: 2 }
      connectTimeout: 1s
      timeout: 3s
      retries: { attempts: 2, perTryTimeout: 1s, retryOn: [5xx, reset, connect-failure], backoff: { base: 25ms, max: 250ms }, budget: { percent: 50, minConcurrency: 10 } }
      outlierDetection: { consecutive5xx: 3, interval: 5s, baseEjectionTime: 15s, maxEjectionPercent: 50 }
  - name: inventory
    namespace: default
    ports: [{ port: ${SERVICE_PORT}, protocol: http2 }]
    endpoints:
${eps('inventory')}
    policy:
      connectTimeout: 1s
      timeout: 3s
    authorization:
      allow: [{ name: frontend-only, principals: ["spiffe://cluster.local/ns/default/sa/frontend"] }]
`;
}

/** Entry for `pillion demo [--duration SEC] [--base-port N] [--rate N] [--verbose]`. */
export function runDemoCommand(argv: readonly string[]): Promise<void> {
  return runDemo(parseDemoArgs(argv));
}
