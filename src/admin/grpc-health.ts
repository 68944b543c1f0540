// The kubelet's `grpc` probe, as the status port runs it: one grpc.health.v1.Health/Check over a fresh plaintext
// HTTP/2 connection to the app, SERVING or not. Written on node:http2 rather than grpc-js: a grpc-js channel closed
// while its connection waits for the server's HTTP/2 SETTINGS (an app that accepts and hangs) keeps that socket
// open for good, one file descriptor per probe; here the connection is destroyed with the check, however it ends.
import { connect, constants } from 'node:http2';

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
/** HealthCheckResponse.ServingStatus by number. */
const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

type Result = { serving: true } | { serving: false; reason: string };

/** HealthCheckRequest { string service = 1; } in a gRPC message frame (uncompressed). */
function requestFrame(service: string): Buffer {
  const name = Buffer.from(service, 'utf8');
  // The service is at most 256 bytes (app-probes.ts): its length fits a two-byte varint.
  const len = name.length < 0x80 ? Buffer.from([name.length]) : Buffer.from([(name.length & 0x7f) | 0x80, name.length >> 7]);
  // Written even when empty (valid proto3, read as ""): a server decoding without defaults would see no service.
  const message = Buffer.concat([Buffer.from([0x0a]), len, name]);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** The ServingStatus of a HealthCheckResponse frame (field 1, varint; absent = UNKNOWN), or null if malformed. */
function servingStatus(frame: Buffer): string | null {
  if (frame.length < 5 || frame[0] !== 0) return null;
  const message = frame.subarray(5, 5 + frame.readUInt32BE(1));
  let status = 0;
  for (let i = 0; i < message.length; ) {
    const tag = message[i++]!;
    if (tag === 0x08) {
      status = message[i++] ?? 0;
    } else if ((tag & 7) === 0) {
      while (i < message.length && (message[i]! & 0x80) !== 0) i++;
      i++;
    } else if ((tag & 7) === 2) {
      const n = message[i++] ?? 0;
      i += n;
    } else {
      return null;
    }
  }
  return SERVING_STATUS[status] ?? String(status);
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
