// Originating TLS to a cluster's endpoints: the cluster's UpstreamTlsContext resolved against the SecretStore
// for each new connection (rotation reaches new connections only), ALPN per codec, the chain verified against
// the trust bundle, and the peer's SAN checked against the cluster's matchers (secure naming: the SPIFFE IDs
// the destination service may have). Without its secrets a connection fails at once with TLS_NOT_READY_ERROR:
// there is never a plaintext fallback. A new connection to an endpoint resumes the TLS session of the last one
// (as Envoy does): a full mTLS handshake costs ~2.5 ms of CPU on each side in Node (certificate parsing,
// signatures, chain checks), a resumed one a fraction of it.
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { UpstreamTlsModel } from '../config/model.js';
import { isUnavailable, type TlsContexts } from './contexts.js';
import { classifyHandshakeError, PEER_IDENTITY_ERROR, TLS_NOT_READY_ERROR, type HandshakeFailureReporter } from './handshake-failures.js';
import { parseSubjectAltNames, sansMatch } from './san.js';

export const ALPN_H2: readonly string[] = ['h2'];
export const ALPN_HTTP11: readonly string[] = ['http/1.1'];

const kConnector = Symbol('pillion.tlsConnector');
const kSessionKey = Symbol('pillion.tlsSessionKey');
const kContext = Symbol('pillion.tlsContext');
const kNotAfter = Symbol('pillion.tlsPeerNotAfter');
type TaggedTlsSocket = tls.TLSSocket & {
  [kConnector]: UpstreamTlsConnector;
  [kSessionKey]: string;
  [kContext]: tls.SecureContext;
  /** When the certificate the peer proved (in this handshake or the one resumed) expires, ms since the epoch. */
  [kNotAfter]: number;
  secured?: boolean;
};

/** A session to resume, and what it was made with: the context (our certificate) and the peer's not-after. */
interface CachedSession {
  readonly session: Buffer;
  readonly context: tls.SecureContext;
  readonly notAfterMs: number;
}

/** Sessions kept per connector (one per endpoint and ALPN): more endpoints than this resume less often. */
export const MAX_CACHED_SESSIONS = 1024;

/** Counts each upstream handshake completed, full or resumed (pillion_upstream_tls_handshakes_total). */
export type HandshakeCounter = (cluster: string, resumed: boolean) => void;

/** Errors the router answers with their own reason (peer_identity, tls_not_ready) rather than connect_failure. */
export function isTlsPolicyError(err: Error | null | undefined): boolean {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return code === PEER_IDENTITY_ERROR || code === TLS_NOT_READY_ERROR;
}

function onSecureConnect(this: TaggedTlsSocket): void {
  this.secured = true;
  this[kConnector].secured(this);
}

function onSession(this: TaggedTlsSocket, session: Buffer): void {
  this[kConnector].keepSession(this, session);
}

function onHandshakeError(this: TaggedTlsSocket, err: NodeJS.ErrnoException): void {
  if (this.secured === true) return;
  this.secured = true; // one report per connection
  this[kConnector].handshakeFailed(err, this);
}

function doomed(err: Error): net.Socket {
  const socket = new net.Socket();
  process.nextTick(destroyWith, socket, err);
  return socket;
}

function destroyWith(socket: net.Socket, err: Error): void {
  socket.destroy(err);
}

export class UpstreamTlsConnector {
  /** One function per cluster config, not per connection. */
  private readonly checkIdentity: (host: string, cert: tls.PeerCertificate) => Error | undefined;
  /** By endpoint and ALPN; insertion order is age (the oldest goes first when full). */
  private readonly sessions = new Map<string, CachedSession>();
  /**
   * The not-after of the certificate checkIdentity just accepted: Node calls it and then emits 'secureConnect'
   * in one synchronous run, so onSecureConnect takes it for the same socket (0 = none was checked).
   */
  private checkedNotAfterMs = 0;

  constructor(
    readonly model: UpstreamTlsModel,
    private readonly contexts: TlsContexts,
    private readonly failures: HandshakeFailureReporter,
    private readonly clusterName: string,
    private readonly countHandshake: HandshakeCounter | null = null,
  ) {
    const matchers = model.context.sanMatchers;
    this.checkIdentity = (_host, cert) => {
      if (matchers.length === 0 || sansMatch(matchers, parseSubjectAltNames(cert.subjectaltname))) {
        const notAfterMs = Date.parse(cert.valid_to);
        this.checkedNotAfterMs = Number.isNaN(notAfterMs) ? 0 : notAfterMs;
        return undefined;
      }
      const sans = parseSubjectAltNames(cert.subjectaltname);
      const got = sans.map((s) => `${s.type}:${s.value}`).join(', ') || 'none';
      const want = matchers.map((m) => `${m.sanType} ${m.match} ${m.value}`).join(', ');
      return Object.assign(new Error(`the upstream's certificate names ${got}; the destination may only be ${want}`), { code: PEER_IDENTITY_ERROR });
    };
  }

