// The demo's screen: reads every sidecar's /metrics and /clusters and the control server's /proxies, and renders
// what the mesh does now (shares, success and latency over the last seconds), the processes with their pids and
// restarts, the config's state and the events (exits, restarts, rejected configs). A terminal gets a redrawn
// screen, anything else plain lines.
import { httpGet } from './children.js';
import { configProblems, currentNacks, oneLine, parseProxiesDocument, type ProxiesDocument } from './control-status.js';
import { CounterWindow } from './counter-window.js';
import type { TrafficGenerator } from './demo-traffic.js';
import type { Supervised } from './supervisor.js';

export interface Instance {
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

/** Events kept for the terminal screen (each with its stderr tail); off a terminal every event is printed. */
export const FEED_EVENTS_SHOWN = 6;

/** The last few events, each a block of lines, for the screen. */
export class EventFeed {
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
export function instanceTable(instances: readonly Instance[], control: Supervised, xdsPort: number, controlAdminPort: number): string {
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
export class MeshView {
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
export class ConfigWatch {
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
    // A retry the max_retries bulkhead (or the retry budget) refused is overflow too (Envoy's upstream_rq_retry_overflow).
    else if (s.name === 'pillion_upstream_retries_skipped_total' && s.labels.reason === 'budget') c.overflow += s.value;
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
