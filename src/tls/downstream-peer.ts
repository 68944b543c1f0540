// The identity mTLS proved for a downstream connection, kept on the socket (a symbol-keyed field set once at
// handshake), with the x-forwarded-client-cert value computed then, so a request reads both without work.
import { createHash } from 'node:crypto';
import type { PeerIdentity } from './peer.js';

export interface DownstreamPeer {
  readonly identity: PeerIdentity;
  /** Envoy's XFCC element for this connection: By=<our ID>;Hash=<sha256 of the peer certificate>;URI=<peer ID>. */
  readonly xfcc: string;
}

const kPeer = Symbol('pillion.downstreamPeer');
type PeerTagged = { [kPeer]?: DownstreamPeer };

export function setSocketPeer(socket: object, peer: DownstreamPeer): void {
  (socket as PeerTagged)[kPeer] = peer;
}

/** The peer of a TLS connection; null for plaintext (nothing was proved). */
export function socketPeer(socket: object | undefined | null): DownstreamPeer | null {
  if (socket === undefined || socket === null) return null;
  return (socket as PeerTagged)[kPeer] ?? null;
}

/** Envoy's XFCC format (forward_client_cert_details SANITIZE_SET with Hash and URI). */
export function xfccValue(localSpiffeId: string, peerCertDer: Buffer, peerSpiffeId: string): string {
  const hash = createHash('sha256').update(peerCertDer).digest('hex');
  return `${localSpiffeId === '' ? '' : `By=${localSpiffeId};`}Hash=${hash};URI=${peerSpiffeId}`;
}

export const XFCC_HEADER = 'x-forwarded-client-cert';
