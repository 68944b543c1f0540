// A scripted ADS server for the client's protocol tests, written with @grpc/grpc-js in the test on purpose: it
// sends exactly the responses a test scripts (malformed ones included) and records every request the proxy
// makes, which a real control server (xds/server.ts) would neither allow nor expose.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../../src/config/protos.js';

export interface WireRequest {
  version_info?: string;
  node?: { id?: string; metadata?: { fields?: Record<string, { stringValue?: string; numberValue?: number }> } };
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
  /** Which stream (1, 2, ...) of this server carried it. */
  stream: number;
}

export interface ScriptedAds {
  readonly port: number;
  readonly address: string;
  /** Every request received, in order, across streams. */
  readonly requests: WireRequest[];
  /** Streams opened so far. */
  streams(): number;
  /** The first request (already received or yet to come) that satisfies `pred`. */
  waitFor(pred: (r: WireRequest) => boolean, timeoutMs?: number): Promise<WireRequest>;
  /** Send a DiscoveryResponse on the newest open stream. */
  send(typeUrl: string, version: string, nonce: string, resources: readonly { typeUrl: string; value: Uint8Array }[]): void;
  /** Kill every stream and the listening socket (as a crashed control server would). */
  close(): Promise<void>;
}

let service: grpc.ServiceDefinition | undefined;
function adsService(): grpc.ServiceDefinition {
  if (service === undefined) {
    const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', { keepCase: true, includeDirs: [PROTO_DIR], longs: String, enums: String, defaults: false, oneofs: true });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    service = (grpc.loadPackageDefinition(def) as any).envoy.service.discovery.v3.AggregatedDiscoveryService.service;
  }
  return service!;
}

/** Listens on 127.0.0.1:`port` (0: any free port). */
export async function startScriptedAds(port = 0): Promise<ScriptedAds> {
  const server = new grpc.Server();
  const requests: WireRequest[] = [];
  const calls: grpc.ServerDuplexStream<unknown, unknown>[] = [];
  const waiters: { pred: (r: WireRequest) => boolean; resolve: (r: WireRequest) => void }[] = [];
  server.addService(adsService(), {
    StreamAggregatedResources(call: grpc.ServerDuplexStream<Omit<WireRequest, 'stream'>, unknown>) {
      calls.push(call);
      const streamNo = calls.length;
      call.on('data', (msg: Omit<WireRequest, 'stream'>) => {
        const r: WireRequest = { ...msg, stream: streamNo };
        requests.push(r);
        for (let i = waiters.length - 1; i >= 0; i--) {
          if (waiters[i]!.pred(r)) waiters.splice(i, 1)[0]!.resolve(r);
        }
      });
      call.on('error', () => {});
      call.on('end', () => call.end());
    },
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port: bound,
    address: `127.0.0.1:${bound}`,
    requests,
    streams: () => calls.length,
    waitFor(pred, timeoutMs = 5_000) {
      const found = requests.find(pred);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const waiter = {
          pred,
          resolve: (r: WireRequest) => {
            clearTimeout(timer);
            resolve(r);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(new Error(`no matching request; got: ${JSON.stringify(requests.map(({ node: _n, ...r }) => r))}`));
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    send(typeUrl, version, nonce, resources) {
      const call = calls[calls.length - 1];
      if (call === undefined) throw new Error('no stream open');
      call.write({ version_info: version, type_url: typeUrl, nonce, resources: resources.map((r) => ({ type_url: r.typeUrl, value: Buffer.from(r.value) })) });
    },
    close() {
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}
