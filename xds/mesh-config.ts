// The operator's mesh config (YAML): parse, validate by hand with an exact path per problem, return typed data.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isIP } from 'node:net';
import { createRequire } from 'node:module';
import jsYaml from 'js-yaml';
import type { Document, LineCounter } from 'yaml';
import { canonicalIp, hostProblem, MAX_TIMER_MS } from '../src/config/values.js';
import { DEFAULTS } from '../src/config/model.js';

export { DEFAULTS } from '../src/config/model.js';

/** The largest mesh file read (bytes): a bigger one is refused before it is parsed. */
export const MESH_FILE_MAX_BYTES = 4 * 1024 * 1024;
/**
 * The most values (maps, lists and scalars) a mesh file may hold with its YAML aliases expanded, checked before
 * validation. A 4 MiB file written out in full holds about 300,000; past this it is an alias bomb, whose
 * expansion (each alias of a list of aliases multiplies) would stall the server or exhaust its heap.
 */
export const MESH_MAX_VALUES = 500_000;
/** The longest duration the mesh config takes: Node's timers turn anything longer into 1 ms. */
export const MAX_DURATION_MS = MAX_TIMER_MS;
/** Problems listed in one error; the rest are counted. */
const MAX_PROBLEMS = 100;
/**
 * Line numbers come from a second parse with `yaml`, ten times slower than js-yaml (0.6 s for 228 KiB on a cold
 * start): only a rejected file up to this size gets them, so a large bad edit does not hold up the server.
 */
export const LINE_LOOKUP_MAX_BYTES = 64 * 1024;
/** Nesting deeper than this (aliases expanded) is refused; the mesh schema needs fewer than 10 levels. */
const MAX_DEPTH = 100;

export type PortProtocol = 'http' | 'http2' | 'grpc' | 'tcp' | 'auto';
export type LbPolicyName = 'least_request' | 'round_robin' | 'ring_hash' | 'random';
export type MtlsMode = 'STRICT' | 'PERMISSIVE' | 'DISABLE';

/**
 * Where intercepted traffic to a destination no service claims goes (Istio's meshConfig.outboundTrafficPolicy):
 * ALLOW_ANY passes it through to its original address (cluster PassthroughCluster), REGISTRY_ONLY refuses it
 * (cluster BlackHoleCluster). Only transparent interception (`--interception redirect`) has such traffic.
 */
export type OutboundTrafficMode = 'ALLOW_ANY' | 'REGISTRY_ONLY';

export interface MeshConfig {
  readonly trustDomain: string;
  readonly services: readonly ServiceConfig[];
  /** Default ALLOW_ANY (Istio's default). */
  readonly outboundTrafficPolicy?: { readonly mode: OutboundTrafficMode };
  /**
   * Istio's meshConfig.protocolDetectionTimeout: how long a listener that sniffs (an `auto` port, a PERMISSIVE
   * inbound, an intercepted outbound) waits for a client's first bytes before taking the connection as TCP, so a
   * server-first protocol (MySQL, SMTP) is never stalled. Default 1 s; 0 waits for the client for ever.
   */
  readonly protocolDetectionTimeoutMs?: number;
}

export interface ServiceConfig {
  readonly name: string;
  readonly namespace: string;
  /** The service account its workloads run as: the sa of their SPIFFE ID (default: the service name). */
  readonly serviceAccount: string;
  readonly ports: readonly PortConfig[];
  readonly endpoints: readonly EndpointConfig[];
  readonly policy: PolicyConfig;
  readonly authorization?: AuthorizationConfig;
  readonly requestAuthentication?: RequestAuthenticationConfig;
  readonly routes: readonly RouteRuleConfig[];
  readonly egress: readonly EgressConfig[];
  /**
   * Virtual addresses of the service (a Kubernetes ClusterIP, an Istio ServiceEntry's addresses): an intercepted
   * connection to one of them, on one of the service's ports, goes to the service.
   */
  readonly addresses?: readonly string[];
}

export interface PortConfig {
  readonly port: number;
  readonly protocol: PortProtocol;
}

export interface EndpointConfig {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly locality: { readonly region: string; readonly zone: string; readonly weight?: number };
  /** EDS priority (0 = first choice; higher levels take traffic as lower ones lose health). Default 0. */
  readonly priority?: number;
}

/** Envoy's proto rule for LocalityLbEndpoints.priority. */
const MAX_PRIORITY = 128;

export type HashOn = { readonly header: string } | { readonly cookie: string } | { readonly sourceIp: true };

export interface LoadBalancerConfig {
  readonly policy: LbPolicyName;
  /** least_request only. */
  readonly choiceCount?: number;
  /** ring_hash only. */
  readonly hashOn?: HashOn;
  readonly minRingSize?: number;
}

export interface RetriesConfig {
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  readonly retryOn: readonly string[];
  /** HTTP statuses listed in retryOn (they imply Envoy's `retriable-status-codes`). */
  readonly retriableStatusCodes: readonly number[];
  readonly backoff?: { readonly baseMs: number; readonly maxMs?: number };
  /**
   * Retries in flight to the service at most `percent` of its active requests, never fewer than `minConcurrency`
   * (Envoy's retry_budget, defaults 20 and 3). Without it, circuitBreakers.maxRetries (default 3) bounds them.
   */
  readonly budget?: { readonly percent: number; readonly minConcurrency: number };
  /** At the per-try timeout, send a second try beside the first and take whichever answers first (Envoy's hedging). */
  readonly hedge?: boolean;
}

export interface OutlierDetectionConfig {
  readonly consecutive5xx?: number;
  readonly consecutiveGatewayFailure?: number;
  readonly intervalMs?: number;
  readonly baseEjectionTimeMs?: number;
  readonly maxEjectionPercent?: number;
  /** Envoy's max_ejection_time; at least baseEjectionTime (default max(300 s, baseEjectionTime)). */
  readonly maxEjectionTimeMs?: number;
  /** Envoy's split_external_local_origin_errors: connect failures, resets and timeouts count on their own. */
  readonly splitExternalLocalOriginErrors?: boolean;
  readonly consecutiveLocalOriginFailure?: number;
  /** The interval success-rate detector; on only when given. */
  readonly successRate?: { readonly minimumHosts?: number; readonly requestVolume?: number; readonly stdevFactor?: number };
  /** The interval failure-percentage detector; on only when given. */
  readonly failurePercentage?: { readonly threshold?: number; readonly minimumHosts?: number; readonly requestVolume?: number };
}

/** Active health checks: an HTTP GET of `path` when set, else a TCP connect. */
export interface HealthCheckConfig {
  readonly path?: string;
  readonly intervalMs?: number;
  readonly timeoutMs?: number;
  readonly healthyThreshold?: number;
  readonly unhealthyThreshold?: number;
}

export interface CircuitBreakersConfig {
  readonly maxConnections?: number;
  readonly maxPendingRequests?: number;
  readonly maxRequests?: number;
  readonly maxRetries?: number;
}

export interface PolicyConfig {
  readonly loadBalancer: LoadBalancerConfig;
  readonly connectTimeoutMs?: number;
  readonly timeoutMs?: number;
  readonly retries?: RetriesConfig;
  readonly outlierDetection?: OutlierDetectionConfig;
  readonly circuitBreakers?: CircuitBreakersConfig;
  readonly mtls: MtlsMode;
  readonly healthCheck?: HealthCheckConfig;
  /** Injected into every route to this service (a route's own `fault` replaces it). */
  readonly fault?: FaultConfig;
  /** Enforced by the service's own sidecar on its inbound listener, for all callers together. */
  readonly rateLimit?: RateLimitConfig;
}

/** Envoy's HTTP fault filter: a fixed delay and/or an abort, each for a percent of requests. */
export interface FaultConfig {
  readonly delay?: { readonly fixedMs: number; readonly percent: number };
  readonly abort?: { readonly httpStatus?: number; readonly grpcStatus?: number; readonly percent: number };
}

