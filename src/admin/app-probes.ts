// The app's kubelet probes, run by the sidecar's status port (Istio's ISTIO_KUBE_APP_PROBERS): `pillion inject`
// rewrites an httpGet/tcpSocket/grpc probe to GET <status port><path> and passes the original in PILLION_APP_PROBES.
// The probe's connection comes from the proxy's uid, so interception leaves it alone and STRICT mTLS does not apply.
import { request as httpRequest, validateHeaderName, validateHeaderValue, type ClientRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { UsageError } from '../bootstrap/args.js';

export const APP_PROBES_ENV = 'PILLION_APP_PROBES';
export const MAX_APP_PROBES = 64;
export const MAX_APP_PROBES_ENV_BYTES = 64 * 1024;
/** The kubelet reads at most this much of a probe's body too. */
export const MAX_PROBE_BODY_BYTES = 10 * 1024;
const MAX_HEADERS = 64;
const MAX_PATH_LENGTH = 1024;
/** Kubernetes does not cap timeoutSeconds; an hour is past any sane probe. */
const MAX_TIMEOUT_SECONDS = 3600;
/** Probe fields the kubelet applies to the rewritten probe itself: accepted here and not used. */
const KUBELET_FIELDS = new Set(['initialDelaySeconds', 'periodSeconds', 'successThreshold', 'failureThreshold', 'terminationGracePeriodSeconds']);
const UNSUPPORTED_HANDLERS = ['exec'];
const HANDLERS = ['httpGet', 'tcpSocket', 'grpc'];
/** gRPC service names are short dotted identifiers; the kubelet sends the probe's as is. */
const MAX_SERVICE_LENGTH = 256;

export interface HttpGetProbe {
  readonly kind: 'httpGet';
  readonly host: string;
  readonly port: number;
  readonly path: string;
  readonly https: boolean;
  /** The probe's httpHeaders in order; a Host among them replaces the default. */
  readonly headers: readonly (readonly [string, string])[];
  readonly timeoutMs: number;
}

export interface TcpSocketProbe {
  readonly kind: 'tcpSocket';
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;
}

export interface GrpcProbe {
  readonly kind: 'grpc';
  readonly host: string;
  readonly port: number;
  /** The health service name the app is asked about ('' = the server as a whole). */
  readonly service: string;
  readonly timeoutMs: number;
}

export type AppProbe = HttpGetProbe | TcpSocketProbe | GrpcProbe;

/** What one run found: the app's status (httpGet), 200 (tcpSocket connected), or why it failed. */
export type ProbeOutcome =
  | { readonly ok: true; readonly status: number; readonly body: Buffer }
  | { readonly ok: false; readonly status: number; readonly body: Buffer }
  | { readonly ok: false; readonly status: null; readonly message: string };

class ProbeConfigError extends UsageError {}

function fail(key: string, field: string, message: string): never {
  throw new ProbeConfigError(`${APP_PROBES_ENV}: ${JSON.stringify(key)}: ${field}: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * PILLION_APP_PROBES → probes by request path. Anything invalid refuses the start, naming the key and the field:
 * a sidecar that failed every probe would have the kubelet restart the pod for ever.
 */
export function parseAppProbes(raw: string | undefined): Map<string, AppProbe> {
  const probes = new Map<string, AppProbe>();
  if (raw === undefined || raw.trim() === '') return probes;
  const bytes = Buffer.byteLength(raw);
  if (bytes > MAX_APP_PROBES_ENV_BYTES) throw new ProbeConfigError(`${APP_PROBES_ENV}: ${bytes} bytes, more than ${MAX_APP_PROBES_ENV_BYTES}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new ProbeConfigError(`${APP_PROBES_ENV}: not JSON (${(err as Error).message})`);
  }
  if (!isObject(parsed)) throw new ProbeConfigError(`${APP_PROBES_ENV}: expected a JSON object {"/path": {probe}}`);
  const keys = Object.keys(parsed);
  if (keys.length > MAX_APP_PROBES) throw new ProbeConfigError(`${APP_PROBES_ENV}: ${keys.length} probes, more than ${MAX_APP_PROBES}`);
  for (const key of keys) probes.set(requestPath(key), probe(key, parsed[key]));
  return probes;
}

function requestPath(key: string): string {
  if (!key.startsWith('/') || key.length > MAX_PATH_LENGTH || !/^[\x21-\x7e]+$/.test(key) || key.includes('?') || key.includes('#')) {
    fail(key, 'key', `expected a request path: /, printable ASCII without spaces, ? or #, at most ${MAX_PATH_LENGTH} characters`);
  }
  return key;
}

function probe(key: string, value: unknown): AppProbe {
  if (!isObject(value)) fail(key, 'value', 'expected an object with httpGet, tcpSocket or grpc, and timeoutSeconds');
  for (const kind of UNSUPPORTED_HANDLERS) {
    if (kind in value) fail(key, kind, `${kind} probes are not run by the status port (httpGet, tcpSocket and grpc are); leave them on the app container`);
  }
  for (const field of Object.keys(value)) {
    if (!HANDLERS.includes(field) && field !== 'timeoutSeconds' && !KUBELET_FIELDS.has(field)) fail(key, field, 'unknown field');
  }
  const timeoutMs = timeout(key, value.timeoutSeconds);
  const given = HANDLERS.filter((h) => value[h] !== undefined);
  if (given.length > 1) fail(key, given[0]!, `give one of httpGet, tcpSocket or grpc, not ${given.join(' and ')}`);
  if (value.httpGet !== undefined) return httpGet(key, value.httpGet, timeoutMs);
  if (value.tcpSocket !== undefined) return tcpSocket(key, value.tcpSocket, timeoutMs);
  if (value.grpc !== undefined) return grpcProbe(key, value.grpc, timeoutMs);
  return fail(key, 'value', 'expected httpGet, tcpSocket or grpc');
}

function timeout(key: string, v: unknown): number {
  if (v === undefined) return 1000;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TIMEOUT_SECONDS) fail(key, 'timeoutSeconds', `expected a whole number 0-${MAX_TIMEOUT_SECONDS}, got ${JSON.stringify(v)}`);
  // 0 is the API server's "unset": it defaults to 1.
  return (v === 0 ? 1 : v) * 1000;
}

