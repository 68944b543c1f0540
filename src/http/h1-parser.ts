// Node's own HTTP/1.1 parser (llhttp, the one behind node:http), used directly on raw sockets by both the
// downstream connection and the upstream pool. Going around node:http's IncomingMessage/ServerResponse streams
// (and undici on the upstream side) more than doubled small-request throughput in a prototype; the parser, its
// strictness and its limits stay Node's. `_http_common` is a public-but-undocumented core module that node:http
// itself builds on; its parser API has been stable since Node 12 (callbacks by index, flat header arrays).
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { newHeaderMap, type HeaderMap } from './headers.js';

/** Flat [name, value, name, value, ...] as the parser delivers header lines. */
export type FlatHeaders = string[];

export interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  /** Bytes consumed, or an Error with `code` 'HPE_*' and `bytesParsed`. */
  execute(data: Buffer): number | ParseError;
  /** Signals end of input (close-delimited bodies); an Error when a message is incomplete. */
  finish(): undefined | ParseError;
  /** Reads straight from the socket's native handle: no JS Buffer or 'data' event per read (see below). */
  consume(handle: object): void;
  unconsume(): void;
  /** A copy of the input being parsed now (consumed mode: where the bytes after an upgrade head are). */
  getCurrentBuffer(): Buffer;
  close(): void;
  free(): void;
  remove(): void;
  /**
   * Whether the head of the message last begun is complete. The binding tracks it natively at each message's
   * first byte, whether or not a JS onMessageBegin is registered; false before the first message too.
   */
  headersCompleted(): boolean;
  /** Milliseconds since the current message's first byte (meaningless before the first message begins). */
  duration(): number;
  [index: number]: unknown;
}

export interface ParseError extends Error {
  code: string;
  bytesParsed: number;
}

interface ParserModule {
  HTTPParser: {
    new (): NativeParser;
    readonly REQUEST: number;
    readonly RESPONSE: number;
    readonly kOnMessageBegin: number;
    readonly kOnHeaders: number;
    readonly kOnHeadersComplete: number;
    readonly kOnBody: number;
    readonly kOnMessageComplete: number;
    readonly kOnExecute: number;
    readonly kLenientNone: number;
  };
  methods: readonly string[];
}

const core = createRequire(import.meta.url)('_http_common') as ParserModule;

const HTTPParser = core.HTTPParser;
/** Method names by the index the parser reports. */
export const METHODS = core.methods;
const { kOnHeaders, kOnHeadersComplete, kOnBody, kOnMessageComplete, kOnExecute, kOnMessageBegin } = HTTPParser;

/** What `kOnHeadersComplete` returns to tell the parser there is no body to read (HEAD, 1xx). */
export const SKIP_BODY = 1;
/**
 * What `kOnHeadersComplete` returns to stop parsing right after the head (llhttp's HPE_PAUSED): that read's
 * execute then reports a ParseError with code PAUSED and `bytesParsed` at the end of the head. The parser stays
 * paused until resetParser(): the caller reads the body itself (readRawBody in src/upstream/http1-pool.ts).
 */
export const PAUSE = 21;
export const PAUSED = 'HPE_PAUSED';

/** What a parser reports to the object that owns it (a downstream or an upstream connection). */
export interface ParserOwner {
  /** A long head arrives in parts: header lines (and URL) flushed before the head completed, or trailers. */
  onHeaderLines(lines: FlatHeaders, url: string): void;
  /** Returns 0, SKIP_BODY, or 2 (upgrade: stop parsing after the head). */
  onHeadersComplete(
    major: number,
    minor: number,
    lines: FlatHeaders | undefined,
    method: number,
    url: string | undefined,
    status: number,
    upgrade: boolean,
    keepAlive: boolean,
  ): number;
  onBody(chunk: Buffer): void;
  onMessageComplete(): void;
  /** After each read the parser took from the socket (consumed mode): bytes parsed, or the parse error. */
  onExecute(ret: number | ParseError): void;
  onMessageBegin?(): void;
}

const kOwner = Symbol('pillion.parserOwner');
const kConsumed = Symbol('pillion.parserConsumed');
const kKind = Symbol('pillion.parserKind');
const kMaxHeaderBytes = Symbol('pillion.parserMaxHeaderBytes');
type OwnedParser = NativeParser & { [kOwner]: ParserOwner | null; [kConsumed]?: boolean; [kKind]: number; [kMaxHeaderBytes]: number };

/**
 * A strict parser (no lenient flags: what llhttp rejects gets a 400/502) whose callbacks are shared functions
 * that find their owner through a symbol, so a parsed message costs no closure.
 */
