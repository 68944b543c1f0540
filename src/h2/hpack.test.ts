// HPACK codec: RFC 7541 Appendix C vectors, encoder -> decoder round trips across table size changes, hostile
// inputs, and interop with nghttp2 (node:http2) over real sockets in both directions.
import { describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import { newHeaderMap, type HeaderMap } from '../http/headers.js';
import { DecodedHead, HPACK_OK, HPACK_TOO_LARGE, HpackDecoder, HpackEncoder, HpackError } from './hpack.js';
import { huffmanDecode, huffmanEncode, huffmanLength } from './hpack-huffman.js';
import { F, frame, FrameReader, PREFACE, S, seeded, settings, SETTINGS_ACK, T } from '../../test/abuse/util.js';

type Pair = [string, string];

/** A decoded head as one ordered list: pseudo headers first (fixed order), then the HeaderMap's fields. */
function pairsOf(h: DecodedHead): Pair[] {
  const out: Pair[] = [];
  if (h.method !== '') out.push([':method', h.method]);
  if (h.scheme !== '') out.push([':scheme', h.scheme]);
  if (h.path !== '') out.push([':path', h.path]);
  if (h.authority !== '') out.push([':authority', h.authority]);
  if (h.status !== 0) out.push([':status', String(h.status)]);
  for (const name in h.headers) {
    const v = h.headers[name]!;
    for (const x of typeof v === 'string' ? [v] : v) out.push([name, x]);
  }
  return out;
}

function decodeHex(dec: HpackDecoder, hex: string, maxSize = 1 << 20, maxCount = 1000): DecodedHead {
  const b = Buffer.from(hex.replace(/\s+/g, ''), 'hex');
  const head = new DecodedHead();
  expect(dec.decode(b, 0, b.length, maxSize, maxCount, head)).toBe(HPACK_OK);
  return head;
}

const DATE1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const LOC = 'https://www.example.com';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';

interface Vector {
  hex: string;
  fields: Pair[];
  table: Pair[];
  size: number;
}

const C3: Vector[] = [
  {
    hex: '828684410f7777772e6578616d706c652e636f6d',
    fields: [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']],
    table: [[':authority', 'www.example.com']],
    size: 57,
  },
  {
    hex: '828684be58086e6f2d6361636865',
    fields: [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache']],
    table: [['cache-control', 'no-cache'], [':authority', 'www.example.com']],
    size: 110,
  },
  {
    hex: '828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565',
    fields: [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']],
    table: [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']],
    size: 164,
  },
];
const C4_HEX = [
  '828684418cf1e3c2e5f23a6ba0ab90f4ff',
  '828684be5886a8eb10649cbf',
  '828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf',
];
const C5: Vector[] = [
  {
    hex: '4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768747470733a2f2f7777772e6578616d706c652e636f6d',
    fields: [[':status', '302'], ['cache-control', 'private'], ['date', DATE1], ['location', LOC]],
    table: [['location', LOC], ['date', DATE1], ['cache-control', 'private'], [':status', '302']],
    size: 222,
  },
  {
    hex: '4803333037c1c0bf',
    fields: [[':status', '307'], ['cache-control', 'private'], ['date', DATE1], ['location', LOC]],
    table: [[':status', '307'], ['location', LOC], ['date', DATE1], ['cache-control', 'private']],
    size: 222,
  },
  {
    hex: '88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e3d31',
    fields: [[':status', '200'], ['cache-control', 'private'], ['date', DATE2], ['location', LOC], ['content-encoding', 'gzip'], ['set-cookie', COOKIE]],
    table: [['set-cookie', COOKIE], ['content-encoding', 'gzip'], ['date', DATE2]],
    size: 215,
  },
];
const C6_HEX = [
  '488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3',
  '4883640effc1c0bf',
  '88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007',
];

/** Pseudo headers of a response come first in pairsOf; sort the expectation the same way. */
function ordered(fields: Pair[]): Pair[] {
  const order = [':method', ':scheme', ':path', ':authority', ':status'];
  const pseudo = order.flatMap((n) => fields.filter((f) => f[0] === n));
  return [...pseudo, ...fields.filter((f) => !f[0].startsWith(':'))];
}

function runVectors(vectors: Vector[], hexes: string[], tableSize: number): void {
  const dec = new HpackDecoder(tableSize);
  vectors.forEach((v, i) => {
    const head = decodeHex(dec, hexes[i]!);
    expect(pairsOf(head), `block ${i + 1}`).toEqual(ordered(v.fields));
    expect(dec.dynamicEntries(), `table after block ${i + 1}`).toEqual(v.table);
    expect(dec.dynamicTableSize).toBe(v.size);
    expect(head.malformed).toBe('');
  });
}

describe('RFC 7541 Appendix C', () => {
  it('C.1 integers: 10 and 1337 with a 5-bit prefix, 42 at an octet boundary (via index fields)', () => {
    // 1337 as a size update needs a table at least that large: 001 11111 10011010 00001010.
    const dec = new HpackDecoder(4096);
    decodeHex(dec, '3f9a0a');
    expect(dec.dynamicTableSize).toBe(0);
    const enc = new HpackEncoder();
    enc.setPeerMaxTableSize(1337);
    const dst = Buffer.alloc(64);
    const end = enc.encodeTrailers(dst, 0, newHeaderMap());
    expect(dst.subarray(0, end).toString('hex')).toBe('3f9a0a');
  });

  it('C.2 literal representations', () => {
    const dec = new HpackDecoder(4096);
    let h = decodeHex(dec, '400a637573746f6d2d6b65790d637573746f6d2d686561646572');
    expect(pairsOf(h)).toEqual([['custom-key', 'custom-header']]);
    expect(dec.dynamicEntries()).toEqual([['custom-key', 'custom-header']]);
    expect(dec.dynamicTableSize).toBe(55);
    const d2 = new HpackDecoder(4096);
    h = decodeHex(d2, '040c2f73616d706c652f70617468');
    expect(h.path).toBe('/sample/path');
    expect(d2.dynamicTableSize).toBe(0);
    h = decodeHex(d2, '100870617373776f726406736563726574');
    expect(pairsOf(h)).toEqual([['password', 'secret']]);
    expect(d2.dynamicEntries()).toEqual([]);
    h = decodeHex(d2, '82');
    expect(h.method).toBe('GET');
    expect(d2.dynamicTableSize).toBe(0);
  });

  it('C.3 requests without Huffman', () => runVectors(C3, C3.map((v) => v.hex), 4096));
  it('C.4 requests with Huffman', () => runVectors(C3, C4_HEX, 4096));
  it('C.5 responses without Huffman, table of 256 (evictions)', () => {
    const dec = new HpackDecoder(4096);
    // The peer (encoder) works with 256: a decoder advertising 4096 follows the table size update.
    decodeHex(dec, '3f e1 01');
    runVectorsOn(dec, C5, C5.map((v) => v.hex));
  });
  it('C.6 responses with Huffman, table of 256 (evictions)', () => {
    runVectorsOn(new HpackDecoder(256), C5, C6_HEX);
  });

  it('Huffman encoder reproduces the C.4/C.6 strings and the decoder reads them back', () => {
    const cases: Array<[string, string]> = [
      ['www.example.com', 'f1e3c2e5f23a6ba0ab90f4ff'],
      ['no-cache', 'a8eb10649cbf'],
      ['custom-key', '25a849e95ba97d7f'],
      ['custom-value', '25a849e95bb8e8b4bf'],
      ['302', '6402'],
      ['private', 'aec3771a4b'],
      [DATE1, 'd07abe941054d444a8200595040b8166e082a62d1bff'],
      [LOC, '9d29ad171863c78f0b97c8e9ae82ae43d3'],
      [COOKIE, '94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007'],
    ];
    for (const [s, hex] of cases) {
      expect(huffmanLength(s)).toBe(hex.length / 2);
      const dst = Buffer.alloc(256);
      const end = huffmanEncode(s, dst, 0);
      expect(dst.subarray(0, end).toString('hex')).toBe(hex);
      const out = Buffer.alloc(512);
      const n = huffmanDecode(dst, 0, end, out);
      expect(out.toString('latin1', 0, n)).toBe(s);
    }
  });

  it('Huffman round trip of every byte value', () => {
    let s = '';
    for (let i = 0; i < 256; i++) s += String.fromCharCode(i);
    const dst = Buffer.alloc(2048);
    const end = huffmanEncode(s, dst, 0);
    expect(end).toBe(huffmanLength(s));
    const out = Buffer.alloc(4096);
    const n = huffmanDecode(dst, 0, end, out);
    expect(out.toString('latin1', 0, n)).toBe(s);
  });
});

function runVectorsOn(dec: HpackDecoder, vectors: Vector[], hexes: string[]): void {
  vectors.forEach((v, i) => {
    const head = decodeHex(dec, hexes[i]!);
    expect(pairsOf(head), `block ${i + 1}`).toEqual(ordered(v.fields));
    expect(dec.dynamicEntries(), `table after block ${i + 1}`).toEqual(v.table);
    expect(dec.dynamicTableSize).toBe(v.size);
  });
}

const NAMES = [
  'content-type', 'accept', 'user-agent', 'x-request-id', 'authorization', 'cookie', 'set-cookie', 'grpc-status',
  'grpc-message', 'x-custom-a', 'x-custom-b', 'date', 'etag', 'content-length', 'x-b3-traceid', 'traceparent',
  'accept-encoding', 'cache-control', 'x-envoy-attempt-count', 'x-pillion-peer-id', 'vary', 'server',
];
const VALUES = ['', 'gzip, deflate', 'application/grpc', 'text/plain', '0', '1', 'no-cache', 'abc', 'Bearer xyz'];

function randomValue(rnd: () => number): string {
  if (rnd() < 0.5) return VALUES[Math.floor(rnd() * VALUES.length)]!;
  const len = rnd() < 0.05 ? 300 + Math.floor(rnd() * 700) : 1 + Math.floor(rnd() * 40);
  let s = '';
  for (let i = 0; i < len; i++) {
    // Printable ASCII and latin1 (both round-trip as bytes); spaces only inside.
    const c = rnd() < 0.1 ? 0xa0 + Math.floor(rnd() * 0x60) : 0x21 + Math.floor(rnd() * 0x5e);
    s += i > 0 && i < len - 1 && rnd() < 0.05 ? ' ' : String.fromCharCode(c);
  }
  return s;
}

function randomHeaders(rnd: () => number, expect: Pair[]): HeaderMap {
  const h = newHeaderMap();
  const n = Math.floor(rnd() * 12);
  for (let i = 0; i < n; i++) {
    const name = rnd() < 0.8 ? NAMES[Math.floor(rnd() * NAMES.length)]! : `x-r${Math.floor(rnd() * 50)}`;
    if (h[name] !== undefined) continue;
    if (name !== 'cookie' && rnd() < 0.15) h[name] = [randomValue(rnd), randomValue(rnd)];
    else h[name] = randomValue(rnd);
  }
  for (const name in h) {
    const v = h[name]!;
    for (const x of typeof v === 'string' ? [v] : v) expect.push([name, x]);
  }
  return h;
}

describe('encoder -> decoder round trips', () => {
  it('2,000 random blocks across table size changes, Huffman on and off, short buffers retried', () => {
    const rnd = seeded(7541);
    const enc = new HpackEncoder();
    const dec = new HpackDecoder(4096);
    let dst = Buffer.alloc(64);
    let shortCalls = 0;
    for (let block = 0; block < 2000; block++) {
      if (rnd() < 0.03) enc.setPeerMaxTableSize([0, 64, 256, 1000, 4096, 65536][Math.floor(rnd() * 6)]!);
      if (rnd() < 0.02) enc.setPeerMaxTableSize(Math.floor(rnd() * 5000)); // two changes before one block
      enc.huffman = rnd() < 0.5;
      const expected: Pair[] = [];
      const kind = Math.floor(rnd() * 3);
      let method = '';
      let path = '';
      let authority = '';
      let scheme = '';
      let status = 0;
      if (kind === 0) {
        method = ['GET', 'POST', 'PUT', 'DELETE'][Math.floor(rnd() * 4)]!;
        scheme = rnd() < 0.5 ? 'http' : 'https';
        path = rnd() < 0.3 ? '/' : `/p/${Math.floor(rnd() * 1000)}`;
        authority = `svc-${Math.floor(rnd() * 5)}.local:8080`;
        expected.push([':method', method], [':scheme', scheme], [':path', path], [':authority', authority]);
      } else if (kind === 1) {
        status = [200, 204, 404, 500, 302, 503, 418][Math.floor(rnd() * 7)]!;
        expected.push([':status', String(status)]);
      }
      const headers = randomHeaders(rnd, expected);
      const encode = (): number =>
        kind === 0
          ? enc.encodeRequest(dst, 3, method, scheme, authority, path, headers)
          : kind === 1
            ? enc.encodeResponse(dst, 3, status, headers)
            : enc.encodeTrailers(dst, 3, headers);
      const before = enc.dynamicEntries();
      let end = encode();
      while (end === -1) {
        shortCalls++;
        expect(enc.dynamicEntries()).toEqual(before);
        dst = Buffer.alloc(dst.length * 2);
        end = encode();
      }
      const head = new DecodedHead();
      expect(dec.decode(dst, 3, end, 1 << 20, 1000, head)).toBe(HPACK_OK);
      expect(head.malformed).toBe('');
      expect(pairsOf(head), `block ${block}`).toEqual(expected);
      expect(dec.dynamicEntries()).toEqual(enc.dynamicEntries());
      expect(dec.dynamicTableSize).toBe(enc.dynamicTableSize);
    }
    expect(shortCalls).toBeGreaterThan(0);
  });

  it('a table shrunk to 0 and regrown before the next block: both size updates are sent, tables stay in sync', () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder(4096);
    const dst = Buffer.alloc(256);
    const h = newHeaderMap();
    h['x-a'] = 'one';
    let end = enc.encodeTrailers(dst, 0, h);
    dec.decode(dst, 0, end, 1 << 20, 100, new DecodedHead());
    expect(dec.dynamicEntries()).toEqual([['x-a', 'one']]);
    enc.setPeerMaxTableSize(0);
    enc.setPeerMaxTableSize(65536);
    end = enc.encodeTrailers(dst, 0, h);
    // 0 first (empties the peer's table), then 4096 (our ceiling), then the field again as a new entry.
    expect(dst.subarray(0, 4).toString('hex')).toBe('203fe11f');
    expect(dst[4]).toBe(0x40);
    dec.decode(dst, 0, end, 1 << 20, 100, new DecodedHead());
    expect(dec.dynamicEntries()).toEqual(enc.dynamicEntries());
    expect(dec.dynamicEntries()).toEqual([['x-a', 'one']]);
    enc.setPeerMaxTableSize(4096); // no change: no size update
    expect(enc.encodeTrailers(dst, 0, h)).toBe(1);
  });

  it('rings grow after wrapping (small table first, then 4096): both tables stay equal and entries are found', () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder(4096);
    const dst = Buffer.alloc(4096);
    const send = (h: HeaderMap): number => {
      const end = enc.encodeTrailers(dst, 0, h);
      const head = new DecodedHead();
      expect(dec.decode(dst, 0, end, 1 << 20, 1000, head)).toBe(HPACK_OK);
      expect(pairsOf(head)).toEqual(Object.entries(h));
      expect(dec.dynamicEntries()).toEqual(enc.dynamicEntries());
      return end;
    };
    enc.setPeerMaxTableSize(256);
    for (let i = 0; i < 37; i++) {
      const h = newHeaderMap();
      h[`x-w${i}`] = `v${i}`;
      send(h);
    }
    enc.setPeerMaxTableSize(4096);
    const all = newHeaderMap();
    for (let i = 0; i < 100; i++) all[`x-g${i}`] = `v${i}`;
    send(all);
    expect(enc.dynamicEntries().length).toBeGreaterThanOrEqual(100);
    // The same 100 fields again: every one is now an indexed field (one or two bytes).
    expect(send(all)).toBeLessThan(200);
  });

  it('a failed encode (-1) leaves the table as it was, so the retry matches the decoder', () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder(4096);
    const h = newHeaderMap();
    h['x-a'] = 'one';
    h['x-b'] = 'two';
    const small = Buffer.alloc(8);
    expect(enc.encodeRequest(small, 0, 'GET', 'https', 'example.com', '/x', h)).toBe(-1);
    expect(enc.dynamicEntries()).toEqual([]);
    const big = Buffer.alloc(256);
    const end = enc.encodeRequest(big, 0, 'GET', 'https', 'example.com', '/x', h);
    const head = new DecodedHead();
    expect(dec.decode(big, 0, end, 1 << 20, 100, head)).toBe(HPACK_OK);
    expect(dec.dynamicEntries()).toEqual(enc.dynamicEntries());
    // The second identical block is all indexed except the never-repeated :path.
    const end2 = enc.encodeRequest(big, 0, 'GET', 'https', 'example.com', '/x', h);
    expect(end2).toBeLessThan(12);
  });

  it('policy: secrets never indexed (0001), high-cardinality names not indexed, :status from the static table', () => {
    const enc = new HpackEncoder();
    const dst = Buffer.alloc(512);
    const h = newHeaderMap();
    h.authorization = 'Bearer t';
    h['x-request-id'] = 'r1';
    h['content-type'] = 'application/grpc';
    let end = enc.encodeResponse(dst, 0, 200, h);
    expect(dst[0]).toBe(0x88);
    expect(dst[1]).toBe(0x10 | 15); // never indexed, name index 23 (authorization) needs 4-bit prefix + 8
    expect(enc.dynamicEntries()).toEqual([['content-type', 'application/grpc']]);
    for (const [status, byte] of [[204, 0x89], [206, 0x8a], [304, 0x8b], [400, 0x8c], [404, 0x8d], [500, 0x8e]] as const) {
      end = enc.encodeResponse(dst, 0, status, null);
      expect(end).toBe(1);
      expect(dst[0]).toBe(byte);
    }
  });
});

function expectHpackError(hex: string, why: RegExp, maxTable = 4096): void {
  const b = Buffer.from(hex.replace(/\s+/g, ''), 'hex');
  expect(() => new HpackDecoder(maxTable).decode(b, 0, b.length, 1 << 20, 1000, new DecodedHead())).toThrow(HpackError);
  expect(() => new HpackDecoder(maxTable).decode(b, 0, b.length, 1 << 20, 1000, new DecodedHead())).toThrow(why);
}

describe('hostile HPACK input throws HpackError', () => {
  it('integer overflow past 2^31 - 1', () => expectHpackError('ff ff ff ff ff 0f', /above 2\^31/));
  it('integer with more than 5 continuation bytes (leading zero groups)', () => expectHpackError('ff 80 80 80 80 80 00', /more than 5 continuation/));
  it('integer truncated by the block end', () => expectHpackError('ff 80', /integer runs past/));
  it('index 0', () => expectHpackError('80', /index 0/));
  it('index past the dynamic table', () => {
    expectHpackError('be', /index past/);
    expectHpackError('7e 01 61', /index past/); // literal with a name index past the table
  });
  it('Huffman string containing EOS', () => {
    expectHpackError('00 01 61 84 ff ff ff ff', /Huffman/);
    // EOS (30 ones) then 'a' (00011) and 5 bits of valid padding: only the EOS is wrong.
    expectHpackError('00 01 61 85 ff ff ff fc 7f', /Huffman/);
  });
  it('Huffman padding longer than 7 bits', () => {
    // 'a' = 00011: 0x1f is 'a' + 3 padding ones (valid); 0x1f 0xff is 11 bits of padding.
    const b = Buffer.from('00016181 1f'.replace(/\s+/g, ''), 'hex');
    const head = new DecodedHead();
    new HpackDecoder(4096).decode(b, 0, b.length, 1 << 20, 10, head);
    expect(head.headers.a).toBe('a');
    expectHpackError('00 01 61 82 1f ff', /Huffman/);
  });
  it('Huffman padding not all ones', () => expectHpackError('00 01 61 81 18', /Huffman/));
  it('string literal past the block end', () => expectHpackError('00 01 61 05 61', /past the header block/));
  it('table size update above our SETTINGS_HEADER_TABLE_SIZE', () => {
    expectHpackError('3f e9 26', /above our SETTINGS/); // 5000
    expectHpackError('3f e1 01', /above our SETTINGS/, 128); // 256 > 128
  });
  it('table size update after a field', () => expectHpackError('82 20', /after a header field/));
  it('a field table entry larger than the table empties it', () => {
    const dec = new HpackDecoder(4096);
    decodeHex(dec, '400a637573746f6d2d6b65790d637573746f6d2d686561646572');
    expect(dec.dynamicTableSize).toBe(55);
    decodeHex(dec, '3f 11'); // size 48: the 55-byte entry is evicted
    expect(dec.dynamicEntries()).toEqual([]);
    decodeHex(dec, '400a637573746f6d2d6b65790d637573746f6d2d686561646572');
    expect(dec.dynamicEntries()).toEqual([]); // 55 > 48: not added
  });

  it('a 10,000-field block stops at maxCount (HPACK_TOO_LARGE) and the table stays in sync', () => {
    const enc = new HpackEncoder();
    const dec = new HpackDecoder(4096);
    const h = newHeaderMap();
    for (let i = 0; i < 10_000; i++) h[`x-f${i}`] = `v${i}`;
    const dst = Buffer.alloc(1 << 20);
    let end = enc.encodeTrailers(dst, 0, h);
    let head = new DecodedHead();
    expect(dec.decode(dst, 0, end, 1 << 20, 100, head)).toBe(HPACK_TOO_LARGE);
    expect(head.count).toBe(10_000);
    expect(Object.keys(head.headers).length).toBe(100);
    expect(dec.dynamicEntries()).toEqual(enc.dynamicEntries());
    // The next block indexes entries the oversized one inserted: it decodes right.
    const h2 = newHeaderMap();
    h2['x-f9999'] = 'v9999';
    h2['x-f9990'] = 'v9990';
    end = enc.encodeTrailers(dst, 0, h2);
    expect(end).toBe(2);
    head = new DecodedHead();
    expect(dec.decode(dst, 0, end, 1 << 20, 100, head)).toBe(HPACK_OK);
    expect(pairsOf(head)).toEqual([['x-f9999', 'v9999'], ['x-f9990', 'v9990']]);
    // The size limit too.
    head = new DecodedHead();
    end = enc.encodeTrailers(dst, 0, h);
    expect(dec.decode(dst, 0, end, 4000, 100_000, head)).toBe(HPACK_TOO_LARGE);
    expect(head.size).toBeGreaterThan(4000);
    expect(dec.dynamicEntries()).toEqual(enc.dynamicEntries());
  });
});

/** Encodes a list of literal fields (raw, without indexing) by hand: for inputs our encoder would never make. */
function rawBlock(fields: Pair[]): Buffer {
  const parts: number[] = [];
  for (const [n, v] of fields) {
    parts.push(0x00, n.length, ...Buffer.from(n, 'latin1'), v.length, ...Buffer.from(v, 'latin1'));
  }
  return Buffer.from(parts);
}

function malformedOf(fields: Pair[]): DecodedHead {
  const b = rawBlock(fields);
  const head = new DecodedHead();
  expect(new HpackDecoder(4096).decode(b, 0, b.length, 1 << 20, 100, head)).toBe(HPACK_OK);
  return head;
}

describe('malformed HTTP fields (stream errors, not HPACK errors)', () => {
  const ok: Pair[] = [[':method', 'GET'], [':path', '/'], [':scheme', 'http']];
  it.each<[string, Pair[]]>([
    ['uppercase name', [...ok, ['X-Foo', 'a']]],
    ['non-token name char', [...ok, ['x foo', 'a']]],
    ['name with a colon inside', [...ok, ['x:y', 'a']]],
    ['empty name', [...ok, ['', 'a']]],
    ['CTL in a name', [...ok, ['x\x01a', 'a']]],
    ['DEL in a name', [...ok, ['x\x7fa', 'a']]],
    ['obs-text in a name', [...ok, ['x\u00e9', 'a']]],
    ['NUL in a value', [...ok, ['x-a', 'a\0b']]],
    ['CR in a value', [...ok, ['x-a', 'a\rb']]],
    ['LF in a value', [...ok, ['x-a', 'a\nb']]],
    ['leading space', [...ok, ['x-a', ' a']]],
    ['trailing tab', [...ok, ['x-a', 'a\t']]],
    ['invalid pseudo value (CR)', [[':method', 'GET\r'], [':path', '/'], [':scheme', 'http']]],
    ['unknown pseudo header', [...ok, [':foo', 'a']]],
    ['pseudo header after a regular one', [[':method', 'GET'], ['x-a', 'a'], [':path', '/']]],
    ['repeated pseudo header', [...ok, [':path', '/x']]],
    ['repeated empty pseudo header', [[':authority', ''], [':authority', '']]],
    ['connection', [...ok, ['connection', 'close']]],
    ['keep-alive', [...ok, ['keep-alive', '5']]],
    ['proxy-connection', [...ok, ['proxy-connection', 'x']]],
    ['transfer-encoding', [...ok, ['transfer-encoding', 'chunked']]],
    ['upgrade', [...ok, ['upgrade', 'h2c']]],
    ['te other than trailers', [...ok, ['te', 'gzip']]],
    ['invalid :status', [[':status', '20']]],
    ['non-digit :status', [[':status', '2x0']]],
    // Control characters other than HTAB, and DEL, as nghttp2 (nghttp2_check_header_value_rfc9113) and Envoy.
    ...[0x01, 0x08, 0x0b, 0x0c, 0x0e, 0x1b, 0x1f, 0x7f].map((c): [string, Pair[]] => [
      `CTL 0x${c.toString(16)} in a value`,
      [...ok, ['x-a', `a${String.fromCharCode(c)}b`]],
    ]),
    ['CTL as a whole value', [...ok, ['x-a', '\x01']]],
    ['CTL in a trailer-like block (no pseudo headers)', [['grpc-message', 'bad\x07bell']]],
    ['CTL in :path', [[':method', 'GET'], [':path', '/a\x01b'], [':scheme', 'http']]],
    ['SP in :path', [[':method', 'GET'], [':path', '/a b'], [':scheme', 'http']]],
    ['DEL in :authority', [...ok, [':authority', 'a\x7fb']]],
    ['SP in :authority', [...ok, [':authority', 'a b']]],
    ['slash in :authority', [...ok, [':authority', 'a/b']]],
    ['obs-text in :authority', [...ok, [':authority', 'caf\u00e9']]],
    ['non-token :method', [[':method', 'G(T'], [':path', '/'], [':scheme', 'http']]],
    ['obs-text in :method', [[':method', 'G\u00e9T'], [':path', '/'], [':scheme', 'http']]],
    ['invalid :scheme', [[':method', 'GET'], [':path', '/'], [':scheme', 'ht tp']]],
    [':scheme starting with a digit', [[':method', 'GET'], [':path', '/'], [':scheme', '1http']]],
    ['CTL in :status', [[':status', '2\x010']]],
  ])('%s', (_name, fields) => {
    expect(malformedOf(fields).malformed).not.toBe('');
  });

  it('valid: HTAB inside a value, obs-text (0x80-0xff) anywhere, authority forms, method and scheme tokens', () => {
    for (const fields of [
      [...ok, ['x-a', 'a\tb']],
      [...ok, ['x-a', '\x80\xff\u00e9']],
      [...ok, [':authority', 'user@[::1]:8080']],
      [...ok, [':authority', "a-b.c_d~!$&'()*+,;=%41"]],
      [...ok, [':authority', '']],
      [[':method', 'M-SEARCH'], [':path', '*'], [':scheme', 'coap+tcp']],
      [[':method', 'get'], [':path', '/a%20b?q=\u00e9#x'], [':scheme', 'HTTPS']],
    ] as Pair[][]) {
      expect(malformedOf(fields).malformed, JSON.stringify(fields)).toBe('');
    }
  });

  it('valid fields: te trailers, inner spaces, latin1 bytes, cookie crumbs joined, repeats as arrays', () => {
    const fields: Pair[] = [
      ...ok,
      [':authority', 'a.example'],
      ['te', 'trailers'],
      ['x-a', 'a b\tc'],
      ['x-latin', 'caf\u00e9'],
      ['cookie', 'a=1'],
      ['x-r', '1'],
      ['cookie', 'b=2'],
      ['x-r', '2'],
      ['x-r', '3'],
      ["!#$%&'*+-.^_`|~09az", ''],
    ];
    const head = malformedOf(fields);
    expect(head.malformed).toBe('');
    expect(head.method).toBe('GET');
    expect(head.authority).toBe('a.example');
    expect(head.headers.te).toBe('trailers');
    expect(head.headers['x-a']).toBe('a b\tc');
    expect(head.headers['x-latin']).toBe('caf\u00e9');
    expect(head.headers.cookie).toBe('a=1; b=2');
    expect(head.headers['x-r']).toEqual(['1', '2', '3']);
    expect(head.count).toBe(13);
    expect(head.size).toBe(fields.reduce((sum, [n, v]) => sum + n.length + v.length + 32, 0));
    expect(malformedOf([[':status', '204']]).status).toBe(204);
  });

  it('an invalid value reached through the dynamic table is still malformed (per-entry flag)', () => {
    const dec = new HpackDecoder(4096);
    // Literal with incremental indexing, new name 'x-a', value 'a\nb'; then the indexed entry (0xbe) alone.
    const first = Buffer.from([0x40, 3, ...Buffer.from('x-a'), 3, 0x61, 0x0a, 0x62]);
    let head = new DecodedHead();
    dec.decode(first, 0, first.length, 1 << 20, 10, head);
    expect(head.malformed).not.toBe('');
    head = new DecodedHead();
    dec.decode(Buffer.from([0xbe]), 0, 1, 1 << 20, 10, head);
    expect(head.malformed).not.toBe('');
    // Name reference to an uppercase name entry: still a bad name.
    const upper = Buffer.from([0x40, 3, ...Buffer.from('X-B'), 1, 0x61]);
    dec.decode(upper, 0, upper.length, 1 << 20, 10, new DecodedHead());
    head = new DecodedHead();
    dec.decode(Buffer.from([0x7e, 1, 0x62]), 0, 3, 1 << 20, 10, head);
    expect(head.malformed).not.toBe('');
  });
});

describe('interop with nghttp2 (node:http2) over a raw socket', () => {
  it('a node:http2 server reads our request heads; we read its response heads and trailers (Huffman, dynamic table)', async () => {
    const seen: http2.IncomingHttpHeaders[] = [];
    const server = http2.createServer();
    server.on('error', () => {});
    server.on('sessionError', () => {});
    server.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      seen.push(headers);
      const n = seen.length;
      stream.respond(
        {
          ':status': n === 3 ? 404 : 200,
          'content-type': 'application/grpc',
          'x-resp': `r${n % 2}`,
          'set-cookie': ['a=1', 'b=2'],
          'cache-control': 'private',
        },
        { waitForTrailers: true },
      );
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': `done ${n}` }));
      stream.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const sock = net.connect(port, '127.0.0.1');
    sock.on('error', () => {});
    const enc = new HpackEncoder();
    const blocks: Array<{ stream: number; block: Buffer }> = [];
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${blocks.length} header blocks arrived`)), 5000);
      const reader = new FrameReader(({ type, flags, stream, payload }) => {
        if (type === T.SETTINGS && (flags & F.ACK) === 0) {
          for (let i = 0; i + 6 <= payload.length; i += 6) {
            if (payload.readUInt16BE(i) === S.HEADER_TABLE_SIZE) enc.setPeerMaxTableSize(payload.readUInt32BE(i + 2));
          }
          sock.write(SETTINGS_ACK);
        } else if (type === T.HEADERS) {
          expect(flags & F.END_HEADERS).toBe(F.END_HEADERS); // nghttp2 sends small blocks in one frame
          expect(flags & (F.PADDED | F.PRIORITY)).toBe(0);
          blocks.push({ stream, block: Buffer.from(payload) });
          if (blocks.length === 6) {
            clearTimeout(timer);
            resolve();
          }
        }
      });
      sock.on('data', (chunk: Buffer) => reader.push(chunk));
    });
    const requests: Array<{ method: string; path: string; huffman: boolean; h: HeaderMap }> = [];
    for (let i = 0; i < 3; i++) {
      const h = newHeaderMap();
      h['user-agent'] = 'pillion-hpack-test/1.0';
      h['x-custom'] = `v${i % 2}`;
      h.authorization = 'Bearer secret-token';
      h.cookie = 'c=1; d=2';
      h['x-request-id'] = `req-${i}-0123456789abcdef`;
      h['x-latin'] = 'caf\u00e9';
      requests.push({ method: i === 2 ? 'POST' : 'GET', path: `/svc/m${i}?q=${i}`, huffman: i === 1, h });
    }
    const out: Buffer[] = [PREFACE, settings()];
    const dst = Buffer.alloc(4096);
    requests.forEach((r, i) => {
      enc.huffman = r.huffman;
      const end = enc.encodeRequest(dst, 0, r.method, 'https', 'api.example.com:8443', r.path, r.h);
      expect(end).toBeGreaterThan(0);
      out.push(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, 1 + 2 * i, Buffer.from(dst.subarray(0, end))));
    });
    sock.write(Buffer.concat(out));
    try {
      await done;
      expect(seen.length).toBe(3);
      requests.forEach((r, i) => {
        const s = seen[i]!;
        expect(s[':method']).toBe(r.method);
        expect(s[':scheme']).toBe('https');
        expect(s[':authority']).toBe('api.example.com:8443');
        expect(s[':path']).toBe(r.path);
        expect(s['user-agent']).toBe('pillion-hpack-test/1.0');
        expect(s['x-custom']).toBe(`v${i % 2}`);
        expect(s.authorization).toBe('Bearer secret-token');
        expect(s.cookie).toBe('c=1; d=2');
        expect(s['x-request-id']).toBe(`req-${i}-0123456789abcdef`);
        expect(s['x-latin']).toBe('caf\u00e9');
      });
      const dec = new HpackDecoder(4096);
      const heads = blocks.map(({ block }) => {
        const head = new DecodedHead();
        expect(dec.decode(block, 0, block.length, 1 << 20, 100, head)).toBe(HPACK_OK);
        expect(head.malformed).toBe('');
        return head;
      });
      for (let i = 0; i < 3; i++) {
        const stream = 1 + 2 * i;
        const [head, trailers] = heads.filter((_, k) => blocks[k]!.stream === stream);
        expect(head!.status).toBe(i === 2 ? 404 : 200);
        expect(head!.headers['content-type']).toBe('application/grpc');
        expect(head!.headers['x-resp']).toBe(`r${(i + 1) % 2}`);
        expect(head!.headers['set-cookie']).toEqual(['a=1', 'b=2']);
        expect(head!.headers['cache-control']).toBe('private');
        expect(typeof head!.headers.date).toBe('string');
        expect(trailers!.status).toBe(0);
        expect(trailers!.headers['grpc-status']).toBe('0');
        expect(trailers!.headers['grpc-message']).toBe(`done ${i + 1}`);
      }
      // nghttp2 indexed the first response's fields: the later heads are much smaller.
      const firstHead = blocks.find((b) => b.stream === 1)!.block.length;
      const thirdHead = blocks.find((b) => b.stream === 5)!.block.length;
      expect(thirdHead).toBeLessThan(firstHead / 2);
      expect(dec.dynamicTableSize).toBeGreaterThan(0);
    } finally {
      sock.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('interop with nghttp2 as the client (node:http2.connect to a raw socket server)', () => {
  it('we decode its request heads (Huffman, its dynamic table) and it reads our response heads and trailers', async () => {
    const dec = new HpackDecoder(4096);
    const enc = new HpackEncoder();
    enc.huffman = true;
    const requests: DecodedHead[] = [];
    const server = net.createServer((sock) => {
      sock.on('error', () => {});
      let pending = Buffer.alloc(0);
      let prefaceSeen = false;
      sock.write(settings());
      sock.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        if (!prefaceSeen) {
          if (pending.length < PREFACE.length) return;
          expect(pending.subarray(0, PREFACE.length).equals(PREFACE)).toBe(true);
          pending = pending.subarray(PREFACE.length);
          prefaceSeen = true;
        }
        while (pending.length >= 9) {
          const len = pending.readUIntBE(0, 3);
          if (pending.length < 9 + len) break;
          const type = pending[3]!;
          const flags = pending[4]!;
          const stream = pending.readUInt32BE(5) & 0x7fffffff;
          const payload = pending.subarray(9, 9 + len);
          pending = pending.subarray(9 + len);
          if (type === T.SETTINGS && (flags & F.ACK) === 0) sock.write(SETTINGS_ACK);
          if (type !== 1) continue;
          expect(flags & 0x4).toBe(0x4);
          let start = 0;
          if ((flags & 0x20) !== 0) start = 5; // PRIORITY fields before the block
          const head = new DecodedHead();
          expect(dec.decode(payload, start, payload.length, 1 << 20, 100, head)).toBe(HPACK_OK);
          requests.push(head);
          const n = requests.length;
          const dst = Buffer.alloc(1024);
          const rh = newHeaderMap();
          rh['content-type'] = 'text/plain';
          rh['x-served-by'] = 'raw-hpack';
          rh['set-cookie'] = ['s=1', `t=${n}`];
          let end = enc.encodeResponse(dst, 0, n === 2 ? 503 : 200, rh);
          const frames = [frame(T.HEADERS, F.END_HEADERS, stream, Buffer.from(dst.subarray(0, end)))];
          const tr = newHeaderMap();
          tr['x-trailer'] = `t${n}`;
          end = enc.encodeTrailers(dst, 0, tr);
          frames.push(frame(T.DATA, 0, stream, Buffer.from('ok')), frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, stream, Buffer.from(dst.subarray(0, end))));
          sock.write(Buffer.concat(frames));
        }
      });
    });
    server.on('error', () => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    try {
      const results: Array<{ head: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: string }> = [];
      for (let i = 0; i < 3; i++) {
        results.push(
          await new Promise((resolve, reject) => {
            const req = client.request({
              ':method': i === 1 ? 'POST' : 'GET',
              ':path': `/r/${i}?long=${'x'.repeat(20)}`,
              'user-agent': 'node-h2-client',
              'x-custom': 'same-every-time',
              cookie: 'a=1; b=2',
              'x-latin': 'ol\u00e9',
            });
            req.on('error', reject);
            let head: http2.IncomingHttpHeaders = {};
            let body = '';
            req.on('response', (h) => (head = h));
            req.setEncoding('utf8');
            req.on('data', (d: string) => (body += d));
            req.on('trailers', (trailers) => resolve({ head, trailers, body }));
            req.end();
          }),
        );
      }
      expect(requests.length).toBe(3);
      requests.forEach((r, i) => {
        expect(r.malformed).toBe('');
        expect(r.method).toBe(i === 1 ? 'POST' : 'GET');
        expect(r.path).toBe(`/r/${i}?long=${'x'.repeat(20)}`);
        expect(r.scheme).toBe('http');
        expect(r.authority).toBe(`127.0.0.1:${port}`);
        expect(r.headers['user-agent']).toBe('node-h2-client');
        expect(r.headers['x-custom']).toBe('same-every-time');
        expect(r.headers.cookie).toBe('a=1; b=2'); // nghttp2 sends crumbs; we join them
        expect(r.headers['x-latin']).toBe('ol\u00e9');
      });
      expect(dec.dynamicTableSize).toBeGreaterThan(0);
      results.forEach((r, i) => {
        expect(r.head[':status']).toBe(i === 1 ? 503 : 200);
        expect(r.head['content-type']).toBe('text/plain');
        expect(r.head['x-served-by']).toBe('raw-hpack');
        expect(r.head['set-cookie']).toEqual(['s=1', `t=${i + 1}`]);
        expect(r.body).toBe('ok');
        expect(r.trailers['x-trailer']).toBe(`t${i + 1}`);
      });
    } finally {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('random and mutated input', () => {
  it('never throws anything but HpackError, and a valid block after a rejected one on a fresh decoder decodes', () => {
    const rnd = seeded(19);
    const seeds = [...C3.map((v) => v.hex), ...C4_HEX, ...C5.map((v) => v.hex), ...C6_HEX].map((h) => Buffer.from(h, 'hex'));
    let rejected = 0;
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      let b: Buffer;
      if (i % 4 === 0) {
        b = Buffer.alloc(1 + Math.floor(rnd() * 40));
        for (let k = 0; k < b.length; k++) b[k] = Math.floor(rnd() * 256);
      } else {
        b = Buffer.from(seeds[Math.floor(rnd() * seeds.length)]!);
        const flips = 1 + Math.floor(rnd() * 3);
        for (let k = 0; k < flips; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        if (rnd() < 0.2) b = b.subarray(0, Math.floor(rnd() * b.length));
      }
      const dec = new HpackDecoder(rnd() < 0.5 ? 256 : 4096);
      try {
        dec.decode(b, 0, b.length, 4096, 50, new DecodedHead());
        accepted++;
      } catch (err) {
        if (!(err instanceof HpackError)) throw err;
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(1000);
    expect(accepted).toBeGreaterThan(1000);
  });
});

describe('long strings', () => {
  it('a 40,000-byte Huffman value (past the shared scratch) round-trips, and a short one after it too', () => {
    const enc = new HpackEncoder();
    enc.huffman = true;
    const dec = new HpackDecoder(4096);
    const h = newHeaderMap();
    h['x-big'] = 'abcdefghij'.repeat(4000);
    h['x-small'] = 'tail';
    const dst = Buffer.alloc(1 << 17);
    const end = enc.encodeTrailers(dst, 0, h);
    expect(end).toBeLessThan(40_000); // Huffman shorter than raw
    const head = new DecodedHead();
    expect(dec.decode(dst, 0, end, 1 << 20, 10, head)).toBe(HPACK_OK);
    expect(head.headers['x-big']).toBe(h['x-big']);
    expect(head.headers['x-small']).toBe('tail');
  });
});