  /** Null when the secrets are there, else the error every connection would fail with now. */
  notReady(): Error | null {
    const r = this.contexts.resolve(this.model.context);
    if (!isUnavailable(r)) return null;
    return this.notReadyError(r.unavailable);
  }

  private notReadyError(why: string): Error {
    this.failures.report('outbound', 'secrets_missing', { cluster: this.clusterName, detail: why });
    return Object.assign(new Error(`no mTLS to this upstream yet: ${why}`), { code: TLS_NOT_READY_ERROR });
  }

  /**
   * A connection to host:port: a TLS socket ('secureConnect' when usable), or, without the secrets, a socket
   * that fails at once with TLS_NOT_READY_ERROR. Either has the caller's listeners attached synchronously after.
   */
  connect(host: string, port: number, alpn: readonly string[] | null, socketOptions: net.TcpSocketConnectOpts | null): net.Socket {
    const r = this.contexts.resolve(this.model.context);
    if (isUnavailable(r)) return doomed(this.notReadyError(r.unavailable));
    const sni = this.model.sni;
    const key = alpn === null ? `${host}:${port}` : `${host}:${port}/${alpn[0] ?? ''}`;
    const session = this.sessionFor(key, r.secureContext);
    const socket = tls.connect({
      ...socketOptions,
      host,
      port,
      secureContext: r.secureContext,
      ...(session !== null ? { session: session.session } : {}),
      // Without a CA to verify against Envoy does not verify either; with one, nothing unverified gets through.
      rejectUnauthorized: r.verifies,
      checkServerIdentity: this.checkIdentity,
      ...(sni !== '' ? { servername: sni } : {}),
      ...(alpn !== null ? { ALPNProtocols: [...(this.model.context.alpn.length > 0 ? this.model.context.alpn : alpn)] } : {}),
    }) as TaggedTlsSocket;
    // tls.connect drops net's noDelay and keepAlive options (Node 20): without this the mTLS hop runs with
    // Nagle's algorithm, and a request written in two parts (head, then body; HTTP/2 frames) waits for an ACK.
    socket.setNoDelay(true);
    if (socketOptions?.keepAlive === true) socket.setKeepAlive(true, socketOptions.keepAliveInitialDelay ?? 0);
    socket[kConnector] = this;
    socket[kSessionKey] = key;
    socket[kContext] = r.secureContext;
    socket[kNotAfter] = session?.notAfterMs ?? 0;
    socket.once('secureConnect', onSecureConnect);
    socket.on('error', onHandshakeError);
    socket.on('session', onSession);
    return socket;
  }

  /**
   * A session to offer: made with the context we would use now (after a rotation of our certificate the next
   * connection presents the new one in a full handshake) and whose peer certificate has not expired since.
   */
  private sessionFor(key: string, context: tls.SecureContext): CachedSession | null {
    const cached = this.sessions.get(key);
    if (cached === undefined) return null;
    if (cached.context === context && cached.notAfterMs > Date.now()) return cached;
    this.sessions.delete(key);
    return null;
  }

  /** 'secureConnect': the peer is verified (or the session it resumed was); counted, and its expiry noted. */
  secured(socket: TaggedTlsSocket): void {
    const resumed = socket.isSessionReused();
    // Node skips checkServerIdentity on a resumed session: the peer's expiry is the resumed session's.
    if (!resumed) socket[kNotAfter] = this.checkedNotAfterMs;
    this.checkedNotAfterMs = 0;
    this.countHandshake?.(this.clusterName, resumed);
  }

  /** A session ticket from the peer (TLS 1.3 sends them after the handshake): the next connection resumes it. */
  keepSession(socket: TaggedTlsSocket, session: Buffer): void {
    const notAfterMs = socket[kNotAfter];
    // Nothing verified its certificate's dates here (rejectUnauthorized off without a trust bundle): no reuse.
    if (notAfterMs <= Date.now()) return;
    const key = socket[kSessionKey];
    this.sessions.delete(key); // re-inserted as the newest
    if (this.sessions.size >= MAX_CACHED_SESSIONS) {
      const oldest = this.sessions.keys().next().value;
      if (oldest !== undefined) this.sessions.delete(oldest);
    }
    this.sessions.set(key, { session, context: socket[kContext], notAfterMs });
  }

  /** Sessions cached now (tests, /clusters). */
  get cachedSessions(): number {
    return this.sessions.size;
  }

  handshakeFailed(err: NodeJS.ErrnoException, socket: tls.TLSSocket): void {
    // A refused connection (nothing listening) is a connect failure, not a TLS one.
    if (err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') return;
    this.failures.report('outbound', classifyHandshakeError(err.code), {
      cluster: this.clusterName,
      upstream: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`,
      error: err.message,
    });
  }
}

/** The event after which a socket from UpstreamTlsConnector.connect (or net.connect) can carry bytes. */
export function readyEventOf(socket: net.Socket): 'connect' | 'secureConnect' {
  return socket instanceof tls.TLSSocket ? 'secureConnect' : 'connect';
}
