// Turns per-round results into medians, ratios, markdown tables and PASS/FAIL lines for the targets.
// No assertions: the machine is shared and noisy, so these are printed figures only.
import type { LoadResult } from './load.js';

export type Metric = 'rps' | 'mbps';

export interface CaseSpec {
  name: string;
  title: string;
  /** The figure that "ratio" columns compare (bigger is better). */
  metric: Metric;
  /** For latency cases: report p99 added over direct (paired per round). */
  addedLatency?: boolean;
}

export interface RoundResult {
  round: number;
  target: string;
  result?: LoadResult;
  error?: string;
}

export interface TargetSummary {
  target: string;
  rounds: number;
  rps: number;
  p50: number;
  p99: number;
  mbps: number;
  errors: number;
  non2xx: number;
  tool: string;
  /** metric / direct metric. */
  vsDirect: number;
  /** Pillion metric / this target's metric. */
  pillionOverThis: number;
  /** Median over rounds of (this p99 − direct p99 of the same round), ms. */
  addedP99: number;
  failures: string[];
}

export function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

export function summarize(spec: CaseSpec, rounds: readonly RoundResult[], targetOrder: readonly string[]): TargetSummary[] {
  const by = new Map<string, RoundResult[]>();
  for (const r of rounds) {
    const list = by.get(r.target) ?? [];
    list.push(r);
    by.set(r.target, list);
  }
  const directByRound = new Map<number, LoadResult>();
  for (const r of by.get('direct') ?? []) if (r.result) directByRound.set(r.round, r.result);

  const base: TargetSummary[] = [];
  for (const target of targetOrder) {
    const list = by.get(target);
    if (!list) continue;
    const ok = list.map((r) => r.result).filter((r): r is LoadResult => r !== undefined);
    const added = list
      .filter((r) => r.result && directByRound.has(r.round))
      .map((r) => (r.result as LoadResult).p99 - (directByRound.get(r.round) as LoadResult).p99);
    base.push({
      target,
      rounds: ok.length,
      rps: median(ok.map((r) => r.rps)),
      p50: median(ok.map((r) => r.p50)),
      p99: median(ok.map((r) => r.p99)),
      mbps: median(ok.map((r) => r.mbps)),
      errors: ok.reduce((a, r) => a + r.errors, 0),
      non2xx: ok.reduce((a, r) => a + r.non2xx, 0),
      tool: ok[0]?.tool ?? '',
      vsDirect: NaN,
      pillionOverThis: NaN,
      addedP99: median(added),
      failures: list.filter((r) => r.error).map((r) => `round ${r.round}: ${r.error}`),
    });
  }
  const direct = base.find((s) => s.target === 'direct');
  const pillion = base.find((s) => s.target === 'pillion');
  for (const s of base) {
    const m = s[spec.metric];
    if (direct) s.vsDirect = m / direct[spec.metric];
    if (pillion) s.pillionOverThis = pillion[spec.metric] / m;
  }
  return base;
}

function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(digits);
}

/** "min – max" of some figures, "–" for none. */
export function rangeOf(values: readonly number[], digits = 2): string {
  return values.length > 0 ? `${fmt(Math.min(...values), digits)} – ${fmt(Math.max(...values), digits)}` : '–';
}

export function markdownTable(spec: CaseSpec, rows: readonly TargetSummary[]): string {
  const head = ['target', 'req/s', 'p50 ms', 'p99 ms', 'MB/s'];
  if (spec.addedLatency) head.push('added p99 ms');
  head.push(`${spec.metric === 'rps' ? 'req/s' : 'MB/s'} × direct`, 'Pillion ÷ this', 'rounds', 'errors/non-2xx', 'tool');
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_h, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const r of rows) {
    const cells = [r.target, fmt(r.rps, 0), fmt(r.p50), fmt(r.p99), fmt(r.mbps, 1)];
    if (spec.addedLatency) cells.push(r.target === 'direct' ? '0' : fmt(r.addedP99, 3));
    cells.push(
      fmt(r.vsDirect),
      r.target === 'pillion' ? '1' : fmt(r.pillionOverThis),
      String(r.rounds),
      `${r.errors}/${r.non2xx}`,
      r.tool,
    );
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

export interface TargetCheck {
  name: string;
  /** INFO: a figure the issue asks to print, with no limit to hold it to. */
  status: 'PASS' | 'FAIL' | 'SKIP' | 'INFO';
  detail: string;
}

export function checkLine(c: TargetCheck): string {
  const verdict = c.status === 'PASS' ? 'target met' : c.status === 'FAIL' ? 'target not met' : c.status === 'INFO' ? 'printed, no target' : 'not measured';
  return `${c.status.padEnd(4)}  ${c.name} (${verdict}): ${c.detail}`;
}

/** Compares `value op limit`; SKIP when the value could not be measured. */
export function check(name: string, value: number, op: '>=' | '<=', limit: number, detail: string): TargetCheck {
  if (!Number.isFinite(value)) return { name, status: 'SKIP', detail: `not measured (${detail})` };
  const pass = op === '>=' ? value >= limit : value <= limit;
  return { name, status: pass ? 'PASS' : 'FAIL', detail };
}

export { fmt };