/** Envoy's local rate limit (a token bucket): `requests` per `perMs`, bursts up to `burst` (default `requests`). */
export interface RateLimitConfig {
  readonly requests: number;
  readonly perMs: number;
  readonly burst: number;
}

/**
 * One allow or deny rule (Istio's AuthorizationPolicy rule, flattened): every field given must match (AND), any
 * value of a field will do (OR); a rule with no field matches everything. Principals and paths are exact, or a
 * prefix with a trailing `*` (paths also a suffix with a leading `*`); `*` alone is any.
 */
export interface AuthorizationRule {
  /** The policy name: the RBAC policy it compiles to and the `policy` label of its counter. */
  readonly name: string;
  /** Peer SPIFFE IDs (mTLS). */
  readonly principals?: readonly string[];
  /** Peer namespaces (mTLS): spiffe://<trustDomain>/ns/<namespace>/ . */
  readonly namespaces?: readonly string[];
  /** Verified JWTs as `<iss>/<sub>`, `<iss>/*` or `*` (Istio's requestPrincipals). */
  readonly requestPrincipals?: readonly string[];
  readonly methods?: readonly string[];
  readonly paths?: readonly string[];
  readonly ports?: readonly number[];
}

/** Deny wins; once `allow` is given (even empty), whatever no allow rule matches is denied. */
export interface AuthorizationConfig {
  readonly allow?: readonly AuthorizationRule[];
  readonly deny?: readonly AuthorizationRule[];
}

/** One JWT issuer the service accepts (Istio's RequestAuthentication jwtRules). */
export interface JwtRuleConfig {
  readonly issuer: string;
  readonly audiences: readonly string[];
  readonly jwksFile?: string;
  readonly jwksUri?: string;
  /** Remote JWKS: fetch timeout (default 5s) and how long keys are used before a refetch (default 10m). */
  readonly jwksTimeoutMs?: number;
  readonly jwksCacheDurationMs?: number;
  /** Keep the token on the request to the app (default false: removed, as Envoy). */
  readonly forwardToken?: boolean;
}

export interface RequestAuthenticationConfig {
  readonly jwtRules: readonly JwtRuleConfig[];
}

export interface HeaderMatchConfig {
  readonly name: string;
  readonly kind: 'exact' | 'prefix' | 'present';
  readonly value: string;
  readonly invert: boolean;
}

/** A resolved reference to one port of one service. */
export interface ServiceRef {
  readonly service: string;
  readonly namespace: string;
  readonly port: number;
}

export interface RouteRuleConfig {
  readonly match: { readonly kind: 'prefix' | 'path'; readonly value: string; readonly headers: readonly HeaderMatchConfig[] };
  /** One entry for `to`, several for `split`. */
  readonly split: readonly (ServiceRef & { readonly weight: number })[];
  readonly timeoutMs?: number;
  readonly fault?: FaultConfig;
}

export interface EgressConfig extends ServiceRef {
  readonly localPort: number;
}

/** One problem in the mesh config, with the path of the offending value. */
export interface MeshConfigProblem {
  readonly path: string;
  readonly message: string;
  readonly line?: number;
}

export class MeshConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly MeshConfigProblem[],
  ) {
    super(
      problems
        .map((p) => `${file}: ${p.path}: ${p.message}${p.line !== undefined ? ` (line ${p.line})` : ''}`)
        .join('\n'),
    );
    this.name = 'MeshConfigError';
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const PROTOCOLS: readonly PortProtocol[] = ['http', 'http2', 'grpc', 'tcp', 'auto'];
const LB_POLICIES: readonly LbPolicyName[] = ['least_request', 'round_robin', 'ring_hash', 'random'];
const MTLS: readonly MtlsMode[] = ['STRICT', 'PERMISSIVE', 'DISABLE'];
/** Envoy's x-envoy-retry-on / x-envoy-retry-grpc-on conditions. */
const RETRY_ON = new Set([
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'retriable-4xx', 'refused-stream',
  'retriable-status-codes', 'retriable-headers', 'envoy-ratelimited', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
]);

/** "250ms", "1s", "1.5s", "2m", "1h" in milliseconds, unrounded; undefined when it is not such a string. */
function exactDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Parse "250ms", "1s", "1.5s", "2m", "1h" into milliseconds; undefined when it is not such a string. */
export function parseDuration(text: string): number | undefined {
  const ms = exactDuration(text);
  return ms === undefined ? undefined : Math.round(ms);
}

/** Protocols whose traffic goes through the HTTP connection manager (auto is sniffed, HTTP when it is HTTP). */
export function isHttpProtocol(p: PortProtocol): boolean {
  return p !== 'tcp';
}

type Path = readonly (string | number)[];
type Obj = Record<string, unknown>;

function pathText(path: Path): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out ? `.${seg}` : seg;
  return out || '(root)';
}

function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  const text = JSON.stringify(v);
  return `${typeof v} ${text.length > 80 ? `${text.slice(0, 60)}…" (${text.length} characters)` : text}`;
}

/**
 * Collects problems while walking the raw YAML value; each check returns undefined on failure. Only the first
 * MAX_PROBLEMS are kept (a file of thousands of bad entries must not make an error of megabytes); `count` has all.
 */
class Checker {
  readonly problems: { path: Path; message: string }[] = [];
  count = 0;

  fail(path: Path, message: string): undefined {
    this.count++;
    if (this.problems.length < MAX_PROBLEMS) this.problems.push({ path, message });
    return undefined;
  }

  obj(v: unknown, path: Path, keys: readonly string[]): Obj | undefined {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return this.fail(path, `expected a map, got ${describe(v)}`);
    for (const k of Object.keys(v)) {
      if (!keys.includes(k)) this.fail([...path, k], `unknown field (expected one of: ${keys.join(', ')})`);
    }
    return v as Obj;
  }

  list(v: unknown, path: Path): unknown[] | undefined {
    if (!Array.isArray(v)) return this.fail(path, `expected a list, got ${describe(v)}`);
    return v;
  }

  str(v: unknown, path: Path): string | undefined {
    if (typeof v !== 'string' || v === '') return this.fail(path, `expected a non-empty string, got ${describe(v)}`);
    return v;
  }

  int(v: unknown, path: Path, min: number, max: number): number | undefined {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      return this.fail(path, `expected an integer from ${min} to ${max}, got ${describe(v)}`);
    }
    return v;
  }

  port(v: unknown, path: Path): number | undefined {
    return this.int(v, path, 1, 65_535);
  }

  label(v: unknown, path: Path): string | undefined {
    const s = this.str(v, path);
    if (s !== undefined && !DNS_LABEL.test(s)) {
      return this.fail(path, `expected a DNS label (lowercase letters, digits and "-", at most 63), got ${JSON.stringify(s)}`);
    }
    return s;
  }

  oneOf<T extends string>(v: unknown, path: Path, allowed: readonly T[]): T | undefined {
    if (typeof v !== 'string' || !allowed.includes(v as T)) {
      return this.fail(path, `expected one of ${allowed.join(' | ')}, got ${describe(v)}`);
    }
    return v as T;
  }

  /** A duration in whole milliseconds, from 0 (or 1 ms with `positive`) to MAX_DURATION_MS. */
  duration(v: unknown, path: Path, positive = false): number | undefined {
    if (typeof v === 'number') {
      return this.fail(path, `expected a duration like "250ms", got number ${v} (add a unit: ms, s, m or h)`);
    }
    const exact = typeof v === 'string' ? exactDuration(v) : undefined;
    if (exact === undefined) return this.fail(path, `expected a duration like "250ms", got ${describe(v)}`);
    if (exact > MAX_DURATION_MS) {
      return this.fail(path, `expected at most ${MAX_DURATION_MS}ms (about 24.8 days, the longest a timer holds), got ${describe(v)}`);
    }
    // Below 1 ms would round to 0, which means "no timeout": not what was written.
    if (exact > 0 && exact < 1) return this.fail(path, `expected 0 or at least 1ms, got ${describe(v)}`);
    if (positive && exact === 0) return this.fail(path, 'expected a duration above 0');
    return Math.round(exact);
  }

  bool(v: unknown, path: Path): boolean | undefined {
    if (typeof v !== 'boolean') return this.fail(path, `expected true or false, got ${describe(v)}`);
    return v;
  }
}

