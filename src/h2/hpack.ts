// HPACK (RFC 7541) for Pillion's own HTTP/2 codec. Why our own: Node's `http2` cost ~65-70 µs of CPU per proxied
// stream (Duplex per stream, four header conversions, nextTick per event), no well-kept npm library does HPACK
// (hpack.js is abandoned since 2017) and nghttp2's is not public. This one decodes a block straight into the
// proxy's HeaderMap (indexed fields allocate no strings), validates fields per RFC 9113 §8.2 on the way, and
// encodes from a HeaderMap with a cheap dynamic-table policy. Malformed HPACK throws HpackError (the session's
// COMPRESSION_ERROR); malformed HTTP sets DecodedHead.malformed (a stream error).
import { newHeaderMap, type HeaderMap } from '../http/headers.js';
import { huffmanDecode, huffmanEncode, huffmanLength } from './hpack-huffman.js';
import { STATIC_COUNT, STATIC_NAME_INDEX, STATIC_NAMES, STATIC_VALUES } from './hpack-static.js';

/** Node's Buffer has these (undocumented, what Node's own http2 and http use); @types/node lacks them. */
type Latin1Buffer = Buffer & {
  latin1Slice(start: number, end: number): string;
  latin1Write(s: string, offset: number, length: number): number;
};

export const HPACK_OK = 0,
  HPACK_TOO_LARGE = 1;

/** An HPACK violation: the session answers with GOAWAY COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = 'HpackError';
}

/** One header block decoded: pseudo headers as fields, the rest in a HeaderMap. A fresh one per block. */
export class DecodedHead {
  method = '';
  path = '';
  scheme = '';
  authority = '';
  protocol = '';
  status = 0; // '' / 0 = absent
  /** Regular fields; repeated names -> string[] in order; `cookie` crumbs joined with '; ' (RFC 9113 §8.2.3). */
  headers: HeaderMap = newHeaderMap();
  /** Why the block is malformed as HTTP (not as HPACK), '' if fine: a stream error (RST_STREAM PROTOCOL_ERROR). */
  malformed = '';
  /** Number of fields and the RFC 7541 size (name + value + 32 each) of the block's list. */
  count = 0;
  size = 0;
}

// Per-name classification, computed once per literal name and kept with each table entry (bits 0-3), so an
// indexed field needs no string work at all. Bit 4: the entry's value is invalid (RFC 9113 §8.2.1).
const K_REGULAR = 0;
const K_COOKIE = 1;
const K_BAD_NAME = 2;
const K_CONNECTION = 3;
const K_TE = 4;
const K_METHOD = 5;
const K_SCHEME = 6;
const K_AUTHORITY = 7;
const K_PATH = 8;
const K_PROTOCOL = 9;
const K_STATUS = 10;
const K_BAD_PSEUDO = 11;
const KIND_MASK = 15;
const BAD_VALUE = 16;

/** 1 for the bytes allowed in an HTTP/2 field name: RFC 9110 tchar, minus uppercase (RFC 9113 §8.2.1). */
const NAME_CHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") NAME_CHAR[c.charCodeAt(0)] = 1;

function classifyName(name: string): number {
  const n = name.length;
  if (n === 0) return K_BAD_NAME;
  if (name.charCodeAt(0) === 58 /* ':' */) {
    switch (name) {
      case ':method':
        return K_METHOD;
      case ':scheme':
        return K_SCHEME;
      case ':authority':
        return K_AUTHORITY;
      case ':path':
        return K_PATH;
      case ':protocol':
        return K_PROTOCOL;
      case ':status':
        return K_STATUS;
      default:
        return K_BAD_PSEUDO;
    }
  }
  for (let i = 0; i < n; i++) {
    const c = name.charCodeAt(i);
    if (c > 255 || NAME_CHAR[c] === 0) return K_BAD_NAME;
  }
  switch (name) {
    case 'cookie':
      return K_COOKIE;
    case 'te':
      return K_TE;
    case 'connection':
    case 'keep-alive':
    case 'proxy-connection':
    case 'transfer-encoding':
    case 'upgrade':
      return K_CONNECTION;
    default:
      return K_REGULAR;
  }
}

