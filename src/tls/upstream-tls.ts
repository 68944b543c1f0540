// Originating TLS to a cluster's endpoints: the cluster's UpstreamTlsContext resolved against the SecretStore
// for each new connection (rotation reaches new connections only), ALPN per codec, the chain verified against
// the trust bundle, and the peer's SAN checked against the cluster's matchers (secure naming: the SPIFFE IDs
// the destination service may have). Without its secrets a connection fails at once with TLS_NOT_READY_ERROR:
// there is never a plaintext fallback.
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { UpstreamTlsModel } from '../config/model.js';
import { isUnavailable, type TlsContexts } from './contexts.js';
import { classifyHandshakeError, PEER_IDENTITY_ERROR, TLS_NOT_READY_ERROR, type HandshakeFailureReporter } from './handshake-failures.js';
import { parseSubjectAltNames, sansMatch } from './san.js';

export const ALPN_H2: readonly string[] = ['h2'];
export const ALPN_HTTP11: readonly string[] = ['http/1.1'];

const kConnector = Symbol('pillion.tlsConnector');
type TaggedTlsSocket = tls.TLSSocket & { [kConnector]: UpstreamTlsConnector; secured?: boolean };

/** Errors the router answers with their own reason (peer_identity, tls_not_ready) rather than connect_failure. */
export function isTlsPolicyError(err: Error | null | undefined): boolean {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return code === PEER_IDENTITY_ERROR || code === TLS_NOT_READY_ERROR;
}

function onSecureConnect(this: TaggedTlsSocket): void {
  this.secured = true;
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

  constructor(
    readonly model: UpstreamTlsModel,
    private readonly contexts: TlsContexts,
    private readonly failures: HandshakeFailureReporter,
    private readonly clusterName: string,
  ) {
    const matchers = model.context.sanMatchers;
    this.checkIdentity = (_host, cert) => {
      if (matchers.length === 0) return undefined;
      const sans = parseSubjectAltNames(cert.subjectaltname);
      if (sansMatch(matchers, sans)) return undefined;
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
    const socket = tls.connect({
      ...socketOptions,
      host,
      port,
      secureContext: r.secureContext,
      // Without a CA to verify against Envoy does not verify either; with one, nothing unverified gets through.
      rejectUnauthorized: r.verifies,
      checkServerIdentity: this.checkIdentity,
      ...(sni !== '' ? { servername: sni } : {}),
      ...(alpn !== null ? { ALPNProtocols: [...(this.model.context.alpn.length > 0 ? this.model.context.alpn : alpn)] } : {}),
    }) as TaggedTlsSocket;
    socket[kConnector] = this;
    socket.once('secureConnect', onSecureConnect);
    socket.on('error', onHandshakeError);
    return socket;
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