/** Calls check(value) when the key is present, so optional fields stay undefined. */
function opt<T>(o: Obj, key: string, check: (v: unknown) => T | undefined): T | undefined {
  return o[key] === undefined ? undefined : check(o[key]);
}

function definedOnly<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

/** The kept problems, and how many more there were. */
function failed(c: Checker): { problems: { path: Path; message: string }[]; omitted: number } {
  return { problems: c.problems, omitted: c.count - c.problems.length };
}

interface RawRef {
  path: Path;
  service: string;
  namespace: string;
  port?: number;
}

/** Validate a raw YAML value (already parsed) as a mesh config; problems are returned, not thrown. */
export function checkMeshConfig(raw: unknown): { config?: MeshConfig; problems: { path: Path; message: string }[]; omitted?: number } {
  const c = new Checker();
  const root = c.obj(raw, [], ['trustDomain', 'services', 'outboundTrafficPolicy', 'protocolDetectionTimeout']);
  if (!root) return failed(c);
  let trustDomain = root.trustDomain === undefined ? 'cluster.local' : c.str(root.trustDomain, ['trustDomain']);
  // The SPIFFE ID spec's trust domain characters: an ID with another one is refused by every peer (src/tls/peer.ts).
  if (trustDomain !== undefined && !/^[a-z0-9._-]+$/.test(trustDomain)) {
    trustDomain = c.fail(['trustDomain'], `expected a SPIFFE trust domain (lowercase letters, digits, ".", "-", "_"), got ${JSON.stringify(trustDomain)}`);
  }
  let outboundTrafficPolicy: MeshConfig['outboundTrafficPolicy'];
  if (root.outboundTrafficPolicy !== undefined) {
    const o = c.obj(root.outboundTrafficPolicy, ['outboundTrafficPolicy'], ['mode']);
    const mode = o ? c.oneOf<OutboundTrafficMode>(o.mode, ['outboundTrafficPolicy', 'mode'], ['ALLOW_ANY', 'REGISTRY_ONLY']) : undefined;
    if (mode !== undefined) outboundTrafficPolicy = { mode };
  }
  const protocolDetectionTimeoutMs = root.protocolDetectionTimeout === undefined ? undefined : c.duration(root.protocolDetectionTimeout, ['protocolDetectionTimeout']);
  const rawServices = c.list(root.services ?? [], ['services']) ?? [];
  const services: ServiceConfig[] = [];
  // References are checked once every service is known (a route may name a service defined later).
  const refs: RawRef[] = [];
  rawServices.forEach((rs, i) => {
    const s = checkService(c, rs, ['services', i], refs);
    if (s) services.push(s);
  });

  const byKey = new Map<string, ServiceConfig>();
  const seen = new Set<string>();
  rawServices.forEach((rs, i) => {
    const s = rs as Obj | null;
    if (!s || typeof s.name !== 'string') return;
    const key = `${s.name}.${typeof s.namespace === 'string' ? s.namespace : 'default'}`;
    if (seen.has(key)) c.fail(['services', i, 'name'], `duplicate service ${JSON.stringify(key)} (name.namespace must be unique)`);
    seen.add(key);
  });
  for (const s of services) if (!byKey.has(`${s.name}.${s.namespace}`)) byKey.set(`${s.name}.${s.namespace}`, s);

  for (const ref of refs) {
    const target = byKey.get(`${ref.service}.${ref.namespace}`);
    if (!target) {
      // A service that is declared but has problems of its own is already reported: no second error per route.
      if (!seen.has(`${ref.service}.${ref.namespace}`)) c.fail(ref.path, `unknown service ${JSON.stringify(`${ref.service}.${ref.namespace}`)}`);
    } else if (ref.port !== undefined && !target.ports.some((p) => p.port === ref.port)) {
      c.fail(ref.path, `service ${target.name}.${target.namespace} has no port ${ref.port} (ports: ${target.ports.map((p) => p.port).join(', ')})`);
    }
  }
  if (c.count > 0 || trustDomain === undefined) return failed(c);

  // Resolve default ports now that every reference is known to exist.
  const resolvePort = (service: string, namespace: string, port: number): number =>
    port !== 0 ? port : byKey.get(`${service}.${namespace}`)!.ports[0]!.port;
  const resolved = services.map((s) => ({
    ...s,
    routes: s.routes.map((r) => ({ ...r, split: r.split.map((t) => ({ ...t, port: resolvePort(t.service, t.namespace, t.port) })) })),
    egress: s.egress.map((e) => ({ ...e, port: resolvePort(e.service, e.namespace, e.port) })),
  }));
  // A route must land on an HTTP port: TCP ports cannot be routed by path or header.
  resolved.forEach((s, i) => {
    s.routes.forEach((r, j) =>
      r.split.forEach((t) => {
        const proto = byKey.get(`${t.service}.${t.namespace}`)!.ports.find((p) => p.port === t.port)!.protocol;
        if (!isHttpProtocol(proto)) c.fail(['services', i, 'routes', j], `target ${t.service}.${t.namespace}:${t.port} is a tcp port; routes need an HTTP port`);
      }),
    );
  });
  if (c.count > 0) return failed(c);
  // An address names one service port: two services claiming one would make interception pick arbitrarily.
  const claimed = new Map<string, string>();
  resolved.forEach((s, i) => {
    (s.addresses ?? []).forEach((a, j) => {
      for (const p of s.ports) {
        const key = `${a}:${p.port}`;
        const other = claimed.get(key);
        if (other !== undefined && other !== `${s.name}.${s.namespace}`) c.fail(['services', i, 'addresses', j], `${a} port ${p.port} is already an address of ${other}`);
        claimed.set(key, `${s.name}.${s.namespace}`);
      }
    });
  });
  if (c.count > 0) return failed(c);
  return { config: definedOnly({ trustDomain, services: resolved, outboundTrafficPolicy, protocolDetectionTimeoutMs }), problems: [] };
}