/**
 * RFC 9113 §8.2.1 and RFC 9110 §5.5, as nghttp2 (nghttp2_check_header_value_rfc9113) and Envoy judge it: no
 * control character but HTAB (NUL, CR and LF included, DEL too) anywhere, no SP or HTAB at either end. obs-text
 * (0x80-0xff) passes. RFC 9113 only forbids NUL, CR and LF, but the other CTLs reach HTTP/1.1 upstreams, whose
 * parsers (llhttp's strict mode among them) refuse them: an HTTP/1.1 client's request with them is a 400 already.
 */
function valueInvalid(v: string): boolean {
  const n = v.length;
  if (n === 0) return false;
  let c = v.charCodeAt(0);
  if (c === 32 || c === 9) return true;
  c = v.charCodeAt(n - 1);
  if (c === 32 || c === 9) return true;
  for (let i = 0; i < n; i++) {
    c = v.charCodeAt(i);
    if (c < 32 ? c !== 9 : c === 127) return true;
  }
  return false;
}

/**
 * Bytes allowed in :authority (RFC 3986 authority: unreserved, pct-encoded, sub-delims, ':', '@', '[', ']'), as
 * nghttp2_check_authority and Envoy have them: no SP, CTL, obs-text, '/', '?', '#' or other delimiters.
 */
const AUTHORITY_CHAR = new Uint8Array(256);
for (const c of "!$%&'()*+,-.0123456789:;=@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]_abcdefghijklmnopqrstuvwxyz~") AUTHORITY_CHAR[c.charCodeAt(0)] = 1;

/**
 * A request's `host` field judged as :authority is (nghttp2 checks both on the server side): it stands for
 * :authority when that is absent (RFC 9113 §8.3.1), and each copy must be a valid authority.
 */
export function hostInvalid(host: string | string[]): boolean {
  if (typeof host === 'string') return !allIn(host, AUTHORITY_CHAR);
  for (const h of host) if (!allIn(h, AUTHORITY_CHAR)) return true;
  return false;
}

/** :method is a token (RFC 9110 §9.1): tchar, either case. */
const METHOD_CHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") METHOD_CHAR[c.charCodeAt(0)] = 1;

/** Every char of `v` is in `table` (an empty :method is refused with the request's other checks). */
function allIn(v: string, table: Uint8Array): boolean {
  const n = v.length;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    if (c > 255 || table[c] === 0) return false;
  }
  return true;
}

/** :path: no SP (CTLs are refused with every value), as in an HTTP/1.1 request line (RFC 9112 §3.2). */
function pathInvalid(v: string): boolean {
  return v.indexOf(' ') >= 0;
}

/** :scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1). */
function schemeInvalid(v: string): boolean {
  const n = v.length;
  if (n === 0) return true;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i);
    const lower = c | 0x20;
    if (lower >= 97 && lower <= 122) continue;
    if (i > 0 && ((c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46)) continue;
    return true;
  }
  return false;
}

const STATIC_FLAGS = new Uint8Array(STATIC_COUNT + 1);
for (let i = 1; i <= STATIC_COUNT; i++) STATIC_FLAGS[i] = classifyName(STATIC_NAMES[i]!);

const ENTRY_OVERHEAD = 32;
const MAX_INT = 0x7fffffff;

/** Huffman output of the decoder (shared: decoding is synchronous). */
const scratch = Buffer.allocUnsafe(16384) as Latin1Buffer;

/** Rings start this small (an idle connection's tables stay ~200 bytes) and double when full: a table of
 *  `limit` bytes never holds more than limit / 32 entries, so growth stops by itself. */
