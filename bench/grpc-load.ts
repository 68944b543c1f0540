// gRPC load for the benchmark, against the backend's echo service (bench/backend-server.ts). Unary calls go
// through h2load with a gRPC-framed body (the message bytes are opaque: nothing on the path decodes protobuf).
// Streaming is our own client: a few bidirectional streams on one connection, each keeping a window of
// messages in flight and sending one more for each echoed back, for a bounded time; the figure is messages/s.
import * as http2 from 'node:http2';
import { writeFileSync } from 'node:fs';
import type { LoadResult } from './load.js';

export const GRPC_UNARY_PATH = '/bench.Echo/Unary';
export const GRPC_STREAM_PATH = '/bench.Echo/Stream';
/** Message payload size, bytes (a small RPC). */
export const GRPC_MESSAGE_BYTES = 100;

/** One length-prefixed gRPC message (uncompressed) of `size` payload bytes. */
export function grpcFrame(size: number): Buffer {
  const frame = Buffer.alloc(5 + size, 0x61);
  frame[0] = 0;
  frame.writeUInt32BE(size, 1);
  return frame;
}

/** Writes the unary request body h2load sends with `-d` (POST) and returns the extra h2load arguments. */
export function grpcUnaryH2loadArgs(dataFile: string): string[] {
  writeFileSync(dataFile, grpcFrame(GRPC_MESSAGE_BYTES));
  return ['-d', dataFile, '-H', 'content-type: application/grpc', '-H', 'te: trailers'];
}

export interface GrpcStreamLoad {
  port: number;
  authority?: string;
  /** Concurrent bidirectional streams on one connection. */
  streams: number;
  /** Messages in flight per stream. */
  window: number;
  durationSec: number;
}

/**
 * Messages/s echoed over `streams` bidirectional gRPC streams. Every message is the same size, so the echoed
 * bytes say how many came back without parsing frames; each stream then sends as many as it got back. The
 * streams end (END_STREAM) at the deadline; a stream that fails or ends without grpc-status 0 counts an error.
 */
export function runGrpcStream(load: GrpcStreamLoad): Promise<LoadResult> {
  const frame = grpcFrame(GRPC_MESSAGE_BYTES);
  const frameLen = frame.length;
  const batch = Buffer.concat(Array.from({ length: load.window }, () => frame));
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${load.port}`);
    let received = 0;
    let errors = 0;
    let open = load.streams;
    let stopped = false;
    let startedAt = 0;
    let endedAt = 0;
    const finish = (timedOut = false): void => {
      clearTimeout(guard);
      // At the guard, close() would wait for the stuck streams: destroy them.
      if (timedOut) session.destroy();
      else session.close();
      const sec = Math.max((endedAt || performance.now()) - startedAt, 1) / 1000;
      resolve({ rps: received / sec, p50: NaN, p99: NaN, mbps: (received * frameLen) / sec / 1e6, requests: received, errors, non2xx: 0, tool: 'grpc-stream (node)' });
    };
    // Bounded: the run ends at its deadline even if a stream never closes.
    const guard = setTimeout(() => {
      errors++;
      finish(true);
    }, (load.durationSec + 15) * 1000);
    session.on('error', (err) => {
      clearTimeout(guard);
      reject(err);
    });
    session.on('connect', () => {
      startedAt = performance.now();
      setTimeout(() => {
        stopped = true;
        endedAt = performance.now();
      }, load.durationSec * 1000);
      for (let i = 0; i < load.streams; i++) {
        const headers: http2.OutgoingHttpHeaders = {
          ':method': 'POST',
          ':path': GRPC_STREAM_PATH,
          'content-type': 'application/grpc',
          te: 'trailers',
        };
        if (load.authority) headers[':authority'] = load.authority;
        const stream = session.request(headers);
        let pendingBytes = 0;
        let grpcStatus: string | undefined;
        stream.on('trailers', (trailers) => {
          grpcStatus = trailers['grpc-status'] as string | undefined;
        });
        stream.on('data', (chunk: Buffer) => {
          pendingBytes += chunk.length;
          const n = Math.floor(pendingBytes / frameLen);
          if (n === 0) return;
          pendingBytes -= n * frameLen;
          if (!stopped) received += n;
          if (stopped) {
            if (stream.writable && !stream.writableEnded) stream.end();
            return;
          }
          // Send as many as came back (the batch holds one window's worth).
          stream.write(n >= load.window ? batch : batch.subarray(0, n * frameLen));
        });
        // The server ended its side (an error reply, or trailers after our END_STREAM): end ours so 'close' comes.
        stream.on('end', () => {
          if (!stream.writableEnded) stream.end();
        });
        // 'close' follows and counts the failure (no grpc-status 0).
        stream.on('error', () => {});
        stream.on('close', () => {
          if (grpcStatus !== '0') errors++;
          if (--open === 0) finish();
        });
        stream.write(batch);
      }
    });
  });
}