function portOf(key: string, field: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    fail(key, field, `expected a port number 1-65535 (pillion inject resolves named ports), got ${JSON.stringify(v)}`);
  }
  return v;
}

function hostOf(key: string, field: string, v: unknown): string {
  if (v === undefined || v === '') return '127.0.0.1';
  if (typeof v !== 'string' || v.length > 253 || !/^[0-9A-Za-z.:_-]+$/.test(v)) fail(key, field, `expected an address or host name, got ${JSON.stringify(v)}`);
  return v;
}

function checkFields(key: string, handler: string, value: Record<string, unknown>, allowed: readonly string[]): void {
  for (const field of Object.keys(value)) if (!allowed.includes(field)) fail(key, `${handler}.${field}`, 'unknown field');
}

function httpGet(key: string, v: unknown, timeoutMs: number): HttpGetProbe {
  if (!isObject(v)) fail(key, 'httpGet', 'expected an object');
  checkFields(key, 'httpGet', v, ['path', 'port', 'host', 'scheme', 'httpHeaders']);
  const path = v.path === undefined || v.path === '' ? '/' : v.path;
  if (typeof path !== 'string' || !path.startsWith('/') || path.length > MAX_PATH_LENGTH || !/^[\x21-\x7e]+$/.test(path)) {
    fail(key, 'httpGet.path', `expected a path starting with /, printable ASCII without spaces, got ${JSON.stringify(v.path)}`);
  }
  const scheme = v.scheme ?? 'HTTP';
  if (scheme !== 'HTTP' && scheme !== 'HTTPS') fail(key, 'httpGet.scheme', `expected HTTP or HTTPS, got ${JSON.stringify(scheme)}`);
  const headers: [string, string][] = [];
  if (v.httpHeaders !== undefined) {
    if (!Array.isArray(v.httpHeaders) || v.httpHeaders.length > MAX_HEADERS) fail(key, 'httpGet.httpHeaders', `expected a list of at most ${MAX_HEADERS} {name, value}`);
    v.httpHeaders.forEach((h: unknown, i) => {
      const field = `httpGet.httpHeaders[${i}]`;
      if (!isObject(h) || typeof h.name !== 'string' || typeof h.value !== 'string') fail(key, field, 'expected {name, value} strings');
      try {
        validateHeaderName(h.name);
        validateHeaderValue(h.name, h.value);
      } catch (err) {
        fail(key, field, (err as Error).message);
      }
      headers.push([h.name, h.value]);
    });
  }
  return { kind: 'httpGet', host: hostOf(key, 'httpGet.host', v.host), port: portOf(key, 'httpGet.port', v.port), path, https: scheme === 'HTTPS', headers, timeoutMs };
}

function tcpSocket(key: string, v: unknown, timeoutMs: number): TcpSocketProbe {
  if (!isObject(v)) fail(key, 'tcpSocket', 'expected an object');
  checkFields(key, 'tcpSocket', v, ['port', 'host']);
  return { kind: 'tcpSocket', host: hostOf(key, 'tcpSocket.host', v.host), port: portOf(key, 'tcpSocket.port', v.port), timeoutMs };
}

function grpcProbe(key: string, v: unknown, timeoutMs: number): GrpcProbe {
  if (!isObject(v)) fail(key, 'grpc', 'expected an object');
  checkFields(key, 'grpc', v, ['port', 'service']);
  const service = v.service ?? '';
  if (typeof service !== 'string' || service.length > MAX_SERVICE_LENGTH || !/^[\x21-\x7e]*$/.test(service)) {
    fail(key, 'grpc.service', `expected a service name, printable ASCII without spaces, at most ${MAX_SERVICE_LENGTH} characters`);
  }
  // The kubelet's gRPC probe has no host: it dials the pod's address, which from inside the pod is the loopback.
  return { kind: 'grpc', host: '127.0.0.1', port: portOf(key, 'grpc.port', v.port), service, timeoutMs };
}