const INITIAL_SLOTS = 16;

export class HpackDecoder {
  /** What we advertise (SETTINGS_HEADER_TABLE_SIZE): the ceiling for the peer's size updates. */
  private readonly maxTableSize: number;
  /** The current limit, as set by the peer's last size update. */
  private limit: number;
  private tableSize = 0;
  private length = 0;
  /** Ring of entries: the next insertion goes to slot `head`; the newest entry (index 62) is head - 1. */
  private head = 0;
  private mask = INITIAL_SLOTS - 1;
  private names: string[] = new Array<string>(INITIAL_SLOTS).fill('');
  private values: string[] = new Array<string>(INITIAL_SLOTS).fill('');
  private flags: number[] = new Array<number>(INITIAL_SLOTS).fill(0);
  /** Read cursor of the block being decoded. */
  private pos = 0;

  constructor(maxTableSize: number) {
    this.maxTableSize = maxTableSize;
    this.limit = maxTableSize;
  }

  /** The dynamic table's RFC 7541 size (for tests and diagnostics). */
  get dynamicTableSize(): number {
    return this.tableSize;
  }

  /** The dynamic table, newest first (index 62 first): for tests and diagnostics. */
  dynamicEntries(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (let d = 1; d <= this.length; d++) {
      const slot = (this.head - d) & this.mask;
      out.push([this.names[slot]!, this.values[slot]!]);
    }
    return out;
  }