function checkService(c: Checker, raw: unknown, path: Path, refs: RawRef[]): ServiceConfig | undefined {
  const s = c.obj(raw, path, ['name', 'namespace', 'serviceAccount', 'ports', 'endpoints', 'policy', 'authorization', 'requestAuthentication', 'routes', 'egress', 'addresses']);
  if (!s) return undefined;
  const before = c.count;
  const name = c.label(s.name, [...path, 'name']);
  const namespace = s.namespace === undefined ? 'default' : c.label(s.namespace, [...path, 'namespace']);
  const serviceAccount = s.serviceAccount === undefined ? name : c.label(s.serviceAccount, [...path, 'serviceAccount']);

  const ports: PortConfig[] = [];
  const rawPorts = c.list(s.ports, [...path, 'ports']);
  if (rawPorts && rawPorts.length === 0) c.fail([...path, 'ports'], 'expected at least one port');
  rawPorts?.forEach((rp, i) => {
    const p = c.obj(rp, [...path, 'ports', i], ['port', 'protocol', 'name']);
    if (!p) return;
    const port = c.port(p.port, [...path, 'ports', i, 'port']);
    const protocol = p.protocol === undefined ? 'http' : c.oneOf(p.protocol, [...path, 'ports', i, 'protocol'], PROTOCOLS);
    if (port !== undefined && ports.some((q) => q.port === port)) c.fail([...path, 'ports', i, 'port'], `duplicate port ${port}`);
    if (port !== undefined && protocol) ports.push({ port, protocol });
  });

  const endpoints: EndpointConfig[] = [];
  (c.list(s.endpoints ?? [], [...path, 'endpoints']) ?? []).forEach((re, i) => {
    const p = [...path, 'endpoints', i];
    const problemsBefore = c.count;
    const e = c.obj(re, p, ['address', 'port', 'locality', 'weight', 'priority']);
    if (!e) return;
    let address = c.str(e.address, [...p, 'address']);
    // The rule the proxy's translator applies (an IP address or a DNS name): a file accepted here is never NACKed.
    const bad = address === undefined ? undefined : hostProblem(address);
    if (bad !== undefined) address = c.fail([...p, 'address'], bad);
    const port = c.port(e.port, [...p, 'port']);
    const weight = e.weight === undefined ? 1 : c.int(e.weight, [...p, 'weight'], 1, 128 * 1024 * 1024);
    let locality: EndpointConfig['locality'] = { region: '', zone: '' };
    if (e.locality !== undefined) {
      const l = c.obj(e.locality, [...p, 'locality'], ['region', 'zone', 'weight']);
      if (l) {
        locality = definedOnly({
          region: opt(l, 'region', (v) => c.str(v, [...p, 'locality', 'region'])) ?? '',
          zone: opt(l, 'zone', (v) => c.str(v, [...p, 'locality', 'zone'])) ?? '',
          weight: opt(l, 'weight', (v) => c.int(v, [...p, 'locality', 'weight'], 1, 0xffffffff)),
        });
      }
    }
    const priority = opt(e, 'priority', (v) => c.int(v, [...p, 'priority'], 0, MAX_PRIORITY));
    if (c.count === problemsBefore && address !== undefined && port !== undefined && weight !== undefined) {
      endpoints.push(definedOnly({ address, port, weight, locality, priority }));
    }
  });
  checkLocalities(c, s.endpoints, endpoints, [...path, 'endpoints']);
  // xDS carries each locality's weight (the sum of its endpoints') as a uint32; Envoy refuses a larger sum.
  const totalWeight = endpoints.reduce((sum, e) => sum + e.weight, 0);
  if (totalWeight > 0xffffffff) c.fail([...path, 'endpoints'], `the endpoint weights add up to ${totalWeight}; at most ${0xffffffff}`);

  const policy = checkPolicy(c, s.policy ?? {}, [...path, 'policy']);
  // The probe speaks HTTP/1.1: an HTTP/2-only (h2c, gRPC) or TCP port would fail it whatever the service's health.
  const h1Only = ports.find((p) => p.protocol !== 'http' && p.protocol !== 'auto');
  if (policy?.healthCheck?.path !== undefined && h1Only !== undefined) {
    c.fail([...path, 'policy', 'healthCheck', 'path'], `HTTP checks speak HTTP/1.1; port ${h1Only.port} is ${h1Only.protocol} (leave out path for a TCP connect check)`);
  }
  const authorization = opt(s, 'authorization', (v) => checkAuthorization(c, v, [...path, 'authorization']));
  const requestAuthentication = opt(s, 'requestAuthentication', (v) => checkRequestAuthentication(c, v, [...path, 'requestAuthentication']));
  const ns = namespace ?? 'default';

  const routes: RouteRuleConfig[] = [];
  (c.list(s.routes ?? [], [...path, 'routes']) ?? []).forEach((rr, i) => {
    const r = checkRoute(c, rr, [...path, 'routes', i], ns, refs);
    if (r) routes.push(r);
  });

  const egress: EgressConfig[] = [];
  (c.list(s.egress ?? [], [...path, 'egress']) ?? []).forEach((re, i) => {
    const p = [...path, 'egress', i];
    const e = c.obj(re, p, ['localPort', 'service', 'namespace', 'port']);
    if (!e) return;
    const localPort = c.port(e.localPort, [...p, 'localPort']);
    if (localPort !== undefined && egress.some((x) => x.localPort === localPort)) c.fail([...p, 'localPort'], `duplicate localPort ${localPort}`);
    const ref = checkRef(c, e, p, ns, refs);
    if (localPort !== undefined && ref) egress.push({ localPort, ...ref });
  });

  let addresses: string[] | undefined;
  if (s.addresses !== undefined) {
    addresses = [];
    (c.list(s.addresses, [...path, 'addresses']) ?? []).forEach((ra, i) => {
      const a = c.str(ra, [...path, 'addresses', i]);
      if (a === undefined) return;
      // Intercepted connections carry an IP; a DNS name could never match one.
      if (isIP(a) === 0) return void c.fail([...path, 'addresses', i], `expected an IPv4 or IPv6 address, got ${JSON.stringify(a)}`);
      const canonical = canonicalIp(a);
      if (!addresses!.includes(canonical)) addresses!.push(canonical);
    });
  }

  if (c.count > before || !name || !policy || !serviceAccount) return undefined;
  return definedOnly({ name, namespace: ns, serviceAccount, ports, endpoints, policy, authorization, requestAuthentication, routes, egress, addresses });
}

/**
 * Priorities and locality weights of a service's endpoints, checked where the compiler turns them into xDS
 * localities (one per priority, region and zone): priorities run from 0 without gaps (what
 * LocalityLbEndpoints.priority asks for), endpoints of one locality agree on its weight, and once one locality has
 * a weight every locality does (locality-weighted balancing gives a locality without one no traffic at all).
 * Only run when every endpoint was valid, so indices match the raw list.
 */
function checkLocalities(c: Checker, raw: unknown, endpoints: readonly EndpointConfig[], path: Path): void {
  if (!Array.isArray(raw) || raw.length !== endpoints.length || endpoints.length === 0) return;
  const weights = new Map<string, number | undefined>();
  const weighted = endpoints.some((e) => e.locality.weight !== undefined);
  endpoints.forEach((e, i) => {
    const key = `${e.priority ?? 0}\u0000${e.locality.region}\u0000${e.locality.zone}`;
    if (weighted && e.locality.weight === undefined) {
      c.fail([...path, i, 'locality', 'weight'], 'missing: once one locality has a weight, every locality needs one (a locality without one gets no traffic)');
    } else if (weights.has(key) && weights.get(key) !== e.locality.weight) {
      c.fail([...path, i, 'locality', 'weight'], `${e.locality.weight} differs from ${weights.get(key)}, the weight an earlier endpoint gave the same locality and priority`);
    }
    if (!weights.has(key)) weights.set(key, e.locality.weight);
  });
  // Envoy: the locality weights of one priority add up to at most a uint32.
  const perPriority = new Map<string, number>();
  for (const [key, w] of weights) {
    const p = key.slice(0, key.indexOf('\u0000'));
    perPriority.set(p, (perPriority.get(p) ?? 0) + (w ?? 0));
  }
  for (const [p, sum] of perPriority) {
    if (sum > 0xffffffff) c.fail(path, `the locality weights of priority ${p} add up to ${sum}; at most ${0xffffffff}`);
  }
  const used = new Set(endpoints.map((e) => e.priority ?? 0));
  for (let p = 0; p < used.size; p++) {
    if (!used.has(p)) c.fail(path, `priorities must run from 0 without gaps: no endpoint has priority ${p} (used: ${[...used].sort((a, b) => a - b).join(', ')})`);
  }
}

/** `{ service, namespace?, port? }`: port 0 stands for "the target's first port" until references resolve. */
function checkRef(c: Checker, o: Obj, path: Path, defaultNs: string, refs: RawRef[]): ServiceRef | undefined {
  const service = c.label(o.service, [...path, 'service']);
  const namespace = o.namespace === undefined ? defaultNs : c.label(o.namespace, [...path, 'namespace']);
  const port = o.port === undefined ? 0 : c.port(o.port, [...path, 'port']);
  if (service === undefined || namespace === undefined || port === undefined) return undefined;
  refs.push(definedOnly({ path, service, namespace, port: port === 0 ? undefined : port }));
  return { service, namespace, port };
}

