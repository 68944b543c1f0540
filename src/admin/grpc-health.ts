// The kubelet's `grpc` probe, as the status port runs it: one grpc.health.v1.Health/Check on a fresh plaintext
// channel to the app, SERVING or not. Loaded only when a gRPC probe runs (grpc-js is ~2.7 MiB a proxy without one
// does not need).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../config/protos.js';

export interface HealthCheck {
  /** SERVING; else the status the app reported, or why the call failed. */
  readonly done: Promise<{ readonly serving: true } | { readonly serving: false; readonly reason: string }>;
  cancel(): void;
}

interface HealthClient extends grpc.Client {
  Check(
    request: { service: string },
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, response?: { status?: string }) => void,
  ): grpc.ClientUnaryCall;
}

let healthClient: grpc.ServiceClientConstructor | undefined;

function clientConstructor(): grpc.ServiceClientConstructor {
  if (healthClient === undefined) {
    const def = protoLoader.loadSync('grpc/health/v1/health.proto', { includeDirs: [PROTO_DIR], enums: String, defaults: true });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    healthClient = (grpc.loadPackageDefinition(def) as any).grpc.health.v1.Health as grpc.ServiceClientConstructor;
  }
  return healthClient;
}

/** What the kubelet's own gRPC prober allows a health answer to be. */
const MAX_RESPONSE_BYTES = 4096;

export function checkHealth(host: string, port: number, service: string, timeoutMs: number): HealthCheck {
  const Health = clientConstructor();
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const client = new Health(target, grpc.credentials.createInsecure(), {
    // Straight to the app: an http_proxy/grpc_proxy in the sidecar's environment is not for this.
    'grpc.enable_http_proxy': 0,
    'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
  }) as unknown as HealthClient;
  let call: grpc.ClientUnaryCall | null = null;
  const done = new Promise<{ serving: true } | { serving: false; reason: string }>((resolve) => {
    call = client.Check({ service }, { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => {
      client.close();
      if (err !== null) resolve({ serving: false, reason: `${target}: gRPC ${grpc.status[err.code] ?? err.code}: ${err.details}` });
      else if (res?.status === 'SERVING') resolve({ serving: true });
      else resolve({ serving: false, reason: `${target}: health status ${res?.status ?? 'UNKNOWN'}${service === '' ? '' : ` for service "${service}"`}` });
    });
  });
  return {
    done,
    cancel: () => {
      call?.cancel();
      client.close();
    },
  };
}
