// The xDS control server: ADS (state of the world) over gRPC, a pure per-stream ACK/NACK state machine, config reloads.
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { pino, type Logger } from 'pino';
import { adsService } from '../src/xds/ads-proto.js';
import { startControlAdmin, type ControlAdmin } from './admin.js';
import { nodeInfoFromXdsNode, type NodeInfo } from './compiler.js';
import type { MeshConfig, MeshConfigProblem } from './mesh-config.js';
import { notEnforcedWarnings } from './not-enforced.js';
import { ControlMetrics } from './metrics.js';
import {
  SERVED_TYPES,
  SnapshotCache,
  isServedType,
  meshVersion,
  resourcesVersion,
  selectResources,
  typeLabel,
  type NodeSnapshot,
  type ServedType,
  type SnapshotResource,
  type Subscription,
} from './snapshot-cache.js';
import { ConfigWatcher, loadConfigFile, type ConfigLoadResult } from './watch.js';
import { certificateService } from '../src/tls/ca-proto.js';
import type { MeshCa } from './ca/mesh-ca.js';

// ==== per-stream state machine (pure: no sockets, no timers; clock and nonces injected) ====================

/** The fields of a DiscoveryRequest the state machine reads (proto-loader's keepCase shape). */
export interface DiscoveryRequestLike {
  readonly type_url?: string;
  readonly resource_names?: readonly string[];
  readonly version_info?: string;
  readonly response_nonce?: string;
  readonly error_detail?: { readonly code?: number; readonly message?: string } | null;
}

/** A DiscoveryResponse the stream should send now. */
export interface PlannedResponse {
  readonly typeUrl: ServedType;
  readonly version: string;
  readonly nonce: string;
  readonly resources: readonly SnapshotResource[];
}

export interface NackRecord {
  readonly version: string;
  readonly error: string;
  /** ms since the epoch */
  readonly at: number;
}

export interface TypeStatus {
  readonly subscription: Subscription;
  readonly sentVersion?: string;
  readonly sentNonce?: string;
  readonly ackedVersion?: string;
  readonly lastNack?: NackRecord;
}

/**
 * What a request was: the first of its type on the stream, an ACK or NACK of the last response, a request
 * carrying an older nonce (stale), or a type this server does not serve.
 */
export type RequestKind = 'initial' | 'ack' | 'nack' | 'stale' | 'unknown-type' | 'refused';

/** The limit a refused request (or stream) passed: the `limit` label of pillion_control_streams_refused_total. */
export type RefusalLimit = 'streams' | 'names_per_type' | 'name_length' | 'name_chars_per_stream' | 'node_field_length' | 'first_request_timeout' | 'unread_responses';

export interface RequestDecision {
  readonly kind: RequestKind;
  /** For 'refused': which limit, and why in words (the stream ends with it as its gRPC status details). */
  readonly refused?: { readonly limit: RefusalLimit; readonly reason: string };
  readonly response?: PlannedResponse;
  readonly nack?: NackRecord;
}

/**
 * What one ADS stream may hold. Without these, each stream kept every resource name it sent (a sorted copy, with
 * no bound but gRPC's 4 MiB per message): 40 streams of 100,000 names took the control server from 66 to 461 MiB
 * RSS, and /proxies to a 158 MB document built in 3.2 s.
 */
export interface SubscriptionLimits {
  /** Resource names in one type's subscription (Envoy subscribes by name to one per cluster or route table). */
  readonly maxNamesPerType: number;
  /** Characters in one resource name (and in the node id and metadata strings a stream announces). */
  readonly maxNameLength: number;
  /** Characters of resource names a stream holds over all its types. */
  readonly maxNameCharsPerStream: number;
}

export const DEFAULT_SUBSCRIPTION_LIMITS: SubscriptionLimits = {
  maxNamesPerType: 10_000,
  maxNameLength: 1_024,
  maxNameCharsPerStream: 2 * 1024 * 1024,
};

interface TypeState {
  subscription: Subscription;
  /** Characters of the names in `subscription` (0 for wildcard). */
  nameChars: number;
  /** The subscription the last response was computed for. */
  sentSubscription?: Subscription;
  /** resourcesVersion of the last response: what decides whether a new snapshot sends again. */
  sentContent?: string;
  sentVersion?: string;
  sentNonce?: string;
  ackedVersion?: string;
  lastNack?: NackRecord;
}

/** The longest NACK message kept (for /proxies) and logged, in UTF-8 bytes; the rest is counted, not kept. */
export const MAX_NACK_MESSAGE_BYTES = 1024;

