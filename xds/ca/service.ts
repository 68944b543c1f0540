// pillion.ca.v1.CertificateService/CreateCertificate: who is asking (a bootstrap token, or the workload
// certificate it renews with), whether the CSR asks for that identity only, and the chain issued for it. The
// decision is a pure function of the credentials and the CSR; the gRPC handler around it maps refusals to status
// codes, counts and logs them.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { PeerCertificate } from 'node:tls';
import { parseSpiffeId, spiffeIdOf } from '../../src/tls/peer.js';
import type { CreateCertificateRequest, CreateCertificateResponse } from '../../src/tls/ca-proto.js';
import type { CaMetrics, CertRefusalReason } from '../metrics.js';
import type { MeshAuthority } from './authority.js';
import { checkCsr } from './csr.js';
import { issueLeaf } from './issue.js';
import { verifyToken } from './token.js';

export const DEFAULT_CERT_TTL_MS = 24 * 3600_000;
/** Refusals of one reason are logged at most this often; the counter has them all. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

export interface Caller {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly auth: 'token' | 'client_cert';
}

export interface Refusal {
  readonly code: grpc.status;
  readonly reason: CertRefusalReason;
  readonly message: string;
}

/**
 * Who the caller is. A token wins over a client certificate (a proxy whose certificate expired while the CA was
 * away comes back with its token). The client certificate was verified against the mesh root by TLS; it must
 * carry a workload SPIFFE ID of this trust domain (the control server's own serving certificate has none).
 */
export function authenticate(
  input: { authorization: string | undefined; peerCert: PeerCertificate | undefined },
  tokenKey: Buffer,
  trustDomain: string,
  nowMs: number,
): Caller | Refusal {
  if (input.authorization !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(input.authorization);
    if (m === null) return { code: grpc.status.UNAUTHENTICATED, reason: 'token_malformed', message: 'authorization metadata must be "Bearer <token>"' };
    const verdict = verifyToken(tokenKey, m[1]!, nowMs);
    if (!verdict.ok) return { code: grpc.status.UNAUTHENTICATED, reason: `token_${verdict.reason}`, message: verdict.message };
    return { namespace: verdict.claims.namespace, serviceAccount: verdict.claims.serviceAccount, auth: 'token' };
  }
  if (input.peerCert !== undefined) {
    const uris = (input.peerCert.subjectaltname ?? '')
      .split(', ')
      .filter((n) => n.startsWith('URI:'))
      .map((n) => n.slice(4));
    const ids = uris.map(parseSpiffeId).filter((id) => id !== null && id.trustDomain === trustDomain && id.namespace !== '' && id.serviceAccount !== '');
    if (ids.length !== 1) {
      return { code: grpc.status.UNAUTHENTICATED, reason: 'client_cert_identity', message: `the client certificate names no single workload of trust domain ${trustDomain} (URI SANs: ${uris.join(', ') || 'none'})` };
    }
    return { namespace: ids[0]!.namespace, serviceAccount: ids[0]!.serviceAccount, auth: 'client_cert' };
  }
  return {
    code: grpc.status.UNAUTHENTICATED,
    reason: 'no_credentials',
    message: 'no bootstrap token (metadata authorization: Bearer <token>, from `pillion token`) and no workload client certificate',
  };
}

function isRefusal(v: unknown): v is Refusal {
  return typeof v === 'object' && v !== null && typeof (v as Refusal).code === 'number' && typeof (v as Refusal).reason === 'string';
}

export interface CaServiceOptions {
  readonly authority: MeshAuthority;
  readonly tokenKey: Buffer;
  /** The mesh config's trust domain, read at each request (a config edit may change it). */
  readonly trustDomain: () => string;
  readonly certTtlMs: number;
  readonly metrics: CaMetrics;
  readonly logger: Logger;
  readonly now?: () => number;
}