/** A running probe; abort() when whoever asked has gone (the kubelet gave up). */
export interface ProbeRun {
  readonly done: Promise<ProbeOutcome>;
  abort(): void;
}

/** Runs `probe` once. `userAgent`: the kubelet's (kube-probe/1.x), passed on as the kubelet would send it. */
export function runProbe(probe: AppProbe, userAgent: string | undefined): ProbeRun {
  if (probe.kind === 'httpGet') return runHttpGet(probe, userAgent);
  return probe.kind === 'tcpSocket' ? runTcpSocket(probe) : runGrpc(probe);
}

const ABORTED: ProbeOutcome = { ok: false, status: null, message: 'aborted: the prober went away' };

function failureText(err: unknown, host: string, port: number): string {
  const code = (err as NodeJS.ErrnoException).code;
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (code === 'ECONNREFUSED') return `connection refused by ${target}`;
  if (code === 'ECONNRESET') return `connection reset by ${target}`;
  return `${target}: ${(err as Error).message}`;
}

function runTcpSocket(probe: TcpSocketProbe): ProbeRun {
  let socket: Socket | null = null;
  let settle: (o: ProbeOutcome) => void = () => {};
  const done = new Promise<ProbeOutcome>((resolve) => {
    let timer: NodeJS.Timeout | null = null;
    settle = (o) => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      socket?.destroy();
      settle = () => {};
      resolve(o);
    };
    socket = connect({ host: probe.host, port: probe.port });
    socket.on('error', (err) => settle({ ok: false, status: null, message: failureText(err, probe.host, probe.port) }));
    socket.on('connect', () => settle({ ok: true, status: 200, body: Buffer.from('ok\n') }));
    timer = setTimeout(() => settle({ ok: false, status: null, message: `no connection to ${probe.host}:${probe.port} within ${probe.timeoutMs / 1000} s` }), probe.timeoutMs);
  });
  return { done, abort: () => settle(ABORTED) };
}

const SERVING = Buffer.from('SERVING\n');

/** Loaded at the first gRPC probe: a proxy without one does not load node:http2 and the health messages for it. */
let grpcHealth: Promise<typeof import('./grpc-health.js')> | undefined;

function runGrpc(probe: GrpcProbe): ProbeRun {
  let aborted = false;
  let cancel: (() => void) | null = null;
  const done = (async (): Promise<ProbeOutcome> => {
    const { checkHealth } = await (grpcHealth ??= import('./grpc-health.js'));
    if (aborted) return ABORTED;
    const check = checkHealth(probe.host, probe.port, probe.service, probe.timeoutMs);
    cancel = check.cancel;
    const r = await check.done;
    return r.serving ? { ok: true, status: 200, body: SERVING } : { ok: false, status: null, message: r.reason };
  })();
  return {
    done,
    abort: () => {
      aborted = true;
      cancel?.();
    },
  };
}

function runHttpGet(probe: HttpGetProbe, userAgent: string | undefined): ProbeRun {
  let settle: (o: ProbeOutcome) => void = () => {};
  const done = new Promise<ProbeOutcome>((resolve) => {
    let req: ClientRequest | null = null;
    let res: IncomingMessage | null = null;
    let timer: NodeJS.Timeout | null = null;
    settle = (o) => {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      res?.destroy();
      req?.destroy();
      settle = () => {};
      resolve(o);
    };
    // What the kubelet sends; the probe's own headers (Host included) replace these.
    const headers: OutgoingHttpHeaders = { 'user-agent': userAgent ?? 'kube-probe', accept: '*/*', connection: 'close' };
    for (const [name, value] of probe.headers) {
      const lower = name.toLowerCase();
      const prior = headers[lower];
      // A header given twice in the probe is sent twice, as the kubelet does.
      headers[lower] = prior === undefined || KUBELET_DEFAULTS.has(lower) ? value : ([] as string[]).concat(prior as string | string[], value);
    }
    const options = { host: probe.host, port: probe.port, path: probe.path, method: 'GET', headers, agent: false as const };
    req = probe.https ? httpsRequest({ ...options, rejectUnauthorized: false }) : httpRequest(options);
    req.on('error', (err) => settle({ ok: false, status: null, message: failureText(err, probe.host, probe.port) }));
    req.on('response', (response) => {
      res = response;
      const status = response.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (): void => {
        const body = Buffer.concat(chunks).subarray(0, MAX_PROBE_BODY_BYTES);
        settle(status >= 200 && status < 400 ? { ok: true, status, body } : { ok: false, status, body });
      };
      response.on('error', (err) => settle({ ok: false, status: null, message: failureText(err, probe.host, probe.port) }));
      response.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= MAX_PROBE_BODY_BYTES) finish();
      });
      response.on('end', finish);
    });
    req.end();
    const scheme = probe.https ? 'https' : 'http';
    timer = setTimeout(() => settle({ ok: false, status: null, message: `${scheme}://${probe.host}:${probe.port}${probe.path}: no answer within ${probe.timeoutMs / 1000} s` }), probe.timeoutMs);
  });
  return { done, abort: () => settle(ABORTED) };
}

const KUBELET_DEFAULTS = new Set(['user-agent', 'accept', 'connection']);
