// An in-process proxy from a mesh config with a workload identity (see startProxy's `identity`), and a reader of
// one metric sample, for the mTLS tests.
import type { Proxy } from '../../src/proxy.js';
import type { IssuedCert, TestCa } from './test-ca.js';
import { setIdentity, startProxy, type RunningProxy, type StartProxyOptions } from '../helpers/proxy.js';

export { setIdentity };

export interface MeshProxyOptions {
  readonly service: string;
  readonly appPort?: number;
  /** The workload certificate and trust bundle; omitted = a proxy without identity (plaintext). */
  readonly identity?: { readonly cert: IssuedCert; readonly caPem: string };
  readonly accessLog?: string;
}

export function startMeshProxy(meshYaml: string, opts: MeshProxyOptions): Promise<RunningProxy> {
  return startProxy(meshYaml, {
    service: opts.service,
    ...(opts.appPort === undefined ? {} : { appPort: opts.appPort }),
    ...(opts.identity === undefined ? {} : { identity: opts.identity }),
    ...(opts.accessLog === undefined ? {} : { accessLog: opts.accessLog }),
    proxyOptions: { drainTimeoutMs: 1_000 },
  });
}

/** The value of one sample of a metric in the proxy's registry (0 when absent). */
export async function metricValue(proxy: Proxy, name: string, labels: Record<string, string>): Promise<number> {
  const metric = proxy.registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const data = await metric.get();
  const sample = data.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return sample?.value ?? 0;
}

export const TRUST_DOMAIN_SA = 'spiffe://cluster.local/ns/default/sa';

/**
 * Two sidecars in a row over mTLS STRICT: `backend`'s (inbound in front of the app on `appPort`) and `frontend`'s,
 * whose outbound sends Host `backend:8080` to it. `server` adds options to the server sidecar (its HCM fields).
 */
export async function startSidecarPair(
  ca: TestCa,
  appPort: number,
  server: Partial<StartProxyOptions> = {},
): Promise<{ server: RunningProxy; client: RunningProxy }> {
  const id = (sa: string) => ({ cert: ca.issue({ spiffeId: `${TRUST_DOMAIN_SA}/${sa}`, cn: sa }), caPem: ca.caPem });
  const serverProxy = await startProxy(
    `
services:
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`,
    { ...server, service: 'backend', appPort, identity: id('backend') },
  );
  const client = await startProxy(
    `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${serverProxy.port('inbound')} }]
`,
    { service: 'frontend', identity: id('frontend') },
  );
  return { server: serverProxy, client };
}