/**
 * `s` cut to at most `maxBytes` of UTF-8 (on a character boundary), followed by "… (N more bytes)" when cut. A
 * client's strings (a NACK's error_detail.message may be megabytes) are stored and logged only through this.
 */
export function truncateText(s: string, maxBytes: number = MAX_NACK_MESSAGE_BYTES): string {
  // A UTF-8 character is at most 4 bytes (a UTF-16 surrogate pair, two code units, is 4 bytes): the first
  // maxBytes code units hold at least maxBytes bytes, or all of s.
  if (s.length * 3 <= maxBytes) return s;
  const total = Buffer.byteLength(s);
  if (total <= maxBytes) return s;
  const head = Buffer.from(s.slice(0, maxBytes));
  let end = Math.min(maxBytes, head.length);
  // Back up to the start of a character: continuation bytes are 10xxxxxx.
  if (end < head.length) while (end > 0 && (head[end]! & 0xc0) === 0x80) end--;
  return `${head.subarray(0, end).toString()}… (${total - end} more bytes)`;
}

/** resource_names → subscription. An empty list, or the explicit wildcard name "*", subscribes to all. */
export function toSubscription(names: readonly string[] | undefined): Subscription {
  if (!names || names.length === 0 || names.includes('*')) return '*';
  return [...new Set(names)].sort();
}

function sameSubscription(a: Subscription | undefined, b: Subscription | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a === '*' || b === '*') return a === b;
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

function tooManyNames(typeUrl: ServedType, count: number, max: number): string {
  return `${count} resource names for ${typeLabel(typeUrl).toUpperCase()}; this server takes at most ${max} per type per stream`;
}

/**
 * The ADS state of one stream, per resource type: what the client subscribed to, what was sent (version,
 * nonce), what it ACKed, and its last NACK. Rules (xDS protocol spec, "ACK/NACK and resource type instance
 * version" and "When to send an update"):
 * - a request whose response_nonce is the nonce of the last response is an ACK, or a NACK if it carries
 *   error_detail; a NACK is recorded and the rejected version is never resent: only a config change that
 *   yields another version sends again (DESIGN.md §5);
 * - a request with any other nonce is stale: the server must not answer it, but its resource_names are the
 *   client's current subscription and are kept;
 * - a request whose subscription differs from the one the last response was computed for gets a response
 *   at once (even at the same version: a client learns from it which names do not exist);
 * - a new snapshot sends, per subscribed type, only when that type's content for this subscription changed
 *   (resourcesVersion); what it sends carries the snapshot's config version as version_info;
 * - a request past a SubscriptionLimits bound is 'refused' and changes nothing (the I/O shell ends the stream).
 */
export class AdsStreamState {
  private readonly types = new Map<ServedType, TypeState>();
  private readonly limits: SubscriptionLimits;

  constructor(
    private readonly opts: { readonly nonce: () => string; readonly now: () => number; readonly limits?: Partial<SubscriptionLimits> },
  ) {
    this.limits = { ...DEFAULT_SUBSCRIPTION_LIMITS, ...opts.limits };
  }

  onRequest(req: DiscoveryRequestLike, snapshot: NodeSnapshot): RequestDecision {
    const typeUrl = req.type_url ?? '';
    if (!isServedType(typeUrl)) return { kind: 'unknown-type' };
    // Checked before anything is copied or kept; a refused request changes nothing (the shell ends the stream).
    const checked = this.checkNames(typeUrl, req.resource_names ?? []);
    if ('refused' in checked) return { kind: 'refused', refused: checked.refused };
    const subscription = toSubscription(req.resource_names);
    const nameChars = subscription === '*' ? 0 : checked.chars;
    let st = this.types.get(typeUrl);
    if (!st) {
      // The first request of a type on this stream always gets the current state of the world.
      st = { subscription, nameChars };
      this.types.set(typeUrl, st);
      return { kind: 'initial', response: this.plan(typeUrl, st, snapshot, true) };
    }
    st.subscription = subscription;
    st.nameChars = nameChars;
    if ((req.response_nonce ?? '') !== st.sentNonce) return { kind: 'stale' };

    let kind: RequestKind;
    let nack: NackRecord | undefined;
    if (req.error_detail) {
      kind = 'nack';
      const e = req.error_detail;
      const message = typeof e.message === 'string' ? e.message : '';
      nack = { version: st.sentVersion ?? '', error: message !== '' ? truncateText(message) : `status code ${e.code ?? 0}`, at: this.opts.now() };
      st.lastNack = nack;
    } else {
      kind = 'ack';
      st.ackedVersion = st.sentVersion;
    }
    const response = sameSubscription(subscription, st.sentSubscription) ? undefined : this.plan(typeUrl, st, snapshot, true);
    return { kind, ...(response ? { response } : {}), ...(nack ? { nack } : {}) };
  }