function checkRoute(c: Checker, raw: unknown, path: Path, ns: string, refs: RawRef[]): RouteRuleConfig | undefined {
  const r = c.obj(raw, path, ['match', 'to', 'split', 'timeout', 'fault']);
  if (!r) return undefined;
  const before = c.count;
  const mp = [...path, 'match'];
  const m = c.obj(r.match, mp, ['prefix', 'path', 'headers']);
  let match: RouteRuleConfig['match'] | undefined;
  if (m) {
    const headers: HeaderMatchConfig[] = [];
    (c.list(m.headers ?? [], [...mp, 'headers']) ?? []).forEach((rh, i) => {
      const hp = [...mp, 'headers', i];
      const h = c.obj(rh, hp, ['name', 'exact', 'prefix', 'present', 'invert']);
      if (!h) return;
      const name = c.str(h.name, [...hp, 'name']);
      const kinds = (['exact', 'prefix', 'present'] as const).filter((k) => h[k] !== undefined);
      if (kinds.length > 1) c.fail(hp, `expected at most one of exact, prefix, present; got ${kinds.join(', ')}`);
      const kind = kinds[0] ?? 'present';
      let value = '';
      if (kind === 'present') {
        if (h.present !== undefined && c.bool(h.present, [...hp, 'present']) === false) {
          c.fail([...hp, 'present'], 'expected true (use invert: true to match an absent header)');
        }
      } else {
        value = c.str(h[kind], [...hp, kind]) ?? '';
      }
      const invert = h.invert === undefined ? false : c.bool(h.invert, [...hp, 'invert']) ?? false;
      if (name !== undefined) headers.push({ name: name.toLowerCase(), kind, value, invert });
    });
    const has = (['prefix', 'path'] as const).filter((k) => m[k] !== undefined);
    if (has.length !== 1) {
      c.fail(mp, 'expected exactly one of prefix, path');
    } else {
      const kind = has[0]!;
      const value = c.str(m[kind], [...mp, kind]);
      if (value !== undefined && !value.startsWith('/')) c.fail([...mp, kind], `expected a path starting with "/", got ${JSON.stringify(value)}`);
      if (value !== undefined) match = { kind, value, headers };
    }
  }
  const split: (ServiceRef & { weight: number })[] = [];
  if ((r.to === undefined) === (r.split === undefined)) {
    c.fail(path, 'expected exactly one of to, split');
  } else if (r.to !== undefined) {
    const t = c.obj(r.to, [...path, 'to'], ['service', 'namespace', 'port']);
    const ref = t && checkRef(c, t, [...path, 'to'], ns, refs);
    if (ref) split.push({ ...ref, weight: 1 });
  } else {
    const list = c.list(r.split, [...path, 'split']) ?? [];
    if (list.length === 0) c.fail([...path, 'split'], 'expected at least one target');
    list.forEach((rs, i) => {
      const sp = [...path, 'split', i];
      const t = c.obj(rs, sp, ['service', 'namespace', 'port', 'weight']);
      if (!t) return;
      const weight = c.int(t.weight, [...sp, 'weight'], 1, 1_000_000);
      const ref = checkRef(c, t, sp, ns, refs);
      if (ref && weight !== undefined) split.push({ ...ref, weight });
    });
  }
  const timeoutMs = opt(r, 'timeout', (v) => c.duration(v, [...path, 'timeout']));
  const fault = opt(r, 'fault', (v) => checkFault(c, v, [...path, 'fault']));
  if (c.count > before || !match) return undefined;
  return definedOnly({ match, split, timeoutMs, fault });
}

/** A percent of requests, 0..100 with up to four decimals (it becomes a share per million). */
function checkPercent(c: Checker, v: unknown, path: Path): number | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 100) return c.fail(path, `expected a percent from 0 to 100, got ${describe(v)}`);
  return v;
}

function checkFault(c: Checker, raw: unknown, path: Path): FaultConfig | undefined {
  const o = c.obj(raw, path, ['delay', 'abort']);
  if (!o) return undefined;
  if (o.delay === undefined && o.abort === undefined) c.fail(path, 'expected delay, abort or both');
  const delay = opt(o, 'delay', (v) => {
    const dp = [...path, 'delay'];
    const d = c.obj(v, dp, ['fixed', 'percent']);
    if (!d) return undefined;
    const fixedMs = c.duration(d.fixed, [...dp, 'fixed'], true);
    const percent = checkPercent(c, d.percent, [...dp, 'percent']);
    return fixedMs === undefined || percent === undefined ? undefined : { fixedMs, percent };
  });
  const abort = opt(o, 'abort', (v) => {
    const ap = [...path, 'abort'];
    const a = c.obj(v, ap, ['status', 'grpcStatus', 'percent']);
    if (!a) return undefined;
    // One status, as Envoy's FaultAbort holds one: an HTTP status for HTTP callers or a gRPC status for gRPC ones.
    if ((a.status === undefined) === (a.grpcStatus === undefined)) c.fail(ap, 'expected exactly one of status (HTTP, 200-599), grpcStatus (0-16)');
    const httpStatus = opt(a, 'status', (x) => c.int(x, [...ap, 'status'], 200, 599));
    const grpcStatus = opt(a, 'grpcStatus', (x) => c.int(x, [...ap, 'grpcStatus'], 0, 16));
    const percent = checkPercent(c, a.percent, [...ap, 'percent']);
    return percent === undefined ? undefined : definedOnly({ httpStatus, grpcStatus, percent });
  });
  return definedOnly({ delay, abort });
}

function checkRateLimit(c: Checker, raw: unknown, path: Path): RateLimitConfig | undefined {
  const o = c.obj(raw, path, ['requests', 'per', 'burst']);
  if (!o) return undefined;
  const requests = c.int(o.requests, [...path, 'requests'], 1, 0xffffffff);
  const perMs = o.per === undefined ? 1_000 : c.duration(o.per, [...path, 'per'], true);
  const burst = o.burst === undefined ? requests : c.int(o.burst, [...path, 'burst'], 1, 0xffffffff);
  if (requests === undefined || perMs === undefined || burst === undefined) return undefined;
  return { requests, perMs, burst };
}

const OUTLIER_KEYS = [
  'consecutive5xx',
  'consecutiveGatewayFailure',
  'consecutiveLocalOriginFailure',
  'splitExternalLocalOriginErrors',
  'interval',
  'baseEjectionTime',
  'maxEjectionTime',
  'maxEjectionPercent',
  'successRate',
  'failurePercentage',
];

/** Envoy's success_rate_stdev_factor is in thousandths: the mesh config writes the factor (1.9) with at most 3 decimals. */
function stdevFactor(c: Checker, v: unknown, path: Path): number | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1_000 || Math.abs(v * 1000 - Math.round(v * 1000)) > 1e-6) {
    return c.fail(path, `expected a number from 0 to 1000 with at most 3 decimals (like 1.9), got ${describe(v)}`);
  }
  return v;
}

