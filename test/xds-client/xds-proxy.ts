// A real proxy fed only over ADS, for the xDS client tests: Proxy + AdsClient wired as `pillion proxy --xds` does.
import { pino } from 'pino';
import { Proxy } from '../../src/proxy.js';
import { AdsClient, type AdsClientOptions } from '../../src/xds/ads-client.js';
import { NODE } from './fixtures.js';

export interface XdsProxy {
  proxy: Proxy;
  ads: AdsClient;
  close(): Promise<void>;
}

export async function startXdsProxy(
  servers: string[],
  opts: Pick<AdsClientOptions, 'backoff' | 'initialFetchTimeoutMs'> = {},
): Promise<XdsProxy> {
  const proxy = new Proxy({ adminPort: 0, logger: pino({ level: 'silent' }), accessLog: 'off', processMetrics: false, drainTimeoutMs: 1_000 });
  const ads = new AdsClient({ servers, node: NODE, target: proxy, ...opts });
  proxy.setReadinessGate(() => ads.isWarm());
  await proxy.startAdmin();
  ads.start();
  return {
    proxy,
    ads,
    async close() {
      await ads.stop();
      await proxy.stop();
    },
  };
}