  /** A new snapshot for this stream's node: the responses to send, in CDS, EDS, LDS, RDS order. */
  onSnapshot(snapshot: NodeSnapshot): PlannedResponse[] {
    const out: PlannedResponse[] = [];
    for (const typeUrl of SERVED_TYPES) {
      const st = this.types.get(typeUrl);
      if (!st) continue;
      const r = this.plan(typeUrl, st, snapshot, false);
      if (r) out.push(r);
    }
    return out;
  }

  status(): ReadonlyMap<ServedType, TypeStatus> {
    return this.types;
  }

  private checkNames(typeUrl: ServedType, names: readonly string[]): { chars: number } | { refused: { limit: RefusalLimit; reason: string } } {
    const { maxNamesPerType, maxNameLength, maxNameCharsPerStream } = this.limits;
    const type = typeLabel(typeUrl).toUpperCase();
    if (names.length > maxNamesPerType) {
      return { refused: { limit: 'names_per_type', reason: tooManyNames(typeUrl, names.length, maxNamesPerType) } };
    }
    let chars = 0;
    for (const name of names) {
      if (name.length > maxNameLength) {
        return { refused: { limit: 'name_length', reason: `a ${type} resource name of ${name.length} characters; this server takes at most ${maxNameLength}` } };
      }
      chars += name.length;
    }
    let total = chars;
    for (const [t, st] of this.types) if (t !== typeUrl) total += st.nameChars;
    if (total > maxNameCharsPerStream) {
      return { refused: { limit: 'name_chars_per_stream', reason: `${total} characters of resource names on one stream; this server takes at most ${maxNameCharsPerStream}` } };
    }
    return { chars };
  }

  private plan(typeUrl: ServedType, st: TypeState, snapshot: NodeSnapshot, force: boolean): PlannedResponse | undefined {
    const resources = selectResources(snapshot, typeUrl, st.subscription);
    const content = resourcesVersion(resources);
    // The last sent content is either ACKed, in flight, or NACKed: in every case sending it again is wrong, even
    // under a newer config version (an edit elsewhere). A type an edit left alone keeps the version it was sent at.
    if (!force && content === st.sentContent && sameSubscription(st.subscription, st.sentSubscription)) return undefined;
    const nonce = this.opts.nonce();
    // version_info is the mesh config's version, the string /proxies shows as configVersion (not a per-type hash).
    const version = snapshot.version;
    st.sentContent = content;
    st.sentVersion = version;
    st.sentNonce = nonce;
    st.sentSubscription = st.subscription;
    return { typeUrl, version, nonce, resources };
  }
}

// ==== gRPC I/O shell ===================================================================================

export interface ControlServerOptions {
  readonly configFile: string;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly adminPort: number;
  readonly logger?: Logger;
  /** Quiet time after a file event before the config is read again (default 50 ms). */
  readonly debounceMs?: number;
  /** What ADS streams may hold (DEFAULT_CONTROL_LIMITS); tests lower them. */
  readonly limits?: Partial<ControlLimits>;
  /**
   * The mesh CA (xds/ca/): with it, a second port serves ADS over TLS and the certificate service. The CSR service
   * is on that port only, as Istio serves it: a bootstrap token must not cross the network in plaintext.
   */
  /** serverNames: extra DNS names/IPs in the TLS port's certificate (the Service name proxies dial in Kubernetes). */
  readonly ca?: { readonly dir: string; readonly securePort: number; readonly certTtlMs: number; readonly serverNames?: readonly string[] };
}

export interface ControlLimits extends SubscriptionLimits {
  /**
   * ADS streams open at once, over all connections (grpc-js has no such limit, only a per-connection one): past
   * it a new stream ends at once with RESOURCE_EXHAUSTED.
   */
  readonly maxStreams: number;
  /** HTTP/2 streams per connection (grpc-js's `grpc.max_concurrent_streams`; Node's default is 2^32-1). */
  readonly maxStreamsPerConnection: number;
  /**
   * How long a new stream may stay silent before its first DiscoveryRequest (with the node): a stream that never
   * speaks would otherwise hold one of the `maxStreams` places for ever, and enough of them lock proxies out.
   */
  readonly firstRequestTimeoutMs: number;
  /**
   * Responses a stream's client has not taken yet (what gRPC queues for it once the connection's flow control
   * and socket buffers are full): a client that stops reading would otherwise grow the server by a whole push
   * per config edit, for ever. A reading client has at most one per type in flight. Past it the stream ends; a
   * client that recovers reconnects and resubscribes.
   */
  readonly maxUnreadResponsesPerStream: number;
}