function checkOutlierDetection(c: Checker, o: Obj, op: Path): OutlierDetectionConfig | undefined {
  const count = (k: string, base: Path = op, src: Obj = o) => opt(src, k, (x) => c.int(x, [...base, k], 1, 1_000_000));
  const baseEjectionTimeMs = opt(o, 'baseEjectionTime', (x) => c.duration(x, [...op, 'baseEjectionTime'], true));
  let maxEjectionTimeMs = opt(o, 'maxEjectionTime', (x) => c.duration(x, [...op, 'maxEjectionTime'], true));
  // Envoy refuses a max_ejection_time below base_ejection_time (its default 30 s when unset).
  const base = baseEjectionTimeMs ?? DEFAULTS.outlierDetection.baseEjectionTimeMs;
  if (maxEjectionTimeMs !== undefined && maxEjectionTimeMs < base) {
    maxEjectionTimeMs = c.fail([...op, 'maxEjectionTime'], `expected at least baseEjectionTime (${base}ms), got ${maxEjectionTimeMs}ms`);
  }
  const successRate = opt(o, 'successRate', (v) => {
    const sp = [...op, 'successRate'];
    const s = c.obj(v, sp, ['minimumHosts', 'requestVolume', 'stdevFactor']);
    if (!s) return undefined;
    return definedOnly({
      minimumHosts: count('minimumHosts', sp, s),
      requestVolume: count('requestVolume', sp, s),
      stdevFactor: opt(s, 'stdevFactor', (x) => stdevFactor(c, x, [...sp, 'stdevFactor'])),
    });
  });
  const failurePercentage = opt(o, 'failurePercentage', (v) => {
    const fp = [...op, 'failurePercentage'];
    const f = c.obj(v, fp, ['threshold', 'minimumHosts', 'requestVolume']);
    if (!f) return undefined;
    return definedOnly({
      threshold: opt(f, 'threshold', (x) => c.int(x, [...fp, 'threshold'], 0, 100)),
      minimumHosts: count('minimumHosts', fp, f),
      requestVolume: count('requestVolume', fp, f),
    });
  });
  return definedOnly<OutlierDetectionConfig>({
    consecutive5xx: count('consecutive5xx'),
    consecutiveGatewayFailure: count('consecutiveGatewayFailure'),
    consecutiveLocalOriginFailure: count('consecutiveLocalOriginFailure'),
    splitExternalLocalOriginErrors: opt(o, 'splitExternalLocalOriginErrors', (x) => c.bool(x, [...op, 'splitExternalLocalOriginErrors'])),
    intervalMs: opt(o, 'interval', (x) => c.duration(x, [...op, 'interval'], true)),
    baseEjectionTimeMs,
    maxEjectionTimeMs,
    maxEjectionPercent: opt(o, 'maxEjectionPercent', (x) => c.int(x, [...op, 'maxEjectionPercent'], 0, 100)),
    successRate,
    failurePercentage,
  });
}

function checkPolicy(c: Checker, raw: unknown, path: Path): PolicyConfig | undefined {
  const p = c.obj(raw, path, [
    'loadBalancer', 'connectTimeout', 'timeout', 'retries', 'outlierDetection', 'circuitBreakers', 'mtls', 'healthCheck', 'fault', 'rateLimit',
  ]);
  if (!p) return undefined;
  const loadBalancer = p.loadBalancer === undefined ? { policy: 'least_request' as const } : checkLb(c, p.loadBalancer, [...path, 'loadBalancer']);
  const connectTimeoutMs = opt(p, 'connectTimeout', (v) => c.duration(v, [...path, 'connectTimeout'], true));
  const timeoutMs = opt(p, 'timeout', (v) => c.duration(v, [...path, 'timeout']));
  const retries = opt(p, 'retries', (v) => checkRetries(c, v, [...path, 'retries']));
  const outlierDetection = opt(p, 'outlierDetection', (v) => {
    const op = [...path, 'outlierDetection'];
    const o = c.obj(v, op, OUTLIER_KEYS);
    if (!o) return undefined;
    return checkOutlierDetection(c, o, op);
  });
  const circuitBreakers = opt(p, 'circuitBreakers', (v) => {
    const cp = [...path, 'circuitBreakers'];
    const o = c.obj(v, cp, ['maxConnections', 'maxPendingRequests', 'maxRequests', 'maxRetries']);
    if (!o) return undefined;
    const n = (k: string) => opt(o, k, (x) => c.int(x, [...cp, k], 0, 0xffffffff));
    return definedOnly<CircuitBreakersConfig>({
      maxConnections: n('maxConnections'),
      maxPendingRequests: n('maxPendingRequests'),
      maxRequests: n('maxRequests'),
      maxRetries: n('maxRetries'),
    });
  });
  const mtls = p.mtls === undefined ? 'STRICT' : c.oneOf(p.mtls, [...path, 'mtls'], MTLS);
  const healthCheck = opt(p, 'healthCheck', (v) => checkHealthCheck(c, v, [...path, 'healthCheck']));
  const fault = opt(p, 'fault', (v) => checkFault(c, v, [...path, 'fault']));
  const rateLimit = opt(p, 'rateLimit', (v) => checkRateLimit(c, v, [...path, 'rateLimit']));
  if (!loadBalancer || !mtls) return undefined;
  return definedOnly({ loadBalancer, connectTimeoutMs, timeoutMs, retries, outlierDetection, circuitBreakers, mtls, healthCheck, fault, rateLimit });
}

function checkHealthCheck(c: Checker, raw: unknown, path: Path): HealthCheckConfig | undefined {
  const o = c.obj(raw, path, ['path', 'interval', 'timeout', 'healthyThreshold', 'unhealthyThreshold']);
  if (!o) return undefined;
  const probePath = opt(o, 'path', (v) => {
    const s = c.str(v, [...path, 'path']);
    if (s === undefined) return undefined;
    if (!s.startsWith('/')) return c.fail([...path, 'path'], `expected a path starting with "/", got ${JSON.stringify(s)}`);
    // The request line is written as is: no spaces or control characters (the translator refuses them too).
    if (/[\u0000-\u0020\u007f]/.test(s)) return c.fail([...path, 'path'], 'expected no spaces or control characters');
    return s;
  });
  return definedOnly<HealthCheckConfig>({
    path: probePath,
    intervalMs: opt(o, 'interval', (v) => c.duration(v, [...path, 'interval'], true)),
    timeoutMs: opt(o, 'timeout', (v) => c.duration(v, [...path, 'timeout'], true)),
    healthyThreshold: opt(o, 'healthyThreshold', (v) => c.int(v, [...path, 'healthyThreshold'], 1, 1_000_000)),
    unhealthyThreshold: opt(o, 'unhealthyThreshold', (v) => c.int(v, [...path, 'unhealthyThreshold'], 1, 1_000_000)),
  });
}

function checkLb(c: Checker, raw: unknown, path: Path): LoadBalancerConfig | undefined {
  const o = c.obj(raw, path, ['policy', 'choiceCount', 'hashOn', 'minRingSize']);
  if (!o) return undefined;
  const policy = c.oneOf(o.policy, [...path, 'policy'], LB_POLICIES);
  if (!policy) return undefined;
  if (o.choiceCount !== undefined && policy !== 'least_request') c.fail([...path, 'choiceCount'], 'only applies to policy least_request');
  if (policy !== 'ring_hash') {
    for (const k of ['hashOn', 'minRingSize']) if (o[k] !== undefined) c.fail([...path, k], 'only applies to policy ring_hash');
  }
  const choiceCount = opt(o, 'choiceCount', (v) => c.int(v, [...path, 'choiceCount'], 2, 100));
  const minRingSize = opt(o, 'minRingSize', (v) => c.int(v, [...path, 'minRingSize'], 1, 8_388_608));
  const hashOn = opt(o, 'hashOn', (v): HashOn | undefined => {
    const hp = [...path, 'hashOn'];
    const h = c.obj(v, hp, ['header', 'cookie', 'sourceIp']);
    if (!h) return undefined;
    const keys = Object.keys(h);
    if (keys.length !== 1) return c.fail(hp, 'expected exactly one of header, cookie, sourceIp');
    if (h.header !== undefined) {
      const header = c.str(h.header, [...hp, 'header']);
      return header === undefined ? undefined : { header: header.toLowerCase() };
    }
    if (h.cookie !== undefined) {
      const cookie = c.str(h.cookie, [...hp, 'cookie']);
      return cookie === undefined ? undefined : { cookie };
    }
    return h.sourceIp === true ? { sourceIp: true } : c.fail([...hp, 'sourceIp'], `expected true, got ${describe(h.sourceIp)}`);
  });
  if (policy === 'ring_hash' && o.hashOn === undefined) c.fail([...path, 'hashOn'], 'ring_hash needs hashOn: { header } | { cookie } | { sourceIp: true }');
  return definedOnly({ policy, choiceCount, hashOn, minRingSize });
}

