// The kubelet's `grpc` probe, as the status port runs it: one grpc.health.v1.Health/Check over a fresh plaintext
// HTTP/2 connection to the app, SERVING or not. Written on node:http2 rather than grpc-js: a grpc-js channel closed
// while its connection waits for the server's HTTP/2 SETTINGS (an app that accepts and hangs) keeps that socket
// open for good, one file descriptor per probe; here the connection is destroyed with the check, however it ends.
import { connect, constants } from 'node:http2';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { PROTO_DIR } from '../config/protos.js';

export interface HealthCheck {
  /** SERVING; else the status the app reported, or why the call failed. */
  readonly done: Promise<{ readonly serving: true } | { readonly serving: false; readonly reason: string }>;
  cancel(): void;
}

/** What the kubelet's own gRPC prober allows a health answer to be. */
const MAX_RESPONSE_BYTES = 4096;
/** grpc-status codes by number (google.rpc.Code). */
const STATUS_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
  'UNAUTHENTICATED',
];

type Result = { serving: true } | { serving: false; reason: string };

interface HealthTypes {
  readonly request: protobuf.Type;
  readonly response: protobuf.Type;
}
let types: HealthTypes | undefined;

/** The messages of our proto/grpc/health/v1/health.proto, loaded at the first gRPC probe. */
function healthTypes(): HealthTypes {
  if (types === undefined) {
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => join(PROTO_DIR, target);
    root.loadSync('grpc/health/v1/health.proto');
    types = { request: root.lookupType('grpc.health.v1.HealthCheckRequest'), response: root.lookupType('grpc.health.v1.HealthCheckResponse') };
  }
  return types;
}

/** HealthCheckRequest in a gRPC message frame (uncompressed). */
function requestFrame(service: string): Buffer {
  const message = healthTypes().request.encode({ service }).finish();
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  frame.set(message, 5);
  return frame;
}

/** The ServingStatus name of a HealthCheckResponse frame (absent = UNKNOWN), or null if it does not decode. */
function servingStatus(frame: Buffer): string | null {
  if (frame.length < 5 || frame[0] !== 0) return null;
  const length = frame.readUInt32BE(1);
  if (frame.length < 5 + length) return null;
  try {
    const response = healthTypes().response;
    const decoded = response.toObject(response.decode(frame.subarray(5, 5 + length)), { enums: String, defaults: true }) as { status: string };
    return decoded.status;
  } catch {
    return null;
  }
}

/** grpc-message is percent-encoded; a malformed one is shown as sent rather than thrown (it would end the process). */
function percentDecoded(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

export function checkHealth(host: string, port: number, service: string, timeoutMs: number): HealthCheck {
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  let finish: (r: Result) => void = () => {};
  const done = new Promise<Result>((resolve) => {
    const session = connect(`http://${target}`);
    const timer = setTimeout(() => finish({ serving: false, reason: `${target}: gRPC DEADLINE_EXCEEDED: no answer within ${timeoutMs / 1000} s` }), timeoutMs);
    finish = (r) => {
      clearTimeout(timer);
      session.destroy();
      finish = () => {};
      resolve(r);
    };
    const unavailable = (err: Error): void => finish({ serving: false, reason: `${target}: gRPC UNAVAILABLE: ${err.message}` });
    session.on('error', unavailable);
    const req = session.request({
      [constants.HTTP2_HEADER_METHOD]: 'POST',
      [constants.HTTP2_HEADER_PATH]: '/grpc.health.v1.Health/Check',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': `${timeoutMs}m`,
    });
    req.on('error', unavailable);
    let status: string | undefined;
    let message = '';
    const statusOf = (headers: Record<string, unknown>): void => {
      if (headers['grpc-status'] !== undefined) status = String(headers['grpc-status']);
      if (typeof headers['grpc-message'] === 'string') message = percentDecoded(headers['grpc-message']);
    };
    req.on('response', statusOf);
    req.on('trailers', statusOf);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_RESPONSE_BYTES) return finish({ serving: false, reason: `${target}: gRPC RESOURCE_EXHAUSTED: answer over ${MAX_RESPONSE_BYTES} bytes` });
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (status !== '0') {
        const code = status === undefined ? 'UNKNOWN' : (STATUS_NAMES[Number(status)] ?? status);
        return finish({ serving: false, reason: `${target}: gRPC ${code}: ${status === undefined ? 'no grpc-status in the answer' : message}` });
      }
      const serving = servingStatus(Buffer.concat(chunks));
      if (serving === 'SERVING') return finish({ serving: true });
      finish({ serving: false, reason: `${target}: health status ${serving ?? 'unreadable'}${service === '' ? '' : ` for service "${service}"`}` });
    });
    req.end(requestFrame(service));
  });
  return { done, cancel: () => finish({ serving: false, reason: `${target}: gRPC CANCELLED` }) };
}
