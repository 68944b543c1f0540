// Inbound TLS termination for one listener: a tls.Server that never listens, handed the connections the listener
// accepted (or sniffed as TLS). It gives every TLS socket an 'error' handler from its creation, bounds the
// handshake, and reports failures as 'tlsClientError'. The context follows the SecretStore: rotated secrets
// reach new handshakes only. After the handshake the client certificate is checked here (so each refusal has its
// own reason) and the proved identity is put on the socket for XFCC, authorization and the access log.
import type * as net from 'node:net';
import * as tls from 'node:tls';
import type { DownstreamTlsModel } from '../config/model.js';
import { isUnavailable, type ResolvedTls, type TlsContexts } from './contexts.js';
import { classifyHandshakeError, type HandshakeFailure, type HandshakeFailureReporter } from './handshake-failures.js';
import { parseSpiffeId } from './peer.js';
import { parseSubjectAltNames, sansMatch, spiffeIdOfSans } from './san.js';
import { setSocketPeer, xfccValue } from './downstream-peer.js';

/** Envoy's default transport_socket_connect_timeout is unset; a bound is what keeps a silent client from holding a socket. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

export interface TerminatorOwner {
  readonly listenerName: string;
  /** The handshake is done and the peer accepted: hand the decrypted connection on. */
  secured(socket: tls.TLSSocket): void;
}

const kTerminator = Symbol('pillion.tlsTerminator');
type TerminatingServer = tls.Server & { [kTerminator]: TlsTerminator };

function onSecureConnection(this: TerminatingServer, socket: tls.TLSSocket): void {
  this[kTerminator].onSecure(socket);
}

function onTlsClientError(this: TerminatingServer, err: NodeJS.ErrnoException, socket: tls.TLSSocket): void {
  this[kTerminator].refuse(socket, classifyHandshakeError(err.code), err.message);
}

function onRenegotiationError(this: tls.TLSSocket, err: NodeJS.ErrnoException): void {
  if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED' || err.code === 'ERR_TLS_SESSION_ATTACK') this.destroy();
}

export class TlsTerminator {
  private readonly server: TerminatingServer;
  private current: ResolvedTls | null = null;

  constructor(
    readonly model: DownstreamTlsModel,
    alpn: readonly string[],
    private readonly contexts: TlsContexts,
    private readonly failures: HandshakeFailureReporter,
    private readonly owner: TerminatorOwner,
  ) {
    const ctx = model.context;
    this.server = tls.createServer({
      // Verification is ours after the handshake (onSecure): each refusal then says why, and no client
      // certificate is accepted unverified, since a certificate that failed is refused there.
      requestCert: model.requireClientCertificate || ctx.validation !== null,
      rejectUnauthorized: false,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      ...(ctx.alpn.length > 0 ? { ALPNProtocols: [...ctx.alpn] } : alpn.length > 0 ? { ALPNProtocols: [...alpn] } : {}),
    }) as TerminatingServer;
    this.server[kTerminator] = this;
    this.server.on('secureConnection', onSecureConnection);
    this.server.on('tlsClientError', onTlsClientError);
  }

  /** Starts the handshake on an accepted connection (first bytes, if read, pushed back with unshift). */
  terminate(socket: net.Socket): void {
    const r = this.contexts.resolve(this.model.context);
    if (isUnavailable(r)) {
      socket.destroy();
      this.failures.report('inbound', 'secrets_missing', { listener: this.owner.listenerName, detail: r.unavailable });
      return;
    }
    if (r !== this.current) {
      // Applies to handshakes from now on; sockets already made keep the context they were made with.
      this.server.setSecureContext(r.options);
      this.current = r;
    }
    // The TLS socket takes the listener socket's half-open mode: a peer's FIN ends only its reading side, as on
    // plaintext (TCP half-close works over mTLS); the owner (HTTP/1 connection, TCP session, Upgrade) closes it.
    this.server.emit('connection', socket);
  }

  onSecure(socket: tls.TLSSocket): void {
    // No TLS 1.2 renegotiation a client asks for (Envoy refuses it too): the identity was fixed by this handshake,
    // and a renegotiation is a full handshake's CPU on demand (maybe with another certificate, never checked).
    // Node only reports one as an 'error' and lets it complete, so the socket is closed here.
    socket.disableRenegotiation();
    socket.on('error', onRenegotiationError);
    const model = this.model;
    if (model.context.validation === null && !model.requireClientCertificate) return this.owner.secured(socket);
    const cert = socket.getPeerCertificate();
    if (cert === null || cert.raw === undefined) {
      if (model.requireClientCertificate) return this.refuse(socket, 'no_client_certificate', 'the client presented no certificate');
      return this.owner.secured(socket);
    }
    if (!socket.authorized) {
      const code = socket.authorizationError as unknown as string | undefined;
      return this.refuse(socket, classifyHandshakeError(code), `client certificate not accepted: ${String(code)}`);
    }
    // A resumed session skips OpenSSL's checks: a certificate that expired since the first handshake is not kept.
    if (socket.isSessionReused() && !(Date.parse(cert.valid_to) > Date.now())) {
      return this.refuse(socket, 'certificate_expired', `resumed session of a client certificate that expired ${cert.valid_to}`);
    }
    const sans = parseSubjectAltNames(cert.subjectaltname);
    const spiffeId = spiffeIdOfSans(sans);
    const identity = spiffeId === null ? null : parseSpiffeId(spiffeId);
    if (identity === null) return this.refuse(socket, 'no_spiffe_id', `the client certificate has no SPIFFE ID (SANs: ${cert.subjectaltname ?? 'none'})`);
    // An X.509-SVID leaf is no CA (the X.509-SVID spec; Envoy's SPIFFE validator refuses one too).
    if (cert.ca) return this.refuse(socket, 'no_spiffe_id', `the client certificate of ${identity.spiffeId} is a CA certificate, not an X.509-SVID leaf`);
    if (model.context.sanMatchers.length > 0 && !sansMatch(model.context.sanMatchers, sans)) {
      return this.refuse(socket, 'peer_identity', `the client ${identity.spiffeId} matches none of the listener's SAN matchers`);
    }
    setSocketPeer(socket, { identity, xfcc: xfccValue(this.current?.localSpiffeId ?? '', cert.raw, identity.spiffeId) });
    this.owner.secured(socket);
  }

  refuse(socket: tls.TLSSocket, reason: HandshakeFailure, message: string): void {
    socket.destroy();
    this.failures.report('inbound', reason, { listener: this.owner.listenerName, remote: socket.remoteAddress ?? '?', error: message });
  }
}