export const DEFAULT_CONTROL_LIMITS: ControlLimits = {
  ...DEFAULT_SUBSCRIPTION_LIMITS,
  maxStreams: 10_000,
  maxStreamsPerConnection: 1_000,
  firstRequestTimeoutMs: 30_000,
  maxUnreadResponsesPerStream: 64,
};

/** Names listed per type on /proxies; past it only their count (subscribedCount) says how many. */
export const PROXIES_MAX_LISTED_NAMES = 32;
/** Characters of names listed per type on /proxies, so one entry stays a few KiB whatever the names. */
const PROXIES_MAX_LISTED_CHARS = 2_048;

export interface ControlServer {
  readonly port: number;
  readonly adminPort: number;
  /** The TLS port (ADS and CreateCertificate); -1 without a CA. */
  readonly securePort: number;
  /** Read the config file now (as if it had changed) and push what changed. */
  reload(): Promise<void>;
  close(): Promise<void>;
}

export interface ConfigErrorInfo {
  readonly message: string;
  readonly problems: readonly MeshConfigProblem[];
  readonly at: string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loaded = any;
type AdsCall = grpc.ServerDuplexStream<Loaded, Loaded>;

/** Set on a DiscoveryRequest whose resource_names were counted on the wire and not decoded: how many there were. */
const NAMES_NOT_DECODED = Symbol('resource names not decoded');

/**
 * Counts a DiscoveryRequest's resource_names (field 3) and reads its type_url (field 4) from the wire, skipping
 * every other field; undefined when the bytes are not a plain run of fields (protobufjs then decodes them, and
 * says what is wrong).
 */
export function scanDiscoveryRequest(bytes: Uint8Array): { names: number; typeUrl: string } | undefined {
  let at = 0;
  let names = 0;
  let typeUrl = '';
  const varint = (): number | undefined => {
    let value = 0;
    for (let shift = 0; shift < 35 && at < bytes.length; shift += 7) {
      const b = bytes[at++]!;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    return undefined;
  };
  while (at < bytes.length) {
    const tag = varint();
    if (tag === undefined) return undefined;
    const field = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0:
        // A varint of up to 10 bytes: skip it without reading its value.
        while (at < bytes.length && bytes[at]! >= 0x80) at++;
        at++;
        break;
      case 1:
        at += 8;
        break;
      case 5:
        at += 4;
        break;
      case 2: {
        const length = varint();
        if (length === undefined || at + length > bytes.length) return undefined;
        if (field === 3) names++;
        else if (field === 4) typeUrl = Buffer.from(bytes.buffer, bytes.byteOffset + at, Math.min(length, 256)).toString();
        at += length;
        break;
      }
      default:
        return undefined;
    }
  }
  return at === bytes.length ? { names, typeUrl } : undefined;
}

/**
 * The ADS service with a request decoder that counts resource_names first: a request with more than the limit is
 * refused without making its names into strings (100,000 names of a 3 MiB request are ~10 MiB of heap, per
 * request, garbage or not); the stream is then ended with RESOURCE_EXHAUSTED.
 */
function adsServiceDefinition(maxNamesPerType: number): grpc.ServiceDefinition {
  const service = adsService().service;
  const method = service.StreamAggregatedResources!;
  const decode = method.requestDeserialize;
  return {
    ...service,
    StreamAggregatedResources: {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        const scan = scanDiscoveryRequest(bytes);
        if (scan !== undefined && scan.names > maxNamesPerType) return { type_url: scan.typeUrl, [NAMES_NOT_DECODED]: scan.names };
        return decode(bytes);
      },
    },
  };
}

/** The largest DiscoveryRequest the server decodes (gRPC's max receive message size). */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;

/** A NACK warning per type per stream at most this often; the NACKs in between are counted, then summarized. */
export const NACK_LOG_INTERVAL_MS = 60_000;

/** A client's string in a debug line: short, whatever the client sent. */
const clip = (v: unknown): string => truncateText(String(v ?? ''), 256);

/** One open ADS stream: its node, its state machine, and the gRPC call it writes to. */
class AdsStream {
  readonly state: AdsStreamState;
  readonly connectedAt = new Date();
  node: NodeInfo | undefined;
  key: string | undefined;
  private closed = false;
  private firstRequestTimer: NodeJS.Timeout | null;
  /** Per type: when a NACK was last logged, and how many were not logged since. */
  private readonly nackLog = new Map<ServedType, { at: number; unlogged: number }>();