type Call = grpc.ServerUnaryCall<CreateCertificateRequest, CreateCertificateResponse>;

export class CertificateService {
  private readonly now: () => number;
  private readonly refusalLog = new Map<CertRefusalReason, { at: number; unlogged: number }>();

  constructor(private readonly opts: CaServiceOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** The handlers to give grpc.Server.addService with certificateService().service. */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      CreateCertificate: (call: Call, callback: grpc.sendUnaryData<CreateCertificateResponse>) => {
        this.create(call).then(
          (res) => callback(null, res),
          (err: unknown) => {
            if (isRefusal(err)) return callback({ code: err.code, details: err.message });
            // A bug, not a refusal: the caller gets INTERNAL, the log gets the error, the process goes on.
            this.opts.logger.error({ err }, 'certificate service: internal error');
            callback({ code: grpc.status.INTERNAL, details: 'internal error in the certificate service' });
          },
        );
      },
    };
  }

  private async create(call: Call): Promise<CreateCertificateResponse> {
    const now = this.now();
    const trustDomain = this.opts.trustDomain();
    const authorization = call.metadata.get('authorization')[0];
    const caller = authenticate(
      { authorization: typeof authorization === 'string' ? authorization : undefined, peerCert: call.getAuthContext()?.sslPeerCertificate },
      this.opts.tokenKey,
      trustDomain,
      now,
    );
    if ('code' in caller) throw this.refuse(call, caller);
    const spiffeId = spiffeIdOf(trustDomain, caller.namespace, caller.serviceAccount);
    const checked = await checkCsr(typeof call.request.csr === 'string' ? call.request.csr : '');
    if (!checked.ok) throw this.refuse(call, { code: grpc.status.INVALID_ARGUMENT, reason: 'bad_csr', message: checked.message }, spiffeId);
    const other = checked.csr.uris.find((uri) => uri !== spiffeId);
    if (other !== undefined) {
      throw this.refuse(
        call,
        { code: grpc.status.PERMISSION_DENIED, reason: 'identity_mismatch', message: `the caller is ${spiffeId} (by its ${caller.auth === 'token' ? 'token' : 'client certificate'}); the CSR asks for ${other}` },
        spiffeId,
      );
    }
    const requested = Number(call.request.validity_duration ?? 0) * 1000;
    const ttlMs = requested > 0 && requested < this.opts.certTtlMs ? requested : this.opts.certTtlMs;
    let leaf: string;
    try {
      leaf = await issueLeaf(this.opts.authority, { publicKey: checked.csr.publicKey, sans: [{ type: 'url', value: spiffeId }], ttlMs, nowMs: now });
    } catch (err) {
      throw this.refuse(call, { code: grpc.status.INTERNAL, reason: 'signing_failed', message: `signing failed: ${(err as Error).message}` }, spiffeId);
    }
    this.opts.metrics.issued.labels(caller.auth).inc();
    this.opts.logger.info({ identity: spiffeId, auth: caller.auth, ttlSeconds: Math.round(ttlMs / 1000), peer: call.getPeer() }, 'workload certificate issued');
    return { cert_chain: [leaf, ...this.opts.authority.intermediatesPem, this.opts.authority.rootPem] };
  }

  private refuse(call: Call, refusal: Refusal, identity?: string): Refusal {
    this.opts.metrics.refused.labels(refusal.reason).inc();
    const now = this.now();
    const seen = this.refusalLog.get(refusal.reason);
    if (seen !== undefined && now - seen.at < REFUSAL_LOG_INTERVAL_MS) {
      seen.unlogged++;
      return refusal;
    }
    this.refusalLog.set(refusal.reason, { at: now, unlogged: 0 });
    this.opts.logger.warn(
      { reason: refusal.reason, identity, peer: call.getPeer(), ...(seen?.unlogged ? { notLogged: seen.unlogged } : {}), error: refusal.message },
      'certificate request refused',
    );
    return refusal;
  }
}
