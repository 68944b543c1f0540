// `pillion demo`: a whole mesh on this machine, as thin orchestration. A mesh config in a temp dir; services
// frontend (calls backend and inventory through its sidecar), backend (3 instances: steady, flaky with 30 %
// 503s, slow with +150 ms) and inventory (HTTP/2); every instance is an examples/demo-app.js process with its
// own `pillion proxy` sidecar process; a bounded-rate traffic generator sends to frontend's sidecar; a summary
// of what the mesh is doing is redrawn every second (plain lines when stdout is not a terminal), with the
// retries, ejections and bulkhead overflows of every sidecar since the last line.
import { loadOrCreateTokenKey, mintToken } from '../../xds/ca/token.js';
import { NODE_FLAGS } from './node-flags.js';
import { writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ChildGroup, freePorts, httpGet, resolveFromHere, waitForHttp } from './children.js';
import { configProblems, currentNacks, oneLine, parseProxiesDocument, type ProxiesDocument } from './control-status.js';
import { CounterWindow } from './counter-window.js';
import { describeEvent, Supervisor, type Supervised } from './supervisor.js';

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

interface Instance {
  service: 'frontend' | 'backend' | 'inventory';
  name: string;
  note: string;
  appArgs: string[];
  h2: boolean;
  appPort: number;
  inboundPort: number;
  outboundPort: number;
  adminPort: number;
  app?: Supervised;
  sidecar?: Supervised;
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

/** Events kept for the terminal screen (each with its stderr tail); off a terminal every event is printed. */
const FEED_EVENTS_SHOWN = 6;

/** The last few events, each a block of lines, for the screen. */
class EventFeed {
  private readonly events: Array<readonly string[]> = [];
  dropped = 0;

  constructor(private readonly keep: number) {}

  push(lines: readonly string[]): void {
    this.events.push(lines);
    if (this.events.length > this.keep) {
      this.events.shift();
      this.dropped++;
    }
  }