function checkRetries(c: Checker, raw: unknown, path: Path): RetriesConfig | undefined {
  const o = c.obj(raw, path, ['attempts', 'perTryTimeout', 'retryOn', 'backoff', 'budget', 'hedge']);
  if (!o) return undefined;
  const attempts = c.int(o.attempts, [...path, 'attempts'], 0, 100);
  const perTryTimeoutMs = opt(o, 'perTryTimeout', (v) => c.duration(v, [...path, 'perTryTimeout']));
  const retryOn: string[] = [];
  const retriableStatusCodes: number[] = [];
  const rawOn = o.retryOn === undefined ? ['5xx', 'reset', 'connect-failure'] : c.list(o.retryOn, [...path, 'retryOn']) ?? [];
  rawOn.forEach((v, i) => {
    // A bare HTTP status (503) is shorthand for Envoy's retriable-status-codes condition with that code.
    if (typeof v === 'number') {
      if (c.int(v, [...path, 'retryOn', i], 100, 599) !== undefined) retriableStatusCodes.push(v);
    } else if (typeof v === 'string' && RETRY_ON.has(v)) {
      retryOn.push(v);
    } else {
      c.fail([...path, 'retryOn', i], `expected an Envoy retry condition (${[...RETRY_ON].join(', ')}) or an HTTP status, got ${describe(v)}`);
    }
  });
  if (retriableStatusCodes.length > 0 && !retryOn.includes('retriable-status-codes')) retryOn.push('retriable-status-codes');
  const backoff = opt(o, 'backoff', (v) => {
    const bp = [...path, 'backoff'];
    const b = c.obj(v, bp, ['base', 'max']);
    if (!b) return undefined;
    const baseMs = c.duration(b.base, [...bp, 'base'], true);
    const maxMs = opt(b, 'max', (x) => c.duration(x, [...bp, 'max']));
    if (baseMs !== undefined && maxMs !== undefined && maxMs < baseMs) c.fail([...bp, 'max'], 'expected max >= base');
    return baseMs === undefined ? undefined : definedOnly({ baseMs, maxMs });
  });
  const budget = opt(o, 'budget', (v) => {
    const bp = [...path, 'budget'];
    const b = c.obj(v, bp, ['percent', 'minConcurrency']);
    if (!b) return undefined;
    const percent = b.percent === undefined ? 20 : c.int(b.percent, [...bp, 'percent'], 0, 100);
    const minConcurrency = b.minConcurrency === undefined ? 3 : c.int(b.minConcurrency, [...bp, 'minConcurrency'], 0, 1_000_000);
    return percent === undefined || minConcurrency === undefined ? undefined : { percent, minConcurrency };
  });
  const hedge = opt(o, 'hedge', (v) => c.bool(v, [...path, 'hedge']));
  if (hedge === true && perTryTimeoutMs === undefined) c.fail([...path, 'hedge'], 'hedging starts a second try at the per-try timeout: set perTryTimeout too');
  if (attempts === undefined) return undefined;
  return definedOnly({ attempts, perTryTimeoutMs, retryOn, retriableStatusCodes, backoff, budget, hedge });
}

const HTTP_METHOD = /^[A-Z]+$/;

/** A list of non-empty strings, each passing `check` (which returns a problem, or undefined). */
function stringList(c: Checker, raw: unknown, path: Path, check: (s: string) => string | undefined): string[] | undefined {
  const list = c.list(raw, path);
  if (!list) return undefined;
  if (list.length === 0) return c.fail(path, 'expected at least one value (leave the field out to match any)');
  const out: string[] = [];
  list.forEach((v, i) => {
    const s = c.str(v, [...path, i]);
    if (s === undefined) return;
    const problem = check(s);
    if (problem !== undefined) c.fail([...path, i], problem);
    else out.push(s);
  });
  return out;
}

/** Exact, a prefix with one trailing `*`, or `*`; `suffix` also allows one leading `*`. */
function wildcardProblem(s: string, suffix: boolean): string | undefined {
  const stars = s.split('*').length - 1;
  if (stars === 0 || s === '*') return undefined;
  if (stars === 1 && (s.endsWith('*') || (suffix && s.startsWith('*')))) return undefined;
  return `${JSON.stringify(s)}: a "*" may only ${suffix ? 'start or end' : 'end'} the value`;
}

function checkAuthorizationRule(c: Checker, raw: unknown, path: Path, fallbackName: string): AuthorizationRule | undefined {
  const r = c.obj(raw, path, ['name', 'principals', 'namespaces', 'requestPrincipals', 'methods', 'paths', 'ports']);
  if (!r) return undefined;
  const name = r.name === undefined ? fallbackName : c.str(r.name, [...path, 'name']);
  const principals = opt(r, 'principals', (v) =>
    stringList(c, v, [...path, 'principals'], (p) => (p === '*' ? undefined : !p.startsWith('spiffe://') ? `expected a SPIFFE ID (spiffe://...) or "*", got ${JSON.stringify(p)}` : wildcardProblem(p, false))),
  );
  const namespaces = opt(r, 'namespaces', (v) =>
    stringList(c, v, [...path, 'namespaces'], (n) => (DNS_LABEL.test(n) ? undefined : `expected a namespace (a DNS label), got ${JSON.stringify(n)}`)),
  );
  const requestPrincipals = opt(r, 'requestPrincipals', (v) =>
    stringList(c, v, [...path, 'requestPrincipals'], (p) => {
      if (p === '*') return undefined;
      const slash = p.lastIndexOf('/');
      if (slash <= 0 || slash === p.length - 1) return `expected "<issuer>/<subject>", "<issuer>/*" or "*", got ${JSON.stringify(p)}`;
      const stars = p.split('*').length - 1;
      if (stars > 1 || (stars === 1 && !p.endsWith('/*'))) return `${JSON.stringify(p)}: "*" may only stand for the whole subject ("<issuer>/*")`;
      return undefined;
    }),
  );
  const methods = opt(r, 'methods', (v) => stringList(c, v, [...path, 'methods'], (m) => (HTTP_METHOD.test(m) ? undefined : `expected an HTTP method in capitals (GET, POST, ...), got ${JSON.stringify(m)}`)));
  const paths = opt(r, 'paths', (v) => stringList(c, v, [...path, 'paths'], (p) => (p.startsWith('/') || p.startsWith('*') ? wildcardProblem(p, true) : `expected a path starting with "/" (or "*"), got ${JSON.stringify(p)}`)));
  const ports = opt(r, 'ports', (v) => {
    const list = c.list(v, [...path, 'ports']);
    if (!list) return undefined;
    if (list.length === 0) return c.fail([...path, 'ports'], 'expected at least one port (leave the field out to match any)');
    const out: number[] = [];
    list.forEach((p, i) => {
      const n = c.port(p, [...path, 'ports', i]);
      if (n !== undefined) out.push(n);
    });
    return out;
  });
  if (name === undefined) return undefined;
  return definedOnly({ name, principals, namespaces, requestPrincipals, methods, paths, ports });
}

function checkAuthorization(c: Checker, raw: unknown, path: Path): AuthorizationConfig | undefined {
  const o = c.obj(raw, path, ['allow', 'deny']);
  if (!o) return undefined;
  const names = new Set<string>();
  const rules = (key: 'allow' | 'deny'): AuthorizationRule[] | undefined =>
    opt(o, key, (v) => {
      const out: AuthorizationRule[] = [];
      (c.list(v, [...path, key]) ?? []).forEach((rr, i) => {
        const r = checkAuthorizationRule(c, rr, [...path, key, i], `${key}[${i}]`);
        if (!r) return;
        if (names.has(r.name)) c.fail([...path, key, i, 'name'], `duplicate rule name ${JSON.stringify(r.name)}`);
        names.add(r.name);
        out.push(r);
      });
      return out;
    });
  return definedOnly({ allow: rules('allow'), deny: rules('deny') });
}

