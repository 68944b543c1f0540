// The destination a connection had before iptables REDIRECT sent it to one of our listeners (transparent
// interception, `pillion iptables`): getsockopt(SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST) in the native helper
// (src/native/original_dst.cc). Without the helper, transparent interception is unavailable and says so; explicit
// ports (Host header, HTTP_PROXY, egress ports) do not need it.
import type * as net from 'node:net';
import { nativeAddon, nativeAddonProblem } from '../process/native-addon.js';

export interface OriginalDestination {
  /** IPv4 dotted or IPv6 text, as the kernel's conntrack entry has it (never v4-mapped). */
  readonly address: string;
  readonly port: number;
}

type Reader = (fd: number) => [string, number] | number;

let reader: Reader | null | undefined;

function load(): Reader | null {
  const fn = nativeAddon()?.originalDst;
  return typeof fn === 'function' ? (fn as Reader) : null;
}

/** True when this process can read original destinations. */
export function originalDstAvailable(): boolean {
  reader ??= load();
  return reader !== null;
}

/** Why originalDstAvailable() is false, in words for an operator. */
export function originalDstProblem(): string {
  if (originalDstAvailable()) return '';
  const problem = nativeAddonProblem();
  // Loaded but without the function: a helper built before SO_ORIGINAL_DST was added.
  return problem !== '' ? problem : 'the native helper in src/native predates SO_ORIGINAL_DST; npm rebuild builds it again';
}

/** A connection's own file descriptor, or -1 (a TLS-wrapped or pipe socket has none of its own). */
function fdOf(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}

/**
 * The connection's original destination, or undefined when it has none the kernel knows (not NATed and not
 * tracked: ENOENT), the socket has no fd, or the helper is missing. A connection made straight to the listener
 * reports the listener's own address: see isRedirected.
 */
export function originalDestination(socket: net.Socket): OriginalDestination | undefined {
  reader ??= load();
  if (reader === null) return undefined;
  const fd = fdOf(socket);
  if (fd < 0) return undefined;
  const r = reader(fd);
  if (typeof r === 'number') return undefined;
  return { address: r[0], port: r[1] };
}

/** "::ffff:10.0.0.1" (a v4 peer on a dual-stack listener) -> "10.0.0.1". */
export function unmapV4(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** Whether `dst` differs from where the connection actually landed, i.e. iptables redirected it. */
export function isRedirected(socket: net.Socket, dst: OriginalDestination): boolean {
  return dst.port !== socket.localPort || dst.address !== unmapV4(socket.localAddress ?? '');
}

const kOriginalDst = Symbol('pillion.originalDst');
type Tagged = net.Socket & { [kOriginalDst]?: OriginalDestination };

/** Remembers a redirected connection's original destination, for the ORIGINAL_DST cluster that dials it. */
export function setOriginalDst(socket: net.Socket, dst: OriginalDestination): void {
  (socket as Tagged)[kOriginalDst] = dst;
}

/** The original destination a use_original_dst listener found for this connection, if it was redirected. */
export function originalDstOf(socket: net.Socket): OriginalDestination | undefined {
  return (socket as Tagged)[kOriginalDst];
}

/**
 * The port the client dialed, which RBAC `ports` rules match (Envoy's destination port: the local address the
 * original_dst listener filter restored): a redirected connection's original destination port, else the port it
 * landed on. A TLS socket asks the connection it wraps (Node's `_parent`), which the listener tagged.
 */
export function destinationPort(socket: net.Socket): number {
  const dst = (socket as Tagged)[kOriginalDst] ?? ((socket as { _parent?: unknown })._parent as Tagged | undefined)?.[kOriginalDst];
  return dst !== undefined ? dst.port : (socket.localPort ?? 0);
}