  /**
   * Decodes one complete header block, bytes [start, end) of buf, into `out`. Always decodes the whole block
   * (the dynamic table must stay in sync with the peer) but stops adding fields once `count > maxCount` or
   * `size > maxSize`, and then returns HPACK_TOO_LARGE. Throws HpackError on any HPACK violation.
   */
  decode(buf: Buffer, start: number, end: number, maxSize: number, maxCount: number, out: DecodedHead): number {
    if (end > buf.length || start > end) throw new HpackError('header block bounds outside the buffer');
    this.pos = start;
    let sawField = false;
    let tooLarge = false;
    let regularSeen = false;
    let pseudoSeen = 0;
    const headers = out.headers;
    while (this.pos < end) {
      const first = buf[this.pos]!;
      let name: string;
      let value: string;
      let flags: number;
      if (first >= 0x80) {
        // Indexed field (§6.1); indices below 127 (nearly all) take one byte: no readInt call.
        let index = first & 0x7f;
        if (index < 0x7f) this.pos++;
        else index = this.readInt(buf, end, 7);
        if (index === 0) throw new HpackError('indexed header field with index 0');
        if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index]!;
          value = STATIC_VALUES[index]!;
          flags = STATIC_FLAGS[index]!;
        } else {
          const d = index - STATIC_COUNT;
          if (d > this.length) throw new HpackError('header field index past the dynamic table');
          const slot = (this.head - d) & this.mask;
          name = this.names[slot]!;
          value = this.values[slot]!;
          flags = this.flags[slot]!;
        }
      } else if (first >= 0x20 && first < 0x40) {
        // Dynamic table size update (§6.3): only before the block's first field.
        if (sawField) throw new HpackError('dynamic table size update after a header field');
        const size = this.readInt(buf, end, 5);
        if (size > this.maxTableSize) throw new HpackError('dynamic table size update above our SETTINGS_HEADER_TABLE_SIZE');
        this.limit = size;
        this.evictTo(size);
        continue;
      } else {
        // Literal with incremental indexing (01), without indexing (0000) or never indexed (0001) (§6.2).
        const indexing = first >= 0x40;
        const index = this.readInt(buf, end, indexing ? 6 : 4);
        if (index === 0) {
          name = this.readString(buf, end);
          flags = classifyName(name);
        } else if (index <= STATIC_COUNT) {
          name = STATIC_NAMES[index]!;
          flags = STATIC_FLAGS[index]!;
        } else {
          const d = index - STATIC_COUNT;
          if (d > this.length) throw new HpackError('header name index past the dynamic table');
          const slot = (this.head - d) & this.mask;
          name = this.names[slot]!;
          flags = this.flags[slot]! & KIND_MASK;
        }
        value = this.readString(buf, end);
        if (valueInvalid(value)) flags |= BAD_VALUE;
        if (indexing) this.insert(name, value, flags);
      }
      sawField = true;
      const count = ++out.count;
      const size = (out.size += name.length + value.length + ENTRY_OVERHEAD);
      if (tooLarge || count > maxCount || size > maxSize) {
        tooLarge = true;
        continue;
      }
      if (flags >= BAD_VALUE && out.malformed === '') {
        out.malformed = 'header field value with a control character or leading/trailing whitespace';
      }
      const kind = flags & KIND_MASK;
      if (kind === K_REGULAR) {
        regularSeen = true;
        const prev = headers[name];
        if (prev === undefined) headers[name] = value;
        else if (typeof prev === 'string') headers[name] = [prev, value];
        else prev.push(value);
        continue;
      }
      if (kind < K_METHOD) {
        regularSeen = true;
        if (kind === K_COOKIE) {
          const prev = headers.cookie;
          headers.cookie = prev === undefined ? value : `${prev as string}; ${value}`;
        } else if (kind === K_TE) {
          if (value !== 'trailers') {
            if (out.malformed === '') out.malformed = 'te header field other than "trailers"';
          } else headers.te = value;
        } else if (out.malformed === '') {
          out.malformed =
            kind === K_BAD_NAME
              ? 'header field name with uppercase or non-token characters'
              : 'connection-specific header field';
        }
        continue;
      }
      // Pseudo headers.
      if (kind === K_BAD_PSEUDO) {
        if (out.malformed === '') out.malformed = 'unknown pseudo-header field';
        continue;
      }
      if (regularSeen) {
        if (out.malformed === '') out.malformed = 'pseudo-header field after a regular field';
        continue;
      }
      const bit = 1 << kind;
      if ((pseudoSeen & bit) !== 0) {
        if (out.malformed === '') out.malformed = 'repeated pseudo-header field';
        continue;
      }
      pseudoSeen |= bit;
      switch (kind) {
        case K_METHOD:
          if (!allIn(value, METHOD_CHAR) && out.malformed === '') out.malformed = 'invalid :method';
          out.method = value;
          break;
        case K_SCHEME:
          if (schemeInvalid(value) && out.malformed === '') out.malformed = 'invalid :scheme';
          out.scheme = value;
          break;
        case K_AUTHORITY:
          if (!allIn(value, AUTHORITY_CHAR) && out.malformed === '') out.malformed = 'invalid :authority';
          out.authority = value;
          break;
        case K_PATH:
          if (pathInvalid(value) && out.malformed === '') out.malformed = 'invalid :path (SP)';
          out.path = value;
          break;
        case K_PROTOCOL:
          out.protocol = value;
          break;
        default: {
          // :status: exactly three digits.
          const c0 = value.charCodeAt(0) - 48;
          const c1 = value.charCodeAt(1) - 48;
          const c2 = value.charCodeAt(2) - 48;
          if (value.length === 3 && c0 >= 0 && c0 <= 9 && c1 >= 0 && c1 <= 9 && c2 >= 0 && c2 <= 9) {
            out.status = c0 * 100 + c1 * 10 + c2;
          } else if (out.malformed === '') out.malformed = 'invalid :status';
        }
      }
    }
    return tooLarge ? HPACK_TOO_LARGE : HPACK_OK;
  }

  /** §5.1 integer with an N-bit prefix at this.pos; at most 5 continuation bytes and at most 2^31 - 1. */
  private readInt(buf: Buffer, end: number, prefixBits: number): number {
    const max = (1 << prefixBits) - 1;
    let value = buf[this.pos++]! & max;
    if (value < max) return value;
    let m = 1;
    for (let k = 0; k < 5; k++) {
      if (this.pos >= end) throw new HpackError('integer runs past the header block');
      const b = buf[this.pos++]!;
      value += (b & 127) * m;
      if (value > MAX_INT) throw new HpackError('integer above 2^31 - 1');
      if (b < 128) return value;
      m *= 128;
    }
    throw new HpackError('integer with more than 5 continuation bytes');
  }

  /** §5.2 string literal at this.pos, raw or Huffman. */
  private readString(buf: Buffer, end: number): string {
    if (this.pos >= end) throw new HpackError('string literal missing at the end of the header block');
    const huffman = buf[this.pos]! >= 128;
    const len = this.readInt(buf, end, 7);
    const s = this.pos;
    if (len > end - s) throw new HpackError('string literal runs past the header block');
    const e = s + len;
    this.pos = e;
    if (len === 0) return '';
    if (!huffman) return (buf as Latin1Buffer).latin1Slice(s, e);
    // Shortest code is 5 bits: at most len * 8 / 5 symbols.
    const need = len * 2;
    // A rare huge string gets a one-off buffer: the shared scratch stays small for the process's lifetime.
    const out = need <= scratch.length ? scratch : (Buffer.allocUnsafe(need) as Latin1Buffer);
    const n = huffmanDecode(buf, s, e, out);
    if (n < 0) throw new HpackError('invalid Huffman string (EOS or bad padding)');
    return out.latin1Slice(0, n);
  }

  private insert(name: string, value: string, flags: number): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.limit) {
      // §4.4: an entry larger than the table empties it and is not added.
      this.evictTo(0);
      return;
    }
    this.evictTo(this.limit - size);
    if (this.length > this.mask) this.grow();
    const slot = this.head;
    this.names[slot] = name;
    this.values[slot] = value;
    this.flags[slot] = flags;
    this.head = (slot + 1) & this.mask;
    this.length++;
    this.tableSize += size;
  }

  /** Doubles the ring, oldest entry to slot 0. */
  private grow(): void {
    const slots = (this.mask + 1) * 2;
    const names = new Array<string>(slots).fill('');
    const values = new Array<string>(slots).fill('');
    const flags = new Array<number>(slots).fill(0);
    for (let k = 0; k < this.length; k++) {
      const from = (this.head - this.length + k) & this.mask;
      names[k] = this.names[from]!;
      values[k] = this.values[from]!;
      flags[k] = this.flags[from]!;
    }
    this.names = names;
    this.values = values;
    this.flags = flags;
    this.head = this.length;
    this.mask = slots - 1;
  }

  private evictTo(limit: number): void {
    while (this.tableSize > limit) {
      const slot = (this.head - this.length) & this.mask;
      this.tableSize -= this.names[slot]!.length + this.values[slot]!.length + ENTRY_OVERHEAD;
      this.names[slot] = '';
      this.values[slot] = '';
      this.length--;
    }
  }
}