export function createParser(
  kind: 'request' | 'response',
  maxHeaderBytes: number,
  owner: ParserOwner,
  withMessageBegin: boolean,
): NativeParser {
  const parser = new HTTPParser() as OwnedParser;
  parser[kKind] = kind === 'request' ? HTTPParser.REQUEST : HTTPParser.RESPONSE;
  parser[kMaxHeaderBytes] = maxHeaderBytes;
  parser.initialize(parser[kKind], {}, maxHeaderBytes, HTTPParser.kLenientNone);
  parser[kOwner] = owner;
  parser[kOnHeaders] = ownerHeaderLines;
  parser[kOnHeadersComplete] = ownerHeadersComplete;
  parser[kOnBody] = ownerBody;
  parser[kOnMessageComplete] = ownerMessageComplete;
  parser[kOnExecute] = ownerExecute;
  // Set either way: the binding looks the callback up at each message, and an index never set is a hole it
  // searches the prototype chain for.
  parser[kOnMessageBegin] = withMessageBegin ? ownerMessageBegin : undefined;
  return parser;
}

/**
 * Registers or removes the owner's onMessageBegin. llhttp's binding looks the callback up at each message's
 * first byte, so an owner that only needs it at times (the upstream pool: between responses) saves a C++ → JS
 * call per message while it is off.
 */
export function setMessageBegin(parser: NativeParser, on: boolean): void {
  parser[kOnMessageBegin] = on ? ownerMessageBegin : undefined;
}

/**
 * Frees a parser whose connection is done. The native parser is a strong handle that pins its JS object, and
 * through our owner field the connection and socket: never freed, every closed connection stayed in memory
 * (~3.8 KB each). As node:http's freeParser does: stop reading, then delete the native object once the stack
 * has unwound (we may be inside one of its callbacks).
 */
export function releaseParser(parser: NativeParser): void {
  const owned = parser as OwnedParser;
  if (owned[kOwner] === null) return;
  owned[kOwner] = null;
  if (owned[kConsumed] === true) unconsumeSocket(parser);
  parser.remove();
  setImmediate(closeParser, parser);
}

function closeParser(parser: NativeParser): void {
  parser.close();
}

/**
 * A fresh start for a parser left paused after a head (PAUSE) whose body was read around it: it expects the
 * next message's first byte. llhttp has no "skip N body bytes"; `initialize` is what node:http's parser pool
 * does to reuse a parser.
 */
export function resetParser(parser: NativeParser): void {
  const owned = parser as OwnedParser;
  parser.initialize(owned[kKind], {}, owned[kMaxHeaderBytes], HTTPParser.kLenientNone);
}

/**
 * Whether header `name` is `lower` (lower case letters and '-', same length) in any case, with no lower-cased copy
 * per call. ASCII letters differ from their upper case by 0x20 only; the one other byte that ORs to '-' (CR) is no
 * header-name character, and llhttp has refused those already.
 */