  constructor(
    private readonly control: Control,
    readonly call: AdsCall,
    nonce: () => string,
  ) {
    this.state = new AdsStreamState({ nonce, now: Date.now, limits: control.limits });
    this.firstRequestTimer = setTimeout(() => this.silent(), control.limits.firstRequestTimeoutMs);
    this.firstRequestTimer.unref();
    call.on('data', (req: Loaded) => this.onRequest(req));
    call.on('end', () => this.close(true));
    call.on('cancelled', () => this.close(false));
    call.on('error', () => this.close(false));
  }

  private onRequest(req: Loaded): void {
    if (this.closed) return;
    const log = this.control.logger;
    const uncounted = (req as Record<symbol, unknown>)[NAMES_NOT_DECODED];
    if (typeof uncounted === 'number') {
      // Too many names to decode (see adsServiceDefinition): refused as the state machine would, node or not.
      const typeUrl = String(req.type_url);
      if (!isServedType(typeUrl)) return;
      const max = this.control.limits.maxNamesPerType;
      this.refuse('names_per_type', tooManyNames(typeUrl, uncounted, max));
      return;
    }
    if (!this.node) {
      // xDS spec: the first request of a stream carries the Node; later ones may omit it.
      if (!req.node) {
        this.call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'the first DiscoveryRequest of a stream must carry node' });
        return;
      }
      const node = nodeInfoFromXdsNode(req.node);
      // The node id and metadata are kept, logged and listed for the stream's life: as bounded as a resource name.
      const max = this.control.limits.maxNameLength;
      const long = (['id', 'service', 'namespace', 'serviceAccount'] as const).find((k) => node[k].length > max);
      if (long !== undefined) {
        this.refuse('node_field_length', `node ${long} of ${node[long].length} characters; this server takes at most ${max}`, grpc.status.INVALID_ARGUMENT);
        return;
      }
      this.node = node;
      this.clearFirstRequestTimer();
      this.key = this.control.attach(this);
    }
    const snapshot = this.control.cache.get(this.key!)!;
    const decision = this.state.onRequest(req, snapshot);
    const typeUrl = String(req.type_url ?? '');
    switch (decision.kind) {
      case 'unknown-type':
        log.debug({ node: this.node.id, typeUrl: clip(typeUrl) }, 'request for a type this server does not serve: ignored');
        return;
      case 'nack':
        this.control.metrics.nacks.inc({ type: typeLabel(typeUrl as ServedType) });
        this.logNack(typeUrl as ServedType, decision.nack!);
        break;
      case 'ack':
        log.debug({ node: this.node.id, typeUrl, version: clip(req.version_info) }, 'ACK');
        break;
      case 'stale':
        log.debug({ node: this.node.id, typeUrl, nonce: clip(req.response_nonce) }, 'stale nonce: ignored');
        break;
      case 'initial':
        break;
      case 'refused':
        this.refuse(decision.refused!.limit, decision.refused!.reason);
        return;
    }
    if (decision.response) this.send(decision.response);
  }

  /**
   * End the stream for passing a limit: one warning (a stream is refused once), the counter, and the reason as
   * the gRPC status details, so the client sees why. Everything the stream held is released.
   */
  refuse(limit: RefusalLimit, reason: string, code: grpc.status = grpc.status.RESOURCE_EXHAUSTED): void {
    if (this.closed) return;
    this.control.metrics.streamsRefused.inc({ limit });
    this.control.logger.warn(
      { node: this.node?.id, peer: this.call.getPeer(), limit, reason },
      'ADS stream refused: it passed a limit of this server',
    );
    // grpc-js sends an emitted error's code and details as the call's status, then ends it; 'error' closes us.
    this.call.emit('error', { code, details: reason });
    this.close(false);
  }

  /**
   * The first NACK of a type on this stream is logged (its message already cut to 1 KiB); after that at most one
   * per NACK_LOG_INTERVAL_MS, saying how many came in between, and the stream's close says how many were never
   * logged. Every NACK still counts in pillion_control_nacks_total and shows as lastNack on /proxies.
   */
  private logNack(typeUrl: ServedType, nack: NackRecord): void {
    const now = Date.now();
    const seen = this.nackLog.get(typeUrl);
    if (seen !== undefined && now - seen.at < NACK_LOG_INTERVAL_MS) {
      seen.unlogged++;
      return;
    }
    const notLogged = seen?.unlogged ?? 0;
    this.nackLog.set(typeUrl, { at: now, unlogged: 0 });
    this.control.logger.warn(
      { node: this.node!.id, typeUrl, version: nack.version, error: nack.error, ...(notLogged > 0 ? { nacksNotLogged: notLogged } : {}) },
      notLogged > 0
        ? `proxy rejected (NACKed) a config version (and ${notLogged} more NACKs of this type not logged since the last warning)`
        : 'proxy rejected (NACKed) a config version',
    );
  }

  /** NACKs this stream sent that were counted but not logged (rate limit), per type label. */
  unloggedNacks(): Record<string, number> | undefined {
    let out: Record<string, number> | undefined;
    for (const [typeUrl, { unlogged }] of this.nackLog) if (unlogged > 0) (out ??= {})[typeLabel(typeUrl)] = unlogged;
    return out;
  }

  /** Write a response; `changedAt` (ms) is when the config change it carries was detected. */
  send(r: PlannedResponse, changedAt?: number): void {
    if (this.closed) return;
    try {
      this.call.write({
        version_info: r.version,
        type_url: r.typeUrl,
        nonce: r.nonce,
        resources: r.resources.map((res) => ({ type_url: r.typeUrl, value: res.value })),
      });
    } catch (err) {
      this.control.logger.warn({ node: this.node?.id, err: (err as Error).message }, 'cannot write to ADS stream');
      this.close(false);
      return;
    }
    this.control.metrics.pushes.inc({ type: typeLabel(r.typeUrl) });
    if (changedAt !== undefined) this.control.metrics.pushDuration.observe((Date.now() - changedAt) / 1000);
    // grpc-js streams are in object mode: writableLength counts responses queued behind a client not reading.
    const unread = this.call.writableLength;
    const max = this.control.limits.maxUnreadResponsesPerStream;
    if (unread > max) this.refuse('unread_responses', `the client has not read ${unread} responses; this server holds at most ${max} per stream`);
  }

  /** No node within the first-request deadline: the stream ends, counted (not logged: they may come by thousands). */
  private silent(): void {
    this.firstRequestTimer = null;
    if (this.closed || this.node !== undefined) return;
    this.control.metrics.streamsRefused.inc({ limit: 'first_request_timeout' });
    const ms = this.control.limits.firstRequestTimeoutMs;
    this.call.emit('error', { code: grpc.status.DEADLINE_EXCEEDED, details: `no DiscoveryRequest with a node within ${ms} ms` });
    this.close(false);
  }

  private clearFirstRequestTimer(): void {
    if (this.firstRequestTimer === null) return;
    clearTimeout(this.firstRequestTimer);
    this.firstRequestTimer = null;
  }

  close(endCall: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.clearFirstRequestTimer();
    this.control.open--;
    if (endCall) {
      try {
        this.call.end();
      } catch {
        // already finished
      }
    }
    this.control.detach(this);
  }
}