// Encoder indexing policy by name.
const P_INDEX = 0;
/** Literal without indexing (0000): high-cardinality values that would only churn the peer's table. */
const P_NO_INDEX = 1;
/** Literal never indexed (0001): secrets, which intermediaries must not index either (§7.1.3). */
const P_NEVER = 2;
const POLICY = new Map<string, number>();
for (const n of ['authorization', 'proxy-authorization', 'cookie', 'set-cookie']) POLICY.set(n, P_NEVER);
for (const n of [
  ':path',
  'content-length',
  'content-range',
  'date',
  'expires',
  'age',
  'etag',
  'last-modified',
  'if-modified-since',
  'if-none-match',
  'x-request-id',
  'traceparent',
  'tracestate',
  'grpc-message',
  'grpc-status-details-bin',
  'x-forwarded-for',
  'x-envoy-expected-rq-timeout-ms',
  'x-envoy-upstream-service-time',
]) {
  POLICY.set(n, P_NO_INDEX);
}
/** Values longer than this are never indexed: they would evict many small, useful entries. */
const MAX_INDEXED_VALUE = 256;

/** Names with a static index or a policy: static index (bits 0-7) | policy << 8. One lookup per field. */
const NAME_INFO = new Map<string, number>();
for (const [name, index] of STATIC_NAME_INDEX) NAME_INFO.set(name, index);
for (const [name, policy] of POLICY) NAME_INFO.set(name, (NAME_INFO.get(name) ?? 0) | (policy << 8));