export function headerNameIs(name: string, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((name.charCodeAt(i) | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** The socket's reads go back to its JS stream (an Upgrade hand-over, a raw body read, or the parser's release). */
export function unconsumeSocket(parser: NativeParser): void {
  (parser as OwnedParser)[kConsumed] = false;
  parser.unconsume();
}

// A released parser may still be inside execute() when its owner lets go: callbacks after that are dropped.
function ownerHeaderLines(this: OwnedParser, lines: FlatHeaders, url: string): void {
  this[kOwner]?.onHeaderLines(lines, url);
}
function ownerHeadersComplete(
  this: OwnedParser,
  major: number,
  minor: number,
  lines: FlatHeaders | undefined,
  method: number,
  url: string | undefined,
  status: number,
  _statusMessage: string,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  return this[kOwner]?.onHeadersComplete(major, minor, lines, method, url, status, upgrade, keepAlive) ?? 0;
}
function ownerBody(this: OwnedParser, chunk: Buffer): void {
  this[kOwner]?.onBody(chunk);
}
function ownerMessageComplete(this: OwnedParser): void {
  this[kOwner]?.onMessageComplete();
}
function ownerExecute(this: OwnedParser, ret: number | ParseError): void {
  this[kOwner]?.onExecute(ret);
}
function ownerMessageBegin(this: OwnedParser): void {
  this[kOwner]?.onMessageBegin?.();
}

/** Header lines (and URL) of a head the parser hands over in parts; also trailer lines. */
export class PendingHead {
  lines: FlatHeaders = [];
  url = '';

  add(lines: FlatHeaders, url: string): void {
    for (let i = 0; i < lines.length; i++) this.lines.push(lines[i]!);
    this.url += url;
  }

  /** The lines of the head: those the parser gave now, else the collected ones (then cleared). */
  takeLines(given: FlatHeaders | undefined): FlatHeaders {
    if (given !== undefined) return given;
    const lines = this.lines;
    this.lines = [];
    return lines;
  }

  clear(): void {
    if (this.lines.length > 0) this.lines = [];
    this.url = '';
  }

  takeUrl(given: string | undefined): string {
    if (given) return given;
    const url = this.url;
    this.url = '';
    return url;
  }
}

/** The parts of a net.Socket's native handle that consumed reading needs; node:http's server uses the same. */
interface StreamHandle {
  reading: boolean;
  readStart(): number;
  readStop(): number;
}
type HandleSocket = Socket & { _handle: StreamHandle | null };

/**
 * Hands the socket's reads to the parser in C++ (what node:http's server does): each read is parsed from one
 * reused native buffer, with no JS Buffer, stream push or 'data' event. Body chunks still arrive as Buffers of
 * their own. Large bodies went from ~0.6 to ~1.2 GB/s in a prototype, mostly from halving the 64 KiB
 * allocations (each one external memory that drives V8's major GCs). Reads then bypass the JS stream, so
 * pausing means stopping the handle (pauseReading), and a socket timeout would not see them (the owners keep
 * idle timers of their own: see coarse-clock.ts).
 * Returns false when the socket has no stream handle (then the caller feeds `execute` from 'data').
 */
export function consumeSocket(parser: NativeParser, socket: Socket): boolean {
  const handle = (socket as HandleSocket)._handle;
  if (handle === null) return false;
  parser.consume(handle);
  (parser as OwnedParser)[kConsumed] = true;
  resumeReading(socket);
  return true;
}

export function pauseReading(socket: Socket): void {
  const handle = (socket as HandleSocket)._handle;
  if (handle === null || !handle.reading) return;
  handle.reading = false;
  handle.readStop();
}

export function resumeReading(socket: Socket): void {
  const handle = (socket as HandleSocket)._handle;
  if (handle === null || handle.reading) return;
  handle.reading = true;
  handle.readStart();
}

export function isParseError(ret: number | ParseError | undefined): ret is ParseError {
  return typeof ret === 'object';
}

/**
 * Header lines → forwardable map: lower-case names, repeated lines kept as arrays (so set-cookie and friends
 * survive), names in `drop` left out.
 */
export function headerMapFromFlat(flat: FlatHeaders, drop: ReadonlySet<string> | null): HeaderMap {
  const out = newHeaderMap();
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const name = flat[i]!.toLowerCase();
    if (drop !== null && drop.has(name)) continue;
    addHeader(out, name, flat[i + 1]!);
  }
  return out;
}

/**
 * Adds one field line to a map: a repeated name's values become an array (set-cookie and friends survive).
 * Returns whether the name was new to the map.
 */
function addHeader(out: HeaderMap, name: string, value: string): boolean {
  const prev = out[name];
  if (prev === undefined) out[name] = value;
  else if (typeof prev === 'string') out[name] = [prev, value];
  else prev.push(value);
  return prev === undefined;
}

/** Positions a HeaderNames memo remembers: heads with more lines than this take the plain path past it. */
const MEMO_LINES = 48;

// What a HeaderNames memo knows of a name at a position: whether `drop` has it, and whether it is one of the names
// map() notes for its caller (NOTE_*), so that no caller scans the lines again for them.
const DROPPED = 1;
const NOTE_CONTENT_LENGTH = 2;
const NOTE_TRANSFER_ENCODING = 4;
const NOTE_KEEP_ALIVE = 8;
const NOTES = NOTE_CONTENT_LENGTH | NOTE_TRANSFER_ENCODING | NOTE_KEEP_ALIVE;
/** The first line of the head with this name: its value is stored without looking for an earlier one. */
const FIRST = 16;

function noteOf(lower: string): number {
  switch (lower) {
    case 'content-length':
      return NOTE_CONTENT_LENGTH;
    case 'transfer-encoding':
      return NOTE_TRANSFER_ENCODING;
    case 'keep-alive':
      return NOTE_KEEP_ALIVE;
    default:
      return 0;
  }
}

/**
 * headerMapFromFlat for one call site, remembering the last head's names by position. A keep-alive client (or
 * upstream) sends the same names in the same order head after head, so a name usually equals the one before at
 * its position: then its lower-case form and whether `drop` has it are known, and the key the map is written
 * with is one V8 already hashed and internalized, where a fresh string from the parser is lower-cased, hashed
 * and looked up in the string table on every use as a key or Set member. A miss costs one string compare more
 * than the plain path, and the slot is overwritten. One memo per call site serves every connection (one head is
 * converted at a time), bounded at MEMO_LINES positions.
 *
 * map() also notes where the framing and keep-alive lines of the head are (contentLength, keepAliveAt), even
 * those `drop` leaves out: the upstream pool reads them per response, and a scan of its own cost a
 * case-insensitive compare per line each.
 */
export class HeaderNames {
  private readonly raw: string[] = new Array<string>(MEMO_LINES).fill('');
  private readonly lower: string[] = new Array<string>(MEMO_LINES).fill('');
  /** DROPPED | NOTE_* by position. */
  private readonly flags = new Uint8Array(MEMO_LINES);
  /** Of the head map() converted last: the index of its first keep-alive line, or -1. */
  keepAliveAt = -1;
  /** Of the head map() converted last: the index of its last content-length line, or -1. */
  private contentLengthAt = -1;
  /** Of the head map() converted last: whether it has a transfer-encoding line. */
  private transferEncoding = false;

  constructor(private readonly drop: ReadonlySet<string> | null) {}

  /** headerMapFromFlat(flat, drop), the same map. */
  map(flat: FlatHeaders): HeaderMap {
    const out = newHeaderMap();
    const drop = this.drop;
    this.keepAliveAt = -1;
    this.contentLengthAt = -1;
    this.transferEncoding = false;
    // Every position so far matched the last head's: which names came before is known, so FIRST holds.
    let same = true;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const raw = flat[i]!;
      const slot = i >> 1;
      let name: string;
      let flags: number;
      if (slot < MEMO_LINES && this.raw[slot] === raw) {
        name = this.lower[slot]!;
        flags = this.flags[slot]!;
      } else {
        same = false;
        name = raw.toLowerCase();
        flags = noteOf(name) | (drop !== null && drop.has(name) ? DROPPED : 0);
        if (slot < MEMO_LINES) {
          this.raw[slot] = raw;
          this.lower[slot] = name;
          this.flags[slot] = flags;
        }
      }
      if ((flags & NOTES) !== 0) this.note(flags, i);
      if ((flags & DROPPED) !== 0) continue;
      // A plain store where the name is known to be new: a keyed load less per line (megamorphic: heads differ).
      if (same && (flags & FIRST) !== 0) out[name] = flat[i + 1]!;
      else if (addHeader(out, name, flat[i + 1]!) !== ((flags & FIRST) !== 0) && slot < MEMO_LINES) this.flags[slot] = flags ^ FIRST;
    }
    return out;
  }

  private note(flags: number, i: number): void {
    if ((flags & NOTE_CONTENT_LENGTH) !== 0) this.contentLengthAt = i;
    else if ((flags & NOTE_TRANSFER_ENCODING) !== 0) this.transferEncoding = true;
    else if (this.keepAliveAt < 0) this.keepAliveAt = i;
  }

  /**
   * The body length the head map() converted last (`flat`) announces with content-length when nothing else frames
   * the body (no transfer-encoding), else -1. llhttp has already refused a malformed or repeated content-length.
   */
  contentLength(flat: FlatHeaders): number {
    if (this.transferEncoding || this.contentLengthAt < 0) return -1;
    const length = Number(flat[this.contentLengthAt + 1]);
    return Number.isSafeInteger(length) ? length : -1;
  }
}

/** Appends `name: value` lines for every header of `headers` (arrays become repeated lines). */
export function serializeHeaders(head: string, headers: HeaderMap): string {
  for (const name in headers) {
    const value = headers[name]!;
    if (typeof value === 'string') head += name + ': ' + value + '\r\n';
    else for (let i = 0; i < value.length; i++) head += name + ': ' + value[i] + '\r\n';
  }
  return head;
}

/** Chunk-size line of a chunked body (RFC 9112 §7.1). */
export function chunkHeader(length: number): string {
  return length.toString(16) + '\r\n';
}

export const CRLF = '\r\n';
export const LAST_CHUNK = '0\r\n\r\n';

/** The last chunk with trailer fields (RFC 9112 §7.1.2). */
export function lastChunkWithTrailers(trailers: HeaderMap | null): string {
  if (trailers === null) return LAST_CHUNK;
  return serializeHeaders('0\r\n', trailers) + '\r\n';
}