function checkRequestAuthentication(c: Checker, raw: unknown, path: Path): RequestAuthenticationConfig | undefined {
  const o = c.obj(raw, path, ['jwtRules']);
  if (!o) return undefined;
  const jwtRules: JwtRuleConfig[] = [];
  const list = c.list(o.jwtRules, [...path, 'jwtRules']);
  if (list && list.length === 0) c.fail([...path, 'jwtRules'], 'expected at least one rule');
  list?.forEach((rr, i) => {
    const p = [...path, 'jwtRules', i];
    const r = c.obj(rr, p, ['issuer', 'audiences', 'jwksFile', 'jwksUri', 'jwksTimeout', 'jwksCacheDuration', 'forwardToken']);
    if (!r) return;
    const issuer = c.str(r.issuer, [...p, 'issuer']);
    if (issuer !== undefined && jwtRules.some((x) => x.issuer === issuer)) c.fail([...p, 'issuer'], `duplicate issuer ${JSON.stringify(issuer)}`);
    const audiences = opt(r, 'audiences', (v) => stringList(c, v, [...p, 'audiences'], () => undefined)) ?? [];
    const jwksFile = opt(r, 'jwksFile', (v) => c.str(v, [...p, 'jwksFile']));
    const jwksUri = opt(r, 'jwksUri', (v) => {
      const u = c.str(v, [...p, 'jwksUri']);
      if (u !== undefined && !/^https?:\/\/[^/]/.test(u)) return c.fail([...p, 'jwksUri'], `expected an http:// or https:// URL, got ${JSON.stringify(u)}`);
      return u;
    });
    if ((jwksFile === undefined) === (jwksUri === undefined) && r.jwksFile === undefined && r.jwksUri === undefined) c.fail(p, 'needs jwksFile or jwksUri');
    if (r.jwksFile !== undefined && r.jwksUri !== undefined) c.fail(p, 'jwksFile and jwksUri: give one');
    const jwksTimeoutMs = opt(r, 'jwksTimeout', (v) => c.duration(v, [...p, 'jwksTimeout'], true));
    const jwksCacheDurationMs = opt(r, 'jwksCacheDuration', (v) => c.duration(v, [...p, 'jwksCacheDuration'], true));
    const forwardToken = opt(r, 'forwardToken', (v) => c.bool(v, [...p, 'forwardToken']));
    if (issuer === undefined || (jwksFile === undefined && jwksUri === undefined)) return;
    jwtRules.push(definedOnly({ issuer, audiences, jwksFile, jwksUri, jwksTimeoutMs, jwksCacheDurationMs, forwardToken }));
  });
  return { jwtRules };
}

/** The 1-based line of the YAML node at `path`, or of its nearest existing parent. */
function lineOf(doc: Document, lines: LineCounter, path: Path): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node && typeof node === 'object' && node.range) return lines.linePos(node.range[0]).line;
  }
  return undefined;
}

/**
 * Line numbers for problems, from a second parse with `yaml` (which keeps node positions). Only a config that
 * fails validation pays for it: js-yaml parses ~10x faster, and every config edit goes through the parse.
 */
function locateLines(text: string): (path: Path) => number | undefined {
  const { LineCounter: Counter, parseDocument } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  const lines = new Counter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  return (path) => lineOf(doc, lines, path);
}

/** The size of `root` with every YAML alias expanded: how many values, and how deep. */
interface Expanded {
  readonly values: number;
  readonly depth: number;
}

/**
 * Measures what validation would walk. js-yaml resolves an alias to the very object of its anchor, so the parsed
 * value is a graph: sizes are memoized per object, and the cost is linear in the text however far the aliases
 * multiply. Stops counting past `limit`; a cycle (`&a [*a]`, which js-yaml builds) expands without end.
 */
function expandedSize(root: unknown, limit: number): Expanded {
  const memo = new Map<object, Expanded | 'open'>();
  const size = (v: unknown): Expanded => {
    if (v === null || typeof v !== 'object') return { values: 1, depth: 0 };
    const known = memo.get(v);
    if (known === 'open') return { values: Infinity, depth: Infinity };
    if (known !== undefined) return known;
    memo.set(v, 'open');
    let values = 1;
    let depth = 0;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      const s = size(child);
      values += s.values;
      depth = Math.max(depth, s.depth + 1);
      if (values > limit || depth > MAX_DEPTH) break;
    }
    const out = { values, depth };
    memo.set(v, out);
    return out;
  };
  return size(root);
}

/**
 * Why a parsed YAML value must be refused before anything walks or writes it out, or null: its aliases expand
 * without end (a cycle), to more than `limit` values (an alias bomb), or deeper than MAX_DEPTH.
 */
export function yamlExpansionProblem(raw: unknown, limit = MESH_MAX_VALUES): string | null {
  const expanded = expandedSize(raw, limit);
  if (expanded.values === Infinity) return 'a YAML alias refers to a node that contains it, so it expands without end';
  if (expanded.values > limit) return `YAML aliases expand the file to more than ${limit} values (the limit; an alias bomb?): refused before validation`;
  if (expanded.depth > MAX_DEPTH) return `YAML aliases nest values more than ${MAX_DEPTH} levels deep`;
  return null;
}

/** A file over MESH_FILE_MAX_BYTES: refused before it is parsed. */
export function meshFileTooLarge(file: string, bytes: number): MeshConfigError {
  const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return new MeshConfigError(file, [
    { path: '(file)', message: `${bytes} bytes (${mib(bytes)}) is over the limit of ${MESH_FILE_MAX_BYTES} bytes (${mib(MESH_FILE_MAX_BYTES)})` },
  ]);
}

/** Parse and validate mesh config text; throws MeshConfigError listing every problem. */
export function parseMeshConfig(text: string, file = 'mesh.yaml'): MeshConfig {
  // A text of fewer characters than a quarter of the limit is under it in UTF-8 bytes too.
  if (text.length > MESH_FILE_MAX_BYTES / 4) {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > MESH_FILE_MAX_BYTES) throw meshFileTooLarge(file, bytes);
  }
  let raw: unknown;
  try {
    // The core schema is YAML 1.2's: no timestamps or other implicit types a config never means.
    raw = jsYaml.load(text, { schema: jsYaml.CORE_SCHEMA, filename: file });
  } catch (err) {
    const e = err as jsYaml.YAMLException;
    const line = e.mark === undefined ? undefined : e.mark.line + 1;
    throw new MeshConfigError(file, [definedOnly({ path: '(yaml)', message: e.reason ?? e.message, line })]);
  }
  // Aliases are bounded here, before validation walks them (js-yaml has no option for it; yaml's maxAliasCount
  // counts uses per anchor, and 100 uses of a large anchor still multiply a 4 MiB file a hundredfold).
  const aliasProblem = yamlExpansionProblem(raw);
  if (aliasProblem !== null) throw new MeshConfigError(file, [{ path: '(yaml)', message: aliasProblem }]);
  const { config, problems, omitted = 0 } = checkMeshConfig(raw);
  if (!config) {
    const lineAt = text.length <= LINE_LOOKUP_MAX_BYTES ? locateLines(text) : () => undefined;
    const listed: MeshConfigProblem[] = problems.map((p) => definedOnly({ path: pathText(p.path), message: p.message, line: lineAt(p.path) }));
    if (omitted > 0) listed.push({ path: '(more)', message: `${omitted} more problem${omitted === 1 ? '' : 's'} not listed` });
    throw new MeshConfigError(file, listed);
  }
  return config;
}

/**
 * Read a mesh file, refusing one over MESH_FILE_MAX_BYTES without reading it all: its size is checked first,
 * and the read stops past the limit (a file may grow meanwhile, or be a pipe with no size).
 */
export function readMeshFileSync(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const { size } = fstatSync(fd);
    if (size > MESH_FILE_MAX_BYTES) throw meshFileTooLarge(file, size);
    const buf = Buffer.allocUnsafe(MESH_FILE_MAX_BYTES + 1);
    let total = 0;
    for (;;) {
      const n = readSync(fd, buf, total, buf.length - total, null);
      if (n === 0) break;
      total += n;
      if (total > MESH_FILE_MAX_BYTES) throw meshFileTooLarge(file, Math.max(size, total));
    }
    return buf.toString('utf8', 0, total);
  } finally {
    closeSync(fd);
  }
}

/** Read, parse and validate a mesh config file. */
export function loadMeshConfigFile(file: string): MeshConfig {
  return parseMeshConfig(readMeshFileSync(file), file);
}