/** Policy of names outside NAME_INFO that start with 'x': trace and id headers are not indexed. */
function xPolicy(name: string): number {
  if (name.startsWith('x-b3-')) return P_NO_INDEX;
  if ((name.startsWith('x-envoy-') || name.startsWith('x-pillion-')) && name.endsWith('-id')) return P_NO_INDEX;
  return P_INDEX;
}

/** §5.1 integer with `prefixBits` prefix, first byte ORed with `flags`; returns the end offset. */
function writeInt(dst: Buffer, pos: number, value: number, prefixBits: number, flags: number): number {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    dst[pos] = flags | value;
    return pos + 1;
  }
  dst[pos++] = flags | max;
  value -= max;
  while (value >= 128) {
    dst[pos++] = (value & 127) | 128;
    value >>>= 7;
  }
  dst[pos++] = value;
  return pos;
}

/** Most a field can take beyond its name and value bytes: 6 (index) + 6 + 6 (two length integers). */
const FIELD_OVERHEAD_BOUND = 18;
/** :status values as strings for codes not in the static table, built once. */
const STATUS_STRINGS: string[] = [];
for (let s = 100; s < 1000; s++) STATUS_STRINGS[s] = String(s);
/** :status code -> its static table index (0: none), derived from the table so the fast path cannot drift. */
const STATUS_STATIC = new Uint8Array(600);
for (let i = 1; i <= STATIC_COUNT; i++) if (STATIC_NAMES[i] === ':status') STATUS_STATIC[Number(STATIC_VALUES[i])] = i;

const ENCODER_MAX_TABLE = 4096;

export class HpackEncoder {
  /** Huffman-encode literals where shorter (costs a pass over each literal; saves ~20-30% of its bytes). */
  huffman = false;
  /** The table limit the peer's decoder knows of. */
  private limit = ENCODER_MAX_TABLE;
  /** Size updates owed at the next block's start: the smallest since the last block and the final one. */
  private pendingMin = -1;
  private pendingFinal = -1;
  private tableSize = 0;
  private length = 0;
  /** Insertion sequence number of the next entry; entry with seq s has index 62 + (seq - 1 - s). */
  private seq = 0;
  private mask = INITIAL_SLOTS - 1;
  private names: string[] = new Array<string>(INITIAL_SLOTS).fill('');
  private values: string[] = new Array<string>(INITIAL_SLOTS).fill('');
  /** Name -> sequence numbers of its live entries, oldest first. */
  private readonly byName = new Map<string, number[]>();

  /** The peer's SETTINGS_HEADER_TABLE_SIZE: our table becomes min(n, 4096), announced at the next block. */
  setPeerMaxTableSize(n: number): void {
    const size = Math.min(n, ENCODER_MAX_TABLE);
    if (this.pendingFinal === -1 && size === this.limit) return;
    if (this.pendingMin === -1 || size < this.pendingMin) this.pendingMin = size;
    this.pendingFinal = size;
  }

  /** The dynamic table's RFC 7541 size (for tests and diagnostics). */
  get dynamicTableSize(): number {
    return this.tableSize;
  }

  /** The dynamic table, newest first: for tests and diagnostics. */
  dynamicEntries(): Array<[string, string]> {
    const out: Array<[string, string]> = [];
    for (let s = this.seq - 1; s >= this.seq - this.length; s--) {
      out.push([this.names[s & this.mask]!, this.values[s & this.mask]!]);
    }
    return out;
  }

