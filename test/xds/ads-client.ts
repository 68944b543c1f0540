// A raw ADS client for tests: it stands in for a proxy peer whose exact requests (nonces, NACKs) the test controls.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../../src/config/protos.js';
import { nodeToXds, type NodeInfo } from '../../xds/compiler.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loaded = any;

export interface RawResponse {
  version_info: string;
  type_url: string;
  nonce: string;
  resources: { type_url: string; value: Buffer }[];
}

let Service: Loaded;
function adsClientClass(): Loaded {
  if (Service) return Service;
  const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
    keepCase: true,
    includeDirs: [PROTO_DIR],
    longs: Number,
    enums: String,
    defaults: true,
    arrays: true,
  });
  Service = (grpc.loadPackageDefinition(def) as Loaded).envoy.service.discovery.v3.AggregatedDiscoveryService;
  return Service;
}

export class RawAdsClient {
  private readonly client: Loaded;
  private readonly call: Loaded;
  private readonly queue: RawResponse[] = [];
  private waiter: ((r: RawResponse) => void) | undefined;
  private sentNode = false;
  ended = false;
  status: grpc.StatusObject | undefined;

  constructor(
    port: number,
    /** A NodeInfo (sent as Pillion's proxy would), a raw xDS Node, or null to send none. */
    private readonly node: NodeInfo | Record<string, unknown> | null,
  ) {
    const Ads = adsClientClass();
    this.client = new Ads(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    this.call = this.client.StreamAggregatedResources();
    this.call.on('data', (r: RawResponse) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(r);
      } else this.queue.push(r);
    });
    this.call.on('status', (s: grpc.StatusObject) => (this.status = s));
    this.call.on('error', () => undefined);
    this.call.on('end', () => (this.ended = true));
  }

  /** Send a DiscoveryRequest; the first one carries the node, as the xDS spec asks. */
  send(req: { type_url: string; resource_names?: string[]; version_info?: string; response_nonce?: string; error_detail?: { code: number; message: string } }): void {
    const raw = this.node;
    const node = this.sentNode || raw === null ? undefined : 'service' in raw ? nodeToXds(raw as NodeInfo) : raw;
    this.sentNode = true;
    this.call.write({ ...req, ...(node ? { node } : {}) });
  }

  /** ACK a response (same names as subscribed). */
  ack(r: RawResponse, names: string[] = []): void {
    this.send({ type_url: r.type_url, resource_names: names, version_info: r.version_info, response_nonce: r.nonce });
  }

  next(timeoutMs = 3000): Promise<RawResponse> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`no DiscoveryResponse within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
    });
  }

  /** Resolves with whatever arrives within `ms` (the test then asserts it is nothing). */
  async collect(ms: number): Promise<RawResponse[]> {
    await new Promise((r) => setTimeout(r, ms));
    return this.queue.splice(0);
  }

  /** Stop reading responses (a client stuck on something else): they pile up on the server's side. */
  pause(): void {
    this.call.pause();
  }

  close(): void {
    this.call.end();
    this.client.close();
  }
}
