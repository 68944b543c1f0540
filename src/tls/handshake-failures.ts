// Why a TLS handshake (or the identity check right after it) failed, as a bounded metric label, and the
// rate-limited log line that says so: a port scanner or a misconfigured peer must cost a counter, not a log flood.

export type HandshakeFailure =
  | 'not_tls'
  | 'no_client_certificate'
  | 'untrusted_certificate'
  | 'certificate_expired'
  | 'certificate_not_yet_valid'
  | 'no_spiffe_id'
  | 'peer_identity'
  | 'secrets_missing'
  | 'timeout'
  | 'protocol'
  | 'other';

export const HANDSHAKE_FAILURES: readonly HandshakeFailure[] = [
  'not_tls',
  'no_client_certificate',
  'untrusted_certificate',
  'certificate_expired',
  'certificate_not_yet_valid',
  'no_spiffe_id',
  'peer_identity',
  'secrets_missing',
  'timeout',
  'protocol',
  'other',
];

/** Our error codes: the router answers them with their own reasons, never as a plain connect failure. */
export const PEER_IDENTITY_ERROR = 'ERR_PILLION_PEER_IDENTITY';
export const TLS_NOT_READY_ERROR = 'ERR_PILLION_TLS_NOT_READY';

const BY_CODE: Readonly<Record<string, HandshakeFailure>> = {
  // OpenSSL reading something that is not a TLS record: plaintext (it even recognises HTTP) or garbage.
  ERR_SSL_HTTP_REQUEST: 'not_tls',
  ERR_SSL_WRONG_VERSION_NUMBER: 'not_tls',
  ERR_SSL_PACKET_LENGTH_TOO_LONG: 'not_tls',
  ERR_SSL_UNKNOWN_PROTOCOL: 'not_tls',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no_client_certificate',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'no_client_certificate',
  // X509_V_ERR_* names, as Node reports a verification failure (authorizationError / err.code).
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'untrusted_certificate',
  UNABLE_TO_GET_ISSUER_CERT: 'untrusted_certificate',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'untrusted_certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'untrusted_certificate',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'untrusted_certificate',
  CERT_SIGNATURE_FAILURE: 'untrusted_certificate',
  CERT_UNTRUSTED: 'untrusted_certificate',
  CERT_REJECTED: 'untrusted_certificate',
  INVALID_CA: 'untrusted_certificate',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'untrusted_certificate',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'untrusted_certificate',
  ERR_SSL_CERTIFICATE_VERIFY_FAILED: 'untrusted_certificate',
  CERT_HAS_EXPIRED: 'certificate_expired',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: 'certificate_expired',
  CERT_NOT_YET_VALID: 'certificate_not_yet_valid',
  ERR_TLS_HANDSHAKE_TIMEOUT: 'timeout',
  ETIMEDOUT: 'timeout',
  [PEER_IDENTITY_ERROR]: 'peer_identity',
  [TLS_NOT_READY_ERROR]: 'secrets_missing',
};

/** The failure an error code (err.code or a verification's authorizationError) stands for. */
export function classifyHandshakeError(code: string | undefined | null): HandshakeFailure {
  if (code === undefined || code === null) return 'other';
  const known = BY_CODE[code];
  if (known !== undefined) return known;
  return code.startsWith('ERR_SSL_') ? 'protocol' : 'other';
}

export type FailureDirection = 'inbound' | 'outbound';

export interface HandshakeLog {
  warn(obj: object, msg: string): void;
}

/** At most one line per direction and reason per interval; the lines after it say how many were not logged. */
const LOG_INTERVAL_MS = 10_000;

/** Counts every failure and logs some: one line per (direction, reason) per LOG_INTERVAL_MS. */
export class HandshakeFailureReporter {
  private readonly lastLogged = new Map<string, { atMs: number; suppressed: number }>();

  constructor(
    private readonly count: (direction: FailureDirection, reason: HandshakeFailure) => void,
    private readonly log: HandshakeLog,
    private readonly now: () => number = Date.now,
  ) {}

  report(direction: FailureDirection, reason: HandshakeFailure, detail: Record<string, unknown>): void {
    this.count(direction, reason);
    const key = `${direction}/${reason}`;
    const now = this.now();
    const last = this.lastLogged.get(key);
    if (last !== undefined && now - last.atMs < LOG_INTERVAL_MS) {
      last.suppressed++;
      return;
    }
    const suppressed = last?.suppressed ?? 0;
    this.lastLogged.set(key, { atMs: now, suppressed: 0 });
    this.log.warn(
      { direction, reason, ...detail, ...(suppressed > 0 ? { notLoggedSinceLast: suppressed } : {}) },
      `tls: ${direction} handshake refused (${reason}); counted in pillion_tls_handshake_failures_total, logged at most once per ${LOG_INTERVAL_MS / 1000} s per reason`,
    );
  }
}