  encodeRequest(
    dst: Buffer,
    offset: number,
    method: string,
    scheme: string,
    authority: string,
    path: string,
    headers: HeaderMap,
  ): number {
    const bound =
      method.length + scheme.length + authority.length + path.length + 4 * FIELD_OVERHEAD_BOUND + boundOf(headers);
    if (dst.length - offset < bound) return -1;
    let pos = this.sizeUpdates(dst, offset);
    if (method === 'GET') dst[pos++] = 0x82;
    else if (method === 'POST') dst[pos++] = 0x83;
    else if (method !== '') pos = this.field(dst, pos, ':method', method);
    if (scheme === 'https') dst[pos++] = 0x87;
    else if (scheme === 'http') dst[pos++] = 0x86;
    else if (scheme !== '') pos = this.field(dst, pos, ':scheme', scheme);
    if (authority !== '') pos = this.field(dst, pos, ':authority', authority);
    if (path === '/') dst[pos++] = 0x84;
    else if (path !== '') pos = this.literal(dst, pos, 0x00, 4, 4, ':path', path);
    return this.fields(dst, pos, headers);
  }

  encodeResponse(dst: Buffer, offset: number, status: number, headers: HeaderMap | null): number {
    const bound = FIELD_OVERHEAD_BOUND + 10 + (headers === null ? 0 : boundOf(headers));
    if (dst.length - offset < bound) return -1;
    let pos = this.sizeUpdates(dst, offset);
    if (status !== 0) {
      const index = status < STATUS_STATIC.length ? STATUS_STATIC[status]! : 0;
      if (index !== 0) dst[pos++] = 0x80 | index;
      else pos = this.field(dst, pos, ':status', STATUS_STRINGS[status] ?? String(status));
    }
    return headers === null ? pos : this.fields(dst, pos, headers);
  }

  /** Trailers: no pseudo headers. */
  encodeTrailers(dst: Buffer, offset: number, headers: HeaderMap): number {
    if (dst.length - offset < FIELD_OVERHEAD_BOUND + boundOf(headers)) return -1;
    return this.fields(dst, this.sizeUpdates(dst, offset), headers);
  }

  private sizeUpdates(dst: Buffer, pos: number): number {
    if (this.pendingFinal === -1) return pos;
    if (this.pendingMin < this.pendingFinal) {
      this.evictTo(this.pendingMin);
      pos = writeInt(dst, pos, this.pendingMin, 5, 0x20);
    }
    this.limit = this.pendingFinal;
    this.evictTo(this.limit);
    pos = writeInt(dst, pos, this.limit, 5, 0x20);
    this.pendingMin = this.pendingFinal = -1;
    return pos;
  }

  private fields(dst: Buffer, pos: number, headers: HeaderMap): number {
    for (const name in headers) {
      const v = headers[name]!;
      if (typeof v === 'string') pos = this.field(dst, pos, name, v);
      else for (let i = 0; i < v.length; i++) pos = this.field(dst, pos, name, v[i]!);
    }
    return pos;
  }

