// The app's kubelet probes, pointed at the sidecar's status port (Istio's rewriteAppHTTPProbers). The kubelet
// probes from the node, outside the mesh: redirected to the inbound listener like any peer, an httpGet, tcpSocket or
// grpc probe is refused under STRICT mTLS. Rewritten, it asks the status port (excluded from interception), which runs
// the original probe against the app from inside the pod. Pure: containers in, new containers out.
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import { parseAppProbes } from '../admin/app-probes.js';
import { STATUS_PORT } from './pod-spec.js';

/** One original probe handler, as the sidecar runs it: `port` is always a number (named ports resolved here). */
export type AppProbe =
  | { readonly httpGet: { path: string; port: number; scheme?: string; host?: string; httpHeaders?: { name: string; value: string }[] }; readonly timeoutSeconds: number }
  | { readonly tcpSocket: { port: number; host?: string }; readonly timeoutSeconds: number }
  | { readonly grpc: { port: number; service?: string }; readonly timeoutSeconds: number };

export interface RewrittenProbes {
  readonly containers: IContainer[];
  /** Key: the status port path the kubelet now asks; value: the probe it stands for. */
  readonly probes: Record<string, AppProbe>;
  /** Probes left as they were although the kubelet's request will be intercepted, with the reason. */
  readonly warnings: string[];
}

const KINDS = [
  ['livenessProbe', 'livez'],
  ['readinessProbe', 'readyz'],
  ['startupProbe', 'startupz'],
] as const;

/** Kubernetes' default probe timeout. */
const DEFAULT_TIMEOUT_SECONDS = 1;

export const appProbePath = (container: string, suffix: string): string => `/app-health/${container}/${suffix}`;

/**
 * Rewrites each app container's httpGet, tcpSocket and grpc liveness, readiness and startup probe to an httpGet of the
 * status port. Left alone: exec probes (they run in the app container, not intercepted), probes of a port in
 * `excludedPorts` (not intercepted) or of the status port itself (already rewritten), and probes whose named port
 * the container does not declare or that the sidecar would refuse to run (with a warning).
 */
export function rewriteAppProbes(containers: readonly IContainer[], excludedPorts: readonly number[]): RewrittenProbes {
  const probes: Record<string, AppProbe> = {};
  const warnings: string[] = [];
  const skip = new Set([...excludedPorts, STATUS_PORT]);
  const rewritten = containers.map((c) => {
    let out: IContainer | undefined;
    for (const [field, suffix] of KINDS) {
      const probe = c[field];
      const handler = probe?.httpGet ?? probe?.tcpSocket ?? probe?.grpc;
      if (probe === undefined || handler === undefined) continue;
      const port = typeof handler.port === 'number' ? handler.port : c.ports?.find((p) => p.name === handler.port)?.containerPort;
      if (port === undefined) {
        warnings.push(
          `containers[${c.name}].${field}: port "${String(handler.port)}" is not a named port of the container: probe not rewritten to the sidecar's status port (the kubelet's request goes to the inbound listener and is refused under STRICT mTLS)`,
        );
        continue;
      }
      if (skip.has(port)) continue;
      const path = appProbePath(c.name, suffix);
      const entry = original(probe, port);
      // Checked with the sidecar's own parser (and its limits on the whole set): one probe it refuses would stop the
      // sidecar from starting at all.
      const problem = sidecarRefuses({ ...probes, [path]: entry });
      if (problem !== null) {
        warnings.push(`containers[${c.name}].${field}: probe not rewritten to the sidecar's status port, which could not run it: ${problem}`);
        continue;
      }
      probes[path] = entry;
      const { httpGet: _h, tcpSocket: _t, grpc: _g, ...rest } = probe;
      const next: IProbe = { httpGet: { path, port: STATUS_PORT, scheme: 'HTTP' }, ...rest };
      out = { ...(out ?? c), [field]: next };
    }
    return out ?? c;
  });
  return { containers: rewritten, probes, warnings };
}

function sidecarRefuses(probes: Record<string, AppProbe>): string | null {
  try {
    parseAppProbes(JSON.stringify(probes));
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

function original(probe: IProbe, port: number): AppProbe {
  const timeoutSeconds = probe.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS;
  const h = probe.httpGet;
  if (h !== undefined) {
    return {
      // The kubelet asks for "/" when the path is empty, and puts a "/" before a path that lacks one.
      httpGet: {
        path: h.path === undefined || h.path === '' ? '/' : h.path.startsWith('/') ? h.path : `/${h.path}`,
        port,
        ...(h.scheme === undefined ? {} : { scheme: h.scheme }),
        ...(h.host === undefined ? {} : { host: h.host }),
        ...(h.httpHeaders === undefined || h.httpHeaders.length === 0 ? {} : { httpHeaders: h.httpHeaders.map(({ name, value }) => ({ name, value })) }),
      },
      timeoutSeconds,
    };
  }
  const g = probe.grpc;
  if (g !== undefined) return { grpc: { port, ...(g.service === undefined || g.service === '' ? {} : { service: g.service }) }, timeoutSeconds };
  const t = probe.tcpSocket!;
  return { tcpSocket: { port, ...(t.host === undefined ? {} : { host: t.host }) }, timeoutSeconds };
}
