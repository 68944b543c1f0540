// One active health-check probe of one endpoint: a TCP connect, or an HTTP/1.1 GET on a fresh connection whose
// status line decides. A cluster with mTLS probes through its transport socket, as Envoy does: the same handshake,
// client certificate and SPIFFE ID check as its connections (a STRICT peer refuses plaintext). Bounded: one timer covers connect and answer, at most MAX_PROBE_READ bytes are read (the
// body is never read), and the socket is destroyed as soon as the result is known.
import * as net from 'node:net';
import type { StatusRange } from '../config/model.js';
import { httpResult, type ProbeResult } from './health-check-state.js';
import { ALPN_HTTP11, readyEventOf, type UpstreamTlsConnector } from '../tls/upstream-tls.js';

/** The most of a response a probe reads: the final status line, and any 1xx heads before it, must fit. */
export const MAX_PROBE_READ = 4096;

export interface HttpProbeConfig {
  readonly path: string;
  readonly host: string;
  readonly expectedStatuses: readonly StatusRange[];
  readonly retriableStatuses: readonly StatusRange[];
}

const STATUS_LINE = /^HTTP\/1\.[01] ([1-5][0-9][0-9])(?: |\r?$)/;

/**
 * The status of the final response at the start of `buf`: a number, 'incomplete' (read more), or 'invalid' (not
 * an HTTP/1.x response). Interim 1xx responses (other than 101, which we never ask for) are skipped, as a client
 * does (RFC 9110 15.2).
 */
export function responseStatus(buf: Buffer): number | 'incomplete' | 'invalid' {
  let at = 0;
  for (;;) {
    const eol = buf.indexOf('\n', at);
    if (eol === -1) {
      // Give up early on bytes that cannot become a status line.
      const start = buf.toString('latin1', at, Math.min(buf.length, at + 7));
      return 'HTTP/1.'.startsWith(start) ? 'incomplete' : 'invalid';
    }
    const m = STATUS_LINE.exec(buf.toString('latin1', at, eol));
    if (m === null) return 'invalid';
    const status = Number(m[1]);
    if (status >= 200 || status === 101) return status;
    const end = buf.indexOf('\r\n\r\n', at);
    if (end === -1) return 'incomplete';
    at = end + 4;
  }
}

/** A probe in flight; `done` is called once with the result, unless cancel() comes first. */
export class HealthProbe {
  private socket: net.Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private read: Buffer | null = null;
  private finished = false;

  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly timeoutMs: number,
    private readonly http: HttpProbeConfig | undefined,
    private readonly done: (result: ProbeResult) => void,
    /** The cluster's TLS origination, null for plaintext. */
    private readonly tls: UpstreamTlsConnector | null = null,
  ) {}

  start(): void {
    this.timer = setTimeout(() => this.finish('networkFailure'), this.timeoutMs);
    this.timer.unref();
    const tls = this.tls;
    // With TLS a probe is usable after the handshake (a failed one, or a peer with the wrong identity, fails it).
    const socket = tls === null ? net.connect({ host: this.address, port: this.port, noDelay: true }) : tls.connect(this.address, this.port, this.http === undefined ? null : ALPN_HTTP11, null);
    this.socket = socket;
    // From the first moment: an unhandled 'error' on a socket ends the process.
    socket.on('error', () => this.finish('networkFailure'));
    socket.on('close', () => this.finish('networkFailure'));
    socket.once(readyEventOf(socket), () => this.onConnect());
    if (this.http !== undefined) socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  /** Stops the probe without a result (the cluster or the endpoint went away). */
  cancel(): void {
    this.finish(null);
  }

  private onConnect(): void {
    const h = this.http;
    if (h === undefined) return this.finish('success');
    // A fresh connection per probe, closed after it: no idle socket held between probes, and no keep-alive state.
    this.socket?.write(`GET ${h.path} HTTP/1.1\r\nHost: ${h.host}\r\nUser-Agent: Pillion/HC\r\nConnection: close\r\n\r\n`);
  }

  private onData(chunk: Buffer): void {
    if (this.finished || this.http === undefined) return;
    const have = this.read === null ? 0 : this.read.length;
    const take = chunk.subarray(0, MAX_PROBE_READ - have);
    this.read = this.read === null ? Buffer.from(take) : Buffer.concat([this.read, take]);
    const status = responseStatus(this.read);
    if (typeof status === 'number') return this.finish(httpResult(status, this.http.expectedStatuses, this.http.retriableStatuses));
    if (status === 'invalid' || this.read.length >= MAX_PROBE_READ) this.finish('networkFailure');
  }

  private finish(result: ProbeResult | null): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.socket?.destroy();
    this.socket = null;
    this.read = null;
    if (result !== null) this.done(result);
  }
}