  render(): string {
    if (this.events.length === 0) return '';
    const more = this.dropped > 0 ? ` (${this.dropped} earlier not shown)` : '';
    return `\n\nevents${more}:\n${this.events.map((e) => e.join('\n')).join('\n')}`;
  }
}

/** Each process of the mesh: ports, pid (or why it has none) and restarts. */
function instanceTable(instances: readonly Instance[], control: Supervised, xdsPort: number, controlAdminPort: number): string {
  const pid = (s: Supervised | undefined): string => (s === undefined ? '-' : s.running ? String(s.current.pid ?? '?') : s.gaveUp ? 'gave up' : 'down');
  const rows = instances.map(
    (i) =>
      `${i.name.padEnd(13)} ${String(i.appPort).padEnd(6)} ${String(i.inboundPort).padEnd(7)} ${String(i.outboundPort).padEnd(8)} ${String(i.adminPort).padEnd(6)} ${pid(i.app).padEnd(8)} ${pid(i.sidecar).padEnd(8)} ${`${i.app?.restarts ?? 0}/${i.sidecar?.restarts ?? 0}`.padEnd(9)} ${i.note}`,
  );
  return [
    'instance      app    inbound outbound admin  app pid  sidecar  restarts  note',
    ...rows,
    `${`control       xDS :${xdsPort}, admin :${controlAdminPort}`.padEnd(44)} ${pid(control).padEnd(8)} ${'-'.padEnd(8)} ${String(control.restarts).padEnd(9)} xDS server and mesh CA`,
  ].join('\n');
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
      retries: { attempts: 2, perTryTimeout: 1s, retryOn: [5xx, reset, connect-failure], backoff: { base: 25ms, max: 250ms } }
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

/** Sends GETs at a fixed rate (open loop, bounded in-flight) and counts outcomes per second. */
class TrafficGenerator {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly maxInFlight = 256;
  total = { sent: 0, ok: 0, failed: 0, errors: 0, dropped: 0 };
  /** Completed-request counts by second, for the last-second rate. */
  private window: Array<{ at: number; ok: number; failed: number }> = [];

  constructor(
    private readonly port: number,
    private readonly host: string,
    private readonly rate: number,
  ) {}

  start(): void {
    const started = performance.now();
    let sent = 0;
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * this.rate);
      while (sent < due) {
        sent++;
        if (this.inFlight >= this.maxInFlight) this.total.dropped++;
        else this.fire();
      }
    }, 5);
  }

  private fire(): void {
    this.inFlight++;
    this.total.sent++;
    const req = request({ host: '127.0.0.1', port: this.port, path: '/', agent: this.agent, headers: { host: this.host } }, (res) => {
      res.resume();
      res.on('end', () => this.done((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300 ? 'ok' : 'failed'));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => this.done('error'));
    req.end();
  }

  private done(outcome: 'ok' | 'failed' | 'error'): void {
    this.inFlight--;
    if (outcome === 'ok') this.total.ok++;
    else if (outcome === 'failed') this.total.failed++;
    else this.total.errors++;
    const now = Math.floor(Date.now() / 1000);
    let last = this.window[this.window.length - 1];
    if (!last || last.at !== now) {
      last = { at: now, ok: 0, failed: 0 };
      this.window.push(last);
      if (this.window.length > 10) this.window.shift();
    }
    if (outcome === 'ok') last.ok++;
    else last.failed++;
  }

  /** Completions per second and success share over the last `seconds` full seconds. */
  recent(seconds: number): { rps: number; success: number } {
    const now = Math.floor(Date.now() / 1000);
    const slots = this.window.filter((w) => w.at < now && w.at >= now - seconds);
    const ok = slots.reduce((a, w) => a + w.ok, 0);
    const all = slots.reduce((a, w) => a + w.ok + w.failed, 0);
    return { rps: all / Math.max(1, seconds), success: all > 0 ? ok / all : NaN };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const deadline = Date.now() + 3000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    this.agent.destroy();
  }
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition → samples (comments skipped). */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[lm[1] as string] = (lm[2] as string).replace(/\\(.)/g, '$1');
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** A quantile from cumulative histogram buckets ({le, count}), interpolating inside the bucket. */
export function histogramQuantile(q: number, buckets: ReadonlyArray<{ le: number; count: number }>): number {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted[sorted.length - 1]?.count ?? 0;
  if (total <= 0) return NaN;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return prevLe;
      const inBucket = b.count - prevCount;
      return inBucket > 0 ? prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket : b.le;
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return prevLe;
}

/** Traffic shares, success rates and latency are over this window, so a change shows within seconds. */
const WINDOW_MS = 3_000;
/** The p99 needs more samples than a share: a longer window. */
const LATENCY_WINDOW_MS = 5_000;

/** Reads the sidecars' admin endpoints and the control server's /proxies, and renders the summary. */
class MeshView {
  /** Frontend-inbound histogram buckets (by `le`), for a p99 over the last few seconds. */
  private readonly latency = new CounterWindow(LATENCY_WINDOW_MS);
  /** Frontend sidecar's attempts per backend endpoint (`EP total`, `EP failed`), for shares over the window. */
  private readonly attempts = new CounterWindow(WINDOW_MS);
  private readonly endpointNames = new Map<string, string>();
  /** Each sidecar's last scraped resilience counters: a scrape that fails keeps them, so no delta goes negative. */
  private readonly lastCounters = new Map<string, ResilienceCounters>();
  /** Each sidecar's counters as it last reported them (lastCounters adds what restarted processes counted before). */
  private readonly rawCounters = new Map<string, ResilienceCounters>();
  /** The mesh-wide totals at the previous render, for per-interval deltas. */
  private previousTotals: ResilienceCounters | undefined;
  private readonly config = new ConfigWatch();

  constructor(
    private readonly instances: readonly Instance[],
    private readonly frontend: Instance,
    private readonly backends: readonly Instance[],
    private readonly controlAdminPort: number,
    private readonly supervised: readonly Supervised[],
    private readonly report: (lines: readonly string[]) => void,
  ) {
    for (const b of backends) this.endpointNames.set(`127.0.0.1:${b.inboundPort}`, `${b.name} (${b.note})`);
  }

  private async scrape(port: number): Promise<Sample[]> {
    try {
      const r = await httpGet(port, '/metrics', 800);
      return r.status === 200 ? parsePrometheus(r.body) : [];
    } catch {
      return [];
    }
  }

  /** The control server's /proxies, or undefined while it does not answer (restarting). */
  private async controlStatus(): Promise<ProxiesDocument | undefined> {
    try {
      const r = await httpGet(this.controlAdminPort, '/proxies', 800);
      return r.status === 200 ? parseProxiesDocument(r.body) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Mesh-wide totals from every sidecar's samples (frontend first, then the others in instance order). */
  private resilienceTotals(perSidecar: readonly Sample[][]): ResilienceCounters {
    const order = [this.frontend, ...this.instances.filter((i) => i !== this.frontend)];
    const sum: ResilienceCounters = { retries: 0, ejections: 0, overflow: 0, mtls: 0, denied: 0 };
    perSidecar.forEach((samples, i) => {
      const name = order[i]?.name ?? String(i);
      const last = this.lastCounters.get(name);
      let c = samples.length > 0 ? resilienceCounters(samples) : last;
      if (c === undefined) return;
      // A restarted sidecar counts from zero again: carry what the one before it counted.
      if (last !== undefined && c !== last) c = carryOverReset(last, this.rawCounters.get(name), c, (raw) => this.rawCounters.set(name, raw));
      else if (c !== last) this.rawCounters.set(name, c);
      this.lastCounters.set(name, c);
      sum.retries += c.retries;
      sum.ejections += c.ejections;
      sum.overflow += c.overflow;
      sum.mtls += c.mtls;
      sum.denied += c.denied;
    });
    return sum;
  }

  async render(traffic: TrafficGenerator, elapsedSec: number, tty: boolean): Promise<string> {
    const now = Date.now();
    const [status, frontendSamples, ...others] = await Promise.all([
      this.controlStatus(),
      this.scrape(this.frontend.adminPort),
      ...this.instances.filter((i) => i !== this.frontend).map((i) => this.scrape(i.adminPort)),
    ]);
    const fe = frontendSamples ?? [];
    const totals = this.resilienceTotals([fe, ...others]);
    const before = this.previousTotals ?? { retries: 0, ejections: 0, overflow: 0, mtls: 0, denied: 0 };
    this.previousTotals = totals;
    const delta = (k: keyof ResilienceCounters): number => Math.max(0, totals[k] - before[k]);
    let clusters: unknown;
    try {
      const r = await httpGet(this.frontend.adminPort, '/clusters?format=pillion', 800);
      clusters = r.status === 200 ? JSON.parse(r.body) : undefined;
    } catch {
      clusters = undefined;
    }
    const config = this.config.update(status, now);
    if (config.events.length > 0) this.report(config.events);

    // p99 of requests entering the mesh (frontend sidecar, inbound), over the last ~5 s.
    const buckets = new Map<string, number>();
    const attempts = new Map<string, number>();
    for (const s of fe) {
      if (s.name === 'pillion_downstream_request_duration_seconds_bucket' && s.labels.direction === 'inbound') {
        const le = s.labels.le ?? '+Inf';
        buckets.set(le, (buckets.get(le) ?? 0) + s.value);
      } else if (s.name === 'pillion_upstream_requests_total' && (s.labels.cluster ?? '').startsWith('backend.')) {
        // Backend traffic as frontend's sidecar sent it: attempts per endpoint, and their 5xx.
        const ep = s.labels.endpoint ?? '?';
        attempts.set(`${ep} total`, (attempts.get(`${ep} total`) ?? 0) + s.value);
        if (s.labels.code_class === '5xx' || s.labels.code_class === 'error') attempts.set(`${ep} failed`, (attempts.get(`${ep} failed`) ?? 0) + s.value);
      }
    }
    this.latency.push(now, buckets);
    this.attempts.push(now, attempts);
    const recentBuckets = [...this.latency.deltas()].map(([le, count]) => ({ le: le === '+Inf' ? Infinity : Number(le), count }));
    const p99 = histogramQuantile(0.99, recentBuckets);

    const recentAttempts = this.attempts.deltas();
    const perEndpoint = new Map<string, { total: number; failed: number }>();
    for (const [key, n] of recentAttempts) {
      const [ep, what] = key.split(' ') as [string, 'total' | 'failed'];
      const e = perEndpoint.get(ep) ?? { total: 0, failed: 0 };
      e[what] += n;
      perEndpoint.set(ep, e);
    }
    const backendTotal = [...perEndpoint.values()].reduce((a, e) => a + e.total, 0);

    // Local replies by reason, over every sidecar.
    const reasons = new Map<string, number>();
    for (const s of [...fe, ...others.flat()]) {
      if (s.name === 'pillion_local_replies_total' && s.value > 0) {
        const r = s.labels.reason ?? '?';
        reasons.set(r, (reasons.get(r) ?? 0) + s.value);
      }
    }
    const ejected = ejectedEndpoints(clusters);

    const recent = traffic.recent(WINDOW_MS / 1000);
    const t = traffic.total;
    const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '–');
    const ms = (x: number): string => (Number.isFinite(x) ? `${(x * 1000).toFixed(0)} ms` : '–');
    const reasonText = [...reasons].map(([r, n]) => `${r}=${n}`).join(' ') || 'none';
    const share = (ep: string): string => pct(backendTotal > 0 ? (perEndpoint.get(ep)?.total ?? 0) / backendTotal : NaN);
    const resilience = (['retries', 'ejections', 'overflow', 'mtls', 'denied'] as const).map((k) => `${k}=${totals[k]}(+${delta(k)})`).join(' ');
    const restarts = this.supervised.reduce((a, s) => a + s.restarts, 0);
    const down = this.supervised.filter((s) => !s.running).map((s) => s.name);
    const secs = `${WINDOW_MS / 1000} s`;

    if (!tty) {
      const eps = this.backends.map((b) => `${b.name}=${share(`127.0.0.1:${b.inboundPort}`)}`).join(' ');
      return `t=${elapsedSec.toFixed(0)}s rps=${recent.rps.toFixed(1)} success=${pct(recent.success)} total=${t.sent} ok=${t.ok} failed=${t.failed + t.errors} p99=${ms(p99)} backend[${eps}] ${resilience} ejected=[${ejected.join(',')}] local_replies[${reasonText}] restarts=${restarts} down=[${down.join(',')}] config=${config.summary}`;
    }
    const lines: string[] = [];
    lines.push(`Pillion demo mesh — ${elapsedSec.toFixed(0)} s   (Ctrl-C stops)`);
    lines.push('');
    lines.push(`traffic      ${recent.rps.toFixed(1)} req/s, success ${pct(recent.success)} (last ${secs})`);
    lines.push(`total        ${t.sent} sent, ${t.ok} ok, ${t.failed} failed, ${t.errors} errors${t.dropped ? `, ${t.dropped} not sent (too many in flight)` : ''}; success ${pct(t.ok / Math.max(1, t.ok + t.failed + t.errors))}`);
    lines.push(`p99          ${ms(p99)} (frontend sidecar, inbound, last ${LATENCY_WINDOW_MS / 1000} s)`);
    lines.push(`processes    ${restarts} restart${restarts === 1 ? '' : 's'}${down.length > 0 ? `; down now: ${down.join(', ')}` : ''}`);
    lines.push(`config       ${config.screen.join('\n             ')}`);
    lines.push('');
    lines.push(`backend endpoints as frontend's sidecar sees them (last ${secs}):`);
    for (const b of this.backends) {
      const ep = `127.0.0.1:${b.inboundPort}`;
      const e = perEndpoint.get(ep);
      const state = ejected.includes(ep) ? 'EJECTED' : 'healthy';
      const ok = e && e.total > 0 ? pct((e.total - e.failed) / e.total) : '–';
      lines.push(`  ${b.name.padEnd(11)} ${b.note.padEnd(16)} share ${share(ep).padStart(6)}   attempts ${String(e?.total ?? 0).padStart(5)}   success ${ok.padStart(6)}   ${state}`);
    }
    for (const [ep, e] of perEndpoint) {
      if (!this.endpointNames.has(ep)) lines.push(`  ${ep.padEnd(28)} attempts ${e.total}`);
    }
    lines.push('');
    lines.push(
      `resilience   retries ${totals.retries} (+${delta('retries')})   ejections ${totals.ejections} (+${delta('ejections')})   overflow ${totals.overflow} (+${delta('overflow')})   (all sidecars; + in the last second)`,
      `zero trust   mTLS connections ${totals.mtls} (+${delta('mtls')})   denied by authorization ${totals.denied} (+${delta('denied')})`,
    );
    lines.push(`local replies (all sidecars): ${reasonText}`);
    return lines.join('\n');
  }
}

/** Problems shown per config error, and the longest line of one. */
const CONFIG_PROBLEMS_SHOWN = 3;
const CONFIG_LINE_CHARS = 160;

/**
 * The mesh file's state and the proxies' current NACKs, from /proxies: lines for the screen, a word for the
 * plain summary, and event lines for what changed since the last look (a new error, a fix, a new NACK).
 */
class ConfigWatch {
  private lastError = '';
  private readonly seenNacks = new Set<string>();
  /** Bounds `seenNacks` (one key per rejected version per proxy and type). */
  private static readonly MAX_SEEN = 1024;

  update(doc: ProxiesDocument | undefined, now: number): { screen: string[]; summary: string; events: string[] } {
    if (doc === undefined) return { screen: ['control server not answering'], summary: 'unknown', events: [] };
    const time = `[${new Date(now).toISOString().slice(11, 19)}]`;
    const events: string[] = [];
    const problems = configProblems(doc).map((p) => oneLine(p, CONFIG_LINE_CHARS));
    const shown = problems.slice(0, CONFIG_PROBLEMS_SHOWN);
    if (problems.length > shown.length) shown.push(`(${problems.length - shown.length} more: npx pillion ctl proxies)`);
    const errorKey = problems.join('\n');
    if (errorKey !== this.lastError) {
      if (errorKey !== '') events.push(`${time} mesh config rejected by the control server (the last good config keeps serving):`, ...shown.map((p) => `    | ${p}`));
      else if (this.lastError !== '') events.push(`${time} mesh config valid again${doc.configVersion ? ` (version ${doc.configVersion})` : ''}; pushed to the sidecars`);
      this.lastError = errorKey;
    }
    const nacks = currentNacks(doc);
    for (const n of nacks) {
      const key = `${n.nodeId} ${n.type} ${n.version}`;
      if (this.seenNacks.has(key)) continue;
      if (this.seenNacks.size >= ConfigWatch.MAX_SEEN) this.seenNacks.clear();
      this.seenNacks.add(key);
      events.push(`${time} ${n.nodeId} rejected (NACK) ${n.type} version ${n.version}: ${oneLine(n.error, CONFIG_LINE_CHARS)}`);
    }
    const screen: string[] = [];
    if (problems.length > 0) screen.push('INVALID mesh file, rejected by the control server (the last good config keeps serving):', ...shown.map((p) => `  ${p}`));
    else screen.push(`valid${doc.configVersion ? `, version ${doc.configVersion}` : ''}; ${doc.proxies.length} proxies connected`);
    for (const n of nacks.slice(0, CONFIG_PROBLEMS_SHOWN)) screen.push(`NACK ${n.nodeId} ${n.type} ${n.version}: ${oneLine(n.error, CONFIG_LINE_CHARS)}`);
    if (nacks.length > CONFIG_PROBLEMS_SHOWN) screen.push(`(${nacks.length - CONFIG_PROBLEMS_SHOWN} more NACKs: npx pillion ctl proxies)`);
    return { screen, summary: `${problems.length > 0 ? 'invalid' : 'ok'} nacks=${nacks.length}`, events };
  }
}

interface ResilienceCounters {
  retries: number;
  ejections: number;
  /** Requests refused by a full bulkhead: in-flight requests (maxRequests) and the pending queue (maxPendingRequests). */
  overflow: number;
  /** Connections sidecars accepted over mTLS (their inbound listeners). */
  mtls: number;
  /** Requests and connections authorization refused. */
  denied: number;
}

/**
 * Counters carried across a restart: `shown` is what was displayed, `raw` what the process reported last time,
 * `fresh` what it reports now. A counter lower than its raw value restarted from zero, so it adds all of itself.
 */
export function carryOverReset(
  shown: ResilienceCounters,
  raw: ResilienceCounters | undefined,
  fresh: ResilienceCounters,
  setRaw: (raw: ResilienceCounters) => void,
): ResilienceCounters {
  setRaw(fresh);
  const out = { ...shown };
  for (const k of Object.keys(fresh) as Array<keyof ResilienceCounters>) {
    const before = raw?.[k] ?? 0;
    out[k] += fresh[k] >= before ? fresh[k] - before : fresh[k];
  }
  return out;
}

/** The resilience counters of one sidecar's /metrics, summed over its clusters. */
export function resilienceCounters(samples: readonly Sample[]): ResilienceCounters {
  const c: ResilienceCounters = { retries: 0, ejections: 0, overflow: 0, mtls: 0, denied: 0 };
  for (const s of samples) {
    if (s.name === 'pillion_upstream_retries_total') c.retries += s.value;
    else if (s.name === 'pillion_upstream_ejections_total') c.ejections += s.value;
    else if (s.name === 'pillion_upstream_requests_overflow_total' || s.name === 'pillion_upstream_pending_overflow_total') c.overflow += s.value;
    else if (s.name === 'pillion_downstream_connections_transport_total' && s.labels.transport === 'tls') c.mtls += s.value;
    else if (s.name === 'pillion_rbac_decisions_total' && s.labels.decision === 'denied') c.denied += s.value;
  }
  return c;
}

/** `host:port` of every endpoint /clusters marks unhealthy or ejected by outlier detection. */
function ejectedEndpoints(clusters: unknown): string[] {
  const list = Array.isArray(clusters)
    ? clusters
    : clusters && typeof clusters === 'object' && Array.isArray((clusters as { clusters?: unknown }).clusters)
      ? (clusters as { clusters: unknown[] }).clusters
      : [];
  const out: string[] = [];
  type Endpoint = { address?: string; port?: number; healthy?: boolean; ejectedUntil?: string | null };
  for (const c of list as Array<{ name?: string; endpoints?: Endpoint[] }>) {
    if (!c.name?.startsWith('backend.')) continue;
    for (const e of c.endpoints ?? []) if (e.healthy === false || typeof e.ejectedUntil === 'string') out.push(`${e.address}:${e.port}`);
  }
  return out;
}

/** Entry for `pillion demo [--duration SEC] [--base-port N] [--rate N] [--verbose]`. */
export function runDemoCommand(argv: readonly string[]): Promise<void> {
  return runDemo(parseDemoArgs(argv));
}