  private field(dst: Buffer, pos: number, name: string, value: string): number {
    let nameIndex = 0;
    let policy = P_INDEX;
    const info = NAME_INFO.get(name);
    if (info !== undefined) {
      nameIndex = info & 0xff;
      policy = info >> 8;
      // Entries of one name are contiguous; only a few names have values in the static table.
      for (let i = nameIndex; i !== 0 && i <= STATIC_COUNT && STATIC_NAMES[i] === name; i++) {
        if (STATIC_VALUES[i] === value) return writeInt(dst, pos, i, 7, 0x80);
      }
    } else if (name.charCodeAt(0) === 120 /* 'x' */) policy = xPolicy(name);
    if (policy === P_NEVER) return this.literal(dst, pos, 0x10, 4, nameIndex, name, value);
    // An empty value (grpc-message in every OK trailer) repeats whatever the name: index it.
    if ((policy === P_NO_INDEX && value.length !== 0) || value.length > MAX_INDEXED_VALUE || this.limit === 0) {
      return this.literal(dst, pos, 0x00, 4, nameIndex, name, value);
    }
    const seqs = this.byName.get(name);
    if (seqs !== undefined) {
      const top = this.seq - 1 + STATIC_COUNT + 1;
      for (let k = seqs.length - 1; k >= 0; k--) {
        const s = seqs[k]!;
        if (this.values[s & this.mask] === value) return writeInt(dst, pos, top - s, 7, 0x80);
      }
      if (nameIndex === 0) nameIndex = top - seqs[seqs.length - 1]!;
    }
    pos = this.literal(dst, pos, 0x40, 6, nameIndex, name, value);
    this.insert(name, value);
    return pos;
  }

  private literal(
    dst: Buffer,
    pos: number,
    flags: number,
    prefixBits: number,
    nameIndex: number,
    name: string,
    value: string,
  ): number {
    if (nameIndex !== 0) pos = writeInt(dst, pos, nameIndex, prefixBits, flags);
    else {
      dst[pos++] = flags;
      pos = this.string(dst, pos, name);
    }
    return this.string(dst, pos, value);
  }

  private string(dst: Buffer, pos: number, s: string): number {
    const n = s.length;
    if (this.huffman && n > 0) {
      const h = huffmanLength(s);
      if (h < n) return huffmanEncode(s, dst, writeInt(dst, pos, h, 7, 0x80));
    }
    pos = writeInt(dst, pos, n, 7, 0);
    if (n > 32) return pos + (dst as Latin1Buffer).latin1Write(s, pos, n);
    // Short strings: a JS loop beats the call into C++ (latin1 truncation of chars > 0xFF, as latin1Write).
    for (let i = 0; i < n; i++) dst[pos + i] = s.charCodeAt(i);
    return pos + n;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.limit) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.limit - size);
    if (this.length > this.mask) this.grow();
    const s = this.seq++;
    this.names[s & this.mask] = name;
    this.values[s & this.mask] = value;
    const seqs = this.byName.get(name);
    if (seqs === undefined) this.byName.set(name, [s]);
    else seqs.push(s);
    this.length++;
    this.tableSize += size;
  }

  /** Doubles the ring; entry `seq` lives at slot seq & mask. */
  private grow(): void {
    const slots = (this.mask + 1) * 2;
    const names = new Array<string>(slots).fill('');
    const values = new Array<string>(slots).fill('');
    for (let q = this.seq - this.length; q < this.seq; q++) {
      names[q & (slots - 1)] = this.names[q & this.mask]!;
      values[q & (slots - 1)] = this.values[q & this.mask]!;
    }
    this.names = names;
    this.values = values;
    this.mask = slots - 1;
  }

  private evictTo(limit: number): void {
    while (this.tableSize > limit) {
      const slot = (this.seq - this.length) & this.mask;
      const name = this.names[slot]!;
      this.tableSize -= name.length + this.values[slot]!.length + ENTRY_OVERHEAD;
      const seqs = this.byName.get(name)!;
      seqs.shift();
      if (seqs.length === 0) this.byName.delete(name);
      this.names[slot] = '';
      this.values[slot] = '';
      this.length--;
    }
  }
}

/** Upper bound of the bytes `headers` takes encoded (raw or Huffman, whichever is written). */
function boundOf(headers: HeaderMap): number {
  let b = 0;
  for (const name in headers) {
    const v = headers[name]!;
    if (typeof v === 'string') b += name.length + v.length + FIELD_OVERHEAD_BOUND;
    else for (let i = 0; i < v.length; i++) b += name.length + v[i]!.length + FIELD_OVERHEAD_BOUND;
  }
  return b;
}