/** The server's shared state: config, snapshots, metrics, open streams. */
class Control {
  readonly metrics = new ControlMetrics();
  readonly streams = new Set<AdsStream>();
  /** ADS streams open now, with a node or not yet (`streams` holds those that announced one). */
  open = 0;
  /** Refusals for the stream limit: logged at most once a minute, with the count since the last warning. */
  private streamLimitLog = { at: -Infinity, unlogged: 0 };
  readonly cache: SnapshotCache;
  configVersion: string;
  configError: ConfigErrorInfo | null = null;
  private readonly noncePrefix = randomBytes(4).toString('hex');
  private nonceCounter = 0;

  constructor(
    readonly logger: Logger,
    readonly file: string,
    initial: Extract<ConfigLoadResult, { ok: true }>,
    readonly limits: ControlLimits,
  ) {
    this.cache = new SnapshotCache(initial.mesh);
    this.configVersion = meshVersion(initial.mesh);
    this.metrics.setConfigVersion(this.configVersion);
  }

  /** Nonces are unique per response across the server's life (and, by the random prefix, across servers). */
  readonly nonce = (): string => `${this.noncePrefix}-${++this.nonceCounter}`;

  handle(call: AdsCall): void {
    if (this.open >= this.limits.maxStreams) {
      this.metrics.streamsRefused.inc({ limit: 'streams' });
      const now = Date.now();
      if (now - this.streamLimitLog.at >= NACK_LOG_INTERVAL_MS) {
        const notLogged = this.streamLimitLog.unlogged;
        this.streamLimitLog = { at: now, unlogged: 0 };
        this.logger.warn(
          { peer: call.getPeer(), limit: 'streams', maxStreams: this.limits.maxStreams, ...(notLogged > 0 ? { refusedNotLogged: notLogged } : {}) },
          'ADS stream refused: this server holds its most streams (warned at most once a minute)',
        );
      } else this.streamLimitLog.unlogged++;
      call.on('error', () => undefined);
      call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: `this server holds its most ADS streams (${this.limits.maxStreams})` });
      return;
    }
    this.open++;
    new AdsStream(this, call, this.nonce);
  }

  attach(stream: AdsStream): string {
    const { key, snapshot } = this.cache.acquire(stream.node!);
    this.streams.add(stream);
    this.metrics.connectedProxies.set(this.streams.size);
    this.logger.info({ node: stream.node!.id, service: stream.node!.service, peer: stream.call.getPeer() }, 'proxy connected');
    for (const w of snapshot.warnings) this.logger.warn({ node: stream.node!.id }, w);
    return key;
  }

  detach(stream: AdsStream): void {
    if (!this.streams.delete(stream)) return;
    this.cache.release(stream.key!);
    this.metrics.connectedProxies.set(this.streams.size);
    const unlogged = stream.unloggedNacks();
    if (unlogged) this.logger.warn({ node: stream.node!.id, nacksNotLogged: unlogged }, 'proxy disconnected; it sent NACKs that were counted but not logged (at most one warning a minute per type)');
    else this.logger.info({ node: stream.node!.id }, 'proxy disconnected');
  }

  /** A settled edit of the config file: swap snapshots and push, or record the error and keep serving. */
  apply(result: ConfigLoadResult, detectedAt: number): void {
    if (!result.ok) {
      this.configError = { message: result.error.message, problems: result.error.problems, at: new Date().toISOString() };
      this.metrics.configValid.set(0);
      this.metrics.configErrors.inc();
      this.logger.error(
        { file: this.file, problems: result.error.problems },
        `mesh config rejected, still serving version ${this.configVersion}:\n${result.error.message}`,
      );
      return;
    }
    this.configError = null;
    this.metrics.configValid.set(1);
    logNotEnforced(this.logger, this.file, result.mesh);
    const version = meshVersion(result.mesh);
    this.cache.setMesh(result.mesh);
    this.configVersion = version;
    this.metrics.setConfigVersion(version);
    let pushes = 0;
    for (const stream of this.streams) {
      const snapshot = this.cache.get(stream.key!)!;
      for (const r of stream.state.onSnapshot(snapshot)) {
        stream.send(r, detectedAt);
        pushes++;
      }
    }
    this.logger.info({ file: this.file, configVersion: version, proxies: this.streams.size, pushes }, 'mesh config applied');
  }

  proxies(): unknown {
    return {
      configVersion: this.configVersion,
      configError: this.configError,
      proxies: [...this.streams].map((s) => ({
        nodeId: s.node!.id,
        service: s.node!.service,
        namespace: s.node!.namespace,
        proxyless: this.cache.get(s.key!)?.proxyless ?? false,
        peer: s.call.getPeer(),
        connectedSince: s.connectedAt.toISOString(),
        types: Object.fromEntries(
          [...s.state.status()].map(([typeUrl, st]) => [
            typeLabel(typeUrl),
            {
              typeUrl,
              ...listedSubscription(st.subscription),
              versionSent: st.sentVersion ?? null,
              versionAcked: st.ackedVersion ?? null,
              lastNack: st.lastNack ? { version: st.lastNack.version, error: st.lastNack.error, at: new Date(st.lastNack.at).toISOString() } : null,
            },
          ]),
        ),
      })),
    };
  }
}

