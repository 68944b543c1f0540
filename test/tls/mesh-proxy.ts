// An in-process proxy from a mesh config with a workload identity (see startProxy's `identity`), and a reader of
// one metric sample, for the mTLS tests.
import type { Proxy } from '../../src/proxy.js';
import type { IssuedCert } from './test-ca.js';
import { setIdentity, startProxy, type RunningProxy } from '../helpers/proxy.js';

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
