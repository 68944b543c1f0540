// The ADS gRPC service (envoy.service.discovery.v3.AggregatedDiscoveryService) loaded once from our proto/, for
// the proxy's client and the control server alike. keepCase: messages use the .proto's snake_case field names.
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../config/protos.js';

export type AdsServiceClient = grpc.ServiceClientConstructor;

let loaded: AdsServiceClient | undefined;

export function adsService(): AdsServiceClient {
  if (loaded === undefined) {
    const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
      keepCase: true,
      includeDirs: [PROTO_DIR],
      longs: Number,
      enums: String,
      defaults: false,
      oneofs: true,
    });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    loaded = (grpc.loadPackageDefinition(def) as any).envoy.service.discovery.v3.AggregatedDiscoveryService as AdsServiceClient;
  }
  return loaded;
}