/**
 * A subscription as /proxies lists it: '*', or the first names (at most PROXIES_MAX_LISTED_NAMES, and
 * PROXIES_MAX_LISTED_CHARS of them) with the count of all of them, so a proxy's entry stays small.
 */
function listedSubscription(sub: Subscription): { subscribed: Subscription; subscribedCount: number | null } {
  if (sub === '*') return { subscribed: '*', subscribedCount: null };
  const listed: string[] = [];
  let chars = 0;
  for (const name of sub) {
    if (listed.length >= PROXIES_MAX_LISTED_NAMES || chars + name.length > PROXIES_MAX_LISTED_CHARS) break;
    listed.push(name);
    chars += name.length;
  }
  return { subscribed: listed, subscribedCount: sub.length };
}

function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Start the control server: load and validate the config (rejects with its MeshConfigError when it is bad),
 * serve ADS on host:port and the admin endpoints on host:adminPort, and watch the config file.
 */
/** Each load names the settings that are accepted but not enforced yet (xds/not-enforced.ts). */
function logNotEnforced(logger: Logger, file: string, mesh: MeshConfig): void {
  for (const warning of notEnforcedWarnings(mesh)) logger.warn({ file }, `not enforced: ${warning}`);
}

/** A gRPC server with the ADS service, under the limits every ADS port shares. */
function adsServer(control: Control): grpc.Server {
  const server = new grpc.Server({
    // grpc-js's default, said out loud: a DiscoveryRequest (node, resource names, a NACK's message) over 4 MiB ends
    // its stream with RESOURCE_EXHAUSTED before it is decoded. Ours are a few KiB; Envoy's NACK messages can run
    // long when many resources fail, which is why this is not lower.
    'grpc.max_receive_message_length': MAX_REQUEST_BYTES,
    // SETTINGS_MAX_CONCURRENT_STREAMS per connection (an xDS client needs one or two); the total over all
    // connections is ours to bound (maxStreams, in Control.handle): grpc-js has no option for it.
    'grpc.max_concurrent_streams': control.limits.maxStreamsPerConnection,
  });
  server.addService(adsServiceDefinition(control.limits.maxNamesPerType), { StreamAggregatedResources: (call: AdsCall) => control.handle(call) });
  return server;
}

