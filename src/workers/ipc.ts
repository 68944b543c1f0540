// Messages between the primary and its workers (`pillion proxy --concurrency N`, N > 1) over Node's cluster IPC
// channel. The channel uses 'advanced' serialization (structured clone), so resources keep their bytes as
// Uint8Array. What a worker sends back is checked here before the primary uses it: a known type, the fields it
// needs, and any payload as a JSON string of bounded length (parsed only after the length check).
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { ResourceSet } from '../config/snapshot.js';
import type { SecretModel } from '../tls/secrets.js';
import type { ClusterStatus, ListenerStatus } from '../admin/types.js';

export type ToWorker =
  | { readonly t: 'secret'; readonly name: string; readonly secret: SecretModel | null }
  | { readonly t: 'config'; readonly gen: number; readonly version: string; readonly resources: ResourceSet }
  | { readonly t: 'drain'; readonly id: number; readonly inboundOnly: boolean }
  | { readonly t: 'query'; readonly id: number; readonly what: 'metrics' | 'clusters' }
  | { readonly t: 'log-level'; readonly level: string }
  | { readonly t: 'stop' };

/** As sent by a worker: payloads are JSON text (`body`), so the primary can bound them before parsing. */
export type FromWorker =
  | { readonly t: 'up' }
  | { readonly t: 'applied'; readonly gen: number; readonly ok: boolean; readonly body: string }
  | { readonly t: 'answer'; readonly id: number; readonly body: string }
  | { readonly t: 'drained'; readonly id: number };

/** Body of an 'applied' message. */
export interface AppliedBody {
  readonly error: string | null;
  readonly listeners: ListenerStatus[];
}

/** A worker's metrics are ~100 KiB with a few hundred series; 16 MiB leaves room for large meshes, not for a runaway. */
export const MAX_BODY_CHARS = 16 * 1024 * 1024;
const MAX_ITEMS = 100_000;

export type IgnoredReason = 'unknown_type' | 'malformed' | 'too_large';
export type Parsed = { readonly message: FromWorker } | { readonly ignored: IgnoredReason };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Checks the envelope of a message from a worker. */
export function parseFromWorker(msg: unknown): Parsed {
  if (!isObject(msg) || typeof msg.t !== 'string') return { ignored: 'malformed' };
  const body = msg.body;
  if (typeof body === 'string' && body.length > MAX_BODY_CHARS) return { ignored: 'too_large' };
  switch (msg.t) {
    case 'up':
      return { message: { t: 'up' } };
    case 'applied':
      if (!isId(msg.gen) || typeof msg.ok !== 'boolean' || typeof body !== 'string') return { ignored: 'malformed' };
      return { message: { t: 'applied', gen: msg.gen, ok: msg.ok, body } };
    case 'answer':
      if (!isId(msg.id) || typeof body !== 'string') return { ignored: 'malformed' };
      return { message: { t: 'answer', id: msg.id, body } };
    case 'drained':
      if (!isId(msg.id)) return { ignored: 'malformed' };
      return { message: { t: 'drained', id: msg.id } };
    default:
      return { ignored: 'unknown_type' };
  }
}

function parseJson(body: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

function isListenerStatus(v: unknown): v is ListenerStatus {
  return isObject(v) && typeof v.name === 'string' && typeof v.address === 'string' && typeof v.port === 'number' && typeof v.direction === 'string';
}

export function parseAppliedBody(body: string): AppliedBody | null {
  const v = parseJson(body);
  if (!isObject(v) || !(v.error === null || typeof v.error === 'string') || !Array.isArray(v.listeners)) return null;
  if (v.listeners.length > MAX_ITEMS || !v.listeners.every(isListenerStatus)) return null;
  return { error: v.error, listeners: v.listeners };
}

export function parseClusters(body: string): ClusterStatus[] | null {
  const v = parseJson(body);
  if (!Array.isArray(v) || v.length > MAX_ITEMS) return null;
  const ok = v.every((c) => isObject(c) && typeof c.name === 'string' && typeof c.lbPolicy === 'string' && typeof c.protocol === 'string' && Array.isArray(c.endpoints));
  return ok ? (v as ClusterStatus[]) : null;
}

/** One metric of registry.getMetricsAsJSON(), as it crosses the IPC channel (prom-client's typings want a collect()). */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: string;
  readonly values: readonly { readonly value: number; readonly labels: Readonly<Record<string, string | number>>; readonly metricName?: string }[];
}

/** For prom-client's AggregatorRegistry.aggregate, which reads exactly these fields. */
export function asPromJson(sets: readonly (readonly MetricJson[])[]): MetricObjectWithValues<MetricValue<string>>[][] {
  return sets as unknown as MetricObjectWithValues<MetricValue<string>>[][];
}

const METRIC_TYPES = new Set(['counter', 'gauge', 'histogram', 'summary']);
const AGGREGATORS = new Set(['sum', 'first', 'min', 'max', 'average', 'omit']);

/** registry.getMetricsAsJSON() of a worker; null when it is not that shape (prom-client's aggregate would throw). */
export function parseMetrics(body: string): MetricJson[] | null {
  const v = parseJson(body);
  if (!Array.isArray(v) || v.length > MAX_ITEMS) return null;
  for (const m of v) {
    if (!isObject(m) || typeof m.name !== 'string' || typeof m.help !== 'string' || !METRIC_TYPES.has(m.type as string)) return null;
    if (!AGGREGATORS.has(m.aggregator as string) || !Array.isArray(m.values) || m.values.length > MAX_ITEMS) return null;
    for (const s of m.values) {
      // JSON has no NaN: a gauge that was NaN arrives as null, and is left out below.
      if (!isObject(s) || !(typeof s.value === 'number' || s.value === null) || !isObject(s.labels)) return null;
      if (s.metricName !== undefined && typeof s.metricName !== 'string') return null;
    }
    m.values = m.values.filter((s) => (s as Record<string, unknown>).value !== null);
  }
  return v as MetricJson[];
}
