// HPACK micro-benchmark: ns per header block for an h2load-style request head and a gRPC unary response (head +
// trailers), decode and encode, steady state (the dynamic tables warm, as on a long-lived connection) and cold
// (a fresh decoder reading Huffman literals, as on a connection's first request). Numbers, no assertions.
// CLI: npx tsc -p tsconfig.json && node dist/bench/hpack-micro.js [--iterations 200000]
import { newHeaderMap } from '../src/http/headers.js';
import { DecodedHead, HpackDecoder, HpackEncoder } from '../src/h2/hpack.js';

const argIndex = process.argv.indexOf('--iterations');
const ITERATIONS = argIndex > 0 ? Number(process.argv[argIndex + 1]) : 200_000;
const ROUNDS = 5;

function requestHeaders(): ReturnType<typeof newHeaderMap> {
  const h = newHeaderMap();
  h['user-agent'] = 'h2load nghttp2/1.59.0';
  h.accept = '*/*';
  h['accept-encoding'] = 'gzip, deflate';
  return h;
}

function grpcHead(): ReturnType<typeof newHeaderMap> {
  const h = newHeaderMap();
  h['content-type'] = 'application/grpc';
  h['grpc-accept-encoding'] = 'identity,deflate,gzip';
  h['grpc-encoding'] = 'identity';
  return h;
}

function grpcTrailers(): ReturnType<typeof newHeaderMap> {
  const h = newHeaderMap();
  h['grpc-status'] = '0';
  h['grpc-message'] = '';
  return h;
}

/** Median over rounds of ns per call of `fn`. */
function measure(fn: () => void): number {
  for (let i = 0; i < ITERATIONS / 4; i++) fn();
  const samples: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) fn();
    samples.push(Number(process.hrtime.bigint() - t0) / ITERATIONS);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(ROUNDS / 2)]!;
}

function report(name: string, ns: number, bytes: number): void {
  console.log(`${name.padEnd(58)} ${ns.toFixed(0).padStart(6)} ns/block  (${bytes} bytes)`);
}

const dst = Buffer.alloc(16384);
let sink = 0;

// Request head, steady state: the encoder's second block onward (all indexed but :path).
{
  const enc = new HpackEncoder();
  const h = requestHeaders();
  enc.encodeRequest(dst, 0, 'GET', 'http', '127.0.0.1:10000', '/index.html?x=1', h);
  const n = enc.encodeRequest(dst, 0, 'GET', 'http', '127.0.0.1:10000', '/index.html?x=1', h);
  report(
    'encode request head (h2load, warm table)',
    measure(() => {
      sink += enc.encodeRequest(dst, 0, 'GET', 'http', '127.0.0.1:10000', '/index.html?x=1', h);
    }),
    n,
  );
  const dec = new HpackDecoder(4096);
  const first = Buffer.alloc(512);
  const e0 = new HpackEncoder();
  const n0 = e0.encodeRequest(first, 0, 'GET', 'http', '127.0.0.1:10000', '/index.html?x=1', h);
  dec.decode(first, 0, n0, 1 << 16, 100, new DecodedHead());
  const block = Buffer.alloc(512);
  const n1 = e0.encodeRequest(block, 0, 'GET', 'http', '127.0.0.1:10000', '/index.html?x=1', h);
  report(
    'decode request head (h2load, warm table)',
    measure(() => {
      const out = new DecodedHead();
      sink += dec.decode(block, 0, n1, 1 << 16, 100, out) + out.count;
    }),
    n1,
  );
  // Cold: a fresh decoder and a first block with Huffman literals (nghttp2 style).
  const ch = new HpackEncoder();
  ch.huffman = true;
  const cold = Buffer.alloc(512);
  const nc = ch.encodeRequest(cold, 0, 'GET', 'http', '127.0.0.1:10000', '/index.html?x=1', h);
  report(
    'decode request head (first block, Huffman, new decoder)',
    measure(() => {
      const d = new HpackDecoder(4096);
      const out = new DecodedHead();
      sink += d.decode(cold, 0, nc, 1 << 16, 100, out) + out.count;
    }),
    nc,
  );
  report(
    'encode request head (first block, Huffman, new encoder)',
    measure(() => {
      const e = new HpackEncoder();
      e.huffman = true;
      sink += e.encodeRequest(dst, 0, 'GET', 'http', '127.0.0.1:10000', '/index.html?x=1', h);
    }),
    nc,
  );
}

// gRPC unary response: head + trailers, steady state.
{
  const enc = new HpackEncoder();
  const head = grpcHead();
  const trailers = grpcTrailers();
  enc.encodeResponse(dst, 0, 200, head);
  enc.encodeTrailers(dst, 0, trailers);
  const hb = Buffer.alloc(256);
  const tb = Buffer.alloc(256);
  const nh = enc.encodeResponse(hb, 0, 200, head);
  const nt = enc.encodeTrailers(tb, 0, trailers);
  report(
    'encode gRPC response head + trailers (warm table)',
    measure(() => {
      sink += enc.encodeResponse(dst, 0, 200, head) + enc.encodeTrailers(dst, 512, trailers);
    }),
    nh + nt,
  );
  const dec = new HpackDecoder(4096);
  const warm = new HpackEncoder();
  const b0 = Buffer.alloc(256);
  let n = warm.encodeResponse(b0, 0, 200, head);
  dec.decode(b0, 0, n, 1 << 16, 100, new DecodedHead());
  n = warm.encodeTrailers(b0, 0, trailers);
  dec.decode(b0, 0, n, 1 << 16, 100, new DecodedHead());
  const nh2 = warm.encodeResponse(hb, 0, 200, head);
  const nt2 = warm.encodeTrailers(tb, 0, trailers);
  report(
    'decode gRPC response head + trailers (warm table)',
    measure(() => {
      const a = new DecodedHead();
      const b = new DecodedHead();
      sink += dec.decode(hb, 0, nh2, 1 << 16, 100, a) + dec.decode(tb, 0, nt2, 1 << 16, 100, b);
    }),
    nh2 + nt2,
  );
}

if (sink === 0.5) console.log(sink); // keeps the work observable to the optimizer