function bind(server: grpc.Server, host: string, port: number, credentials: grpc.ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) => server.bindAsync(hostPort(host, port), credentials, (err, p) => (err ? reject(err) : resolve(p))));
}

/** The TLS port: ADS (same streams, limits and metrics as the plaintext port) and the mesh CA's certificate service. */
async function startSecurePort(control: Control, host: string, ca: NonNullable<ControlServerOptions['ca']>): Promise<{ server: grpc.Server; port: number; ca: MeshCa }> {
  // Loaded only with --ca-dir: the X.509 library is not needed by a plaintext-only control server.
  const { startMeshCa } = await import('./ca/mesh-ca.js');
  const meshCa = await startMeshCa({
    dir: ca.dir,
    trustDomain: () => control.cache.meshConfig.trustDomain,
    certTtlMs: ca.certTtlMs,
    registry: control.metrics.registry,
    logger: control.logger,
    listenHost: host,
    serverNames: ca.serverNames ?? [],
  });
  const server = adsServer(control);
  server.addService(certificateService().service, meshCa.service.handlers());
  try {
    const port = await bind(server, host, ca.securePort, meshCa.credentials);
    control.logger.info({ host, port, certTtlSeconds: Math.round(ca.certTtlMs / 1000) }, 'xds TLS and certificate service listening');
    return { server, port, ca: meshCa };
  } catch (err) {
    meshCa.close();
    server.forceShutdown();
    throw err;
  }
}

export async function startControlServer(opts: ControlServerOptions): Promise<ControlServer> {
  const logger = opts.logger ?? pino({ level: 'silent' });
  const host = opts.host ?? '127.0.0.1';
  const initial = await loadConfigFile(opts.configFile);
  if (!initial.ok) throw initial.error;
  logNotEnforced(logger, opts.configFile, initial.mesh);
  const limits: ControlLimits = { ...DEFAULT_CONTROL_LIMITS, ...opts.limits };
  const control = new Control(logger, opts.configFile, initial, limits);

  const server = adsServer(control);
  const port = await bind(server, host, opts.port, grpc.ServerCredentials.createInsecure());
  logger.info({ host, port }, 'xds listening');

  let secure: { server: grpc.Server; port: number; ca: MeshCa } | undefined;
  let admin: ControlAdmin;
  try {
    if (opts.ca !== undefined) secure = await startSecurePort(control, host, opts.ca);
    admin = await startControlAdmin({
      host,
      port: opts.adminPort,
      registry: control.metrics.registry,
      proxies: () => control.proxies(),
    });
  } catch (err) {
    server.forceShutdown();
    secure?.server.forceShutdown();
    secure?.ca.close();
    throw err;
  }
  logger.info({ host, port: admin.port }, 'control admin listening');

  const watcher = new ConfigWatcher({
    file: opts.configFile,
    debounceMs: opts.debounceMs ?? 25,
    initialText: initial.text,
    onChange: (result, detectedAt) => control.apply(result, detectedAt),
    onWatchError: (err) => logger.error({ file: opts.configFile, err: err.message }, 'config watch failed'),
  });
  watcher.start();
  logger.info({ file: opts.configFile, configVersion: control.configVersion }, 'mesh config loaded');

  let closing: Promise<void> | undefined;
  return {
    port,
    adminPort: admin.port,
    securePort: secure?.port ?? -1,
    reload: () => watcher.check(Date.now(), true),
    close: () =>
      (closing ??= (async () => {
        watcher.close();
        for (const s of [...control.streams]) s.close(true);
        server.forceShutdown();
        secure?.server.forceShutdown();
        secure?.ca.close();
        await admin.close();
      })()),
  };
}
