// The proxy's certificate client: makes a key pair in memory (it never leaves the process nor touches disk), sends
// a CSR to the mesh CA (pillion.ca.v1.CertificateService/CreateCertificate on the control server's TLS port), and
// puts the certificate and trust bundle into the SecretStore under 'default' and 'ROOTCA'. The first request
// authenticates with the bootstrap token (--token, read again at each use so an operator may replace it); renewals
// authenticate with the current certificate, so the token may expire once the proxy has one. Renewal is due at
// half-life; while the CA is away the proxy retries with backoff and jitter and keeps serving with what it holds.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { Backoff, type BackoffOptions } from '../xds/backoff.js';
import { certificateService, type CreateCertificateRequest, type CreateCertificateResponse } from './ca-proto.js';
import { EC_P256, generateKeyPair, privateKeyPem } from './keys.js';
import { parseSpiffeId } from './peer.js';
import { ROOT_CA_SECRET, WORKLOAD_CERT_SECRET, type SecretStore } from './secrets.js';
import { x509 } from './x509.js';

/** A token file is a few hundred bytes (the CA takes at most 2 KiB): anything larger is not read. */
const MAX_TOKEN_FILE_BYTES = 4096;
/** A CreateCertificate call that takes longer is given up and retried (the CA signs in well under a millisecond). */
const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Retries while the CA is away: from 1 s to 30 s windows, full jitter (src/xds/backoff.ts). */
export const DEFAULT_CERT_BACKOFF = { baseMs: 1_000, maxMs: 30_000 } as const;
/** Renewals never come closer together than this, whatever the certificate's life. */
const MIN_RENEW_DELAY_MS = 500;

export interface CertClientOptions {
  /** The control servers' TLS ports (HOST:PORT); each retry tries the next. */
  readonly servers: readonly string[];
  /** PEM of the mesh root (--xds-ca): the CA server must present a certificate that chains to it. */
  readonly rootPem: string;
  /** --token: the bootstrap token's file. */
  readonly tokenFile?: string;
  /** Who this proxy is (--namespace, --service-account): a certificate for anyone else is not installed. */
  readonly identity: { readonly namespace: string; readonly serviceAccount: string };
  readonly secrets: SecretStore;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly backoff?: BackoffOptions;
  readonly requestTimeoutMs?: number;
}

interface Held {
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly rootPem: string;
  readonly notAfterMs: number;
  readonly spiffeId: string;
}

interface CertMetrics {
  expiry: Gauge;
  renewals: Counter<'result'>;
}

function certMetrics(registry: Registry): CertMetrics {
  const expiry =
    (registry.getSingleMetric('pillion_workload_cert_expiry_timestamp_seconds') as Gauge | undefined) ??
    new Gauge({
      name: 'pillion_workload_cert_expiry_timestamp_seconds',
      help: 'When the workload certificate the proxy holds expires (Unix seconds); absent until it has one.',
      registers: [registry],
    });
  const renewals =
    (registry.getSingleMetric('pillion_workload_cert_renewals_total') as Counter<'result'> | undefined) ??
    new Counter({
      name: 'pillion_workload_cert_renewals_total',
      help: 'Certificate requests to the mesh CA (the first one and every renewal), by result (success or failure).',
      labelNames: ['result'] as const,
      registers: [registry],
    });
  for (const result of ['success', 'failure']) renewals.labels(result).inc(0);
  return { expiry, renewals };
}

type CaStub = grpc.Client & {
  CreateCertificate(
    req: CreateCertificateRequest,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
    callback: (err: grpc.ServiceError | null, res?: CreateCertificateResponse) => void,
  ): grpc.ClientUnaryCall;
};

export class CertificateClient {
  private readonly backoff: Backoff;
  private readonly metrics: CertMetrics;
  private readonly log: Logger;
  private held: Held | null = null;
  private timer: NodeJS.Timeout | null = null;
  private serverIndex = 0;
  private stopped = false;
  private expiredLogged = false;
  /** The CA refused our certificate as a credential (say, its root was replaced): use the token until a new one. */
  private certAuthRefused = false;
  private readonly issuedWaiters: (() => void)[] = [];

  constructor(private readonly opts: CertClientOptions) {
    if (opts.servers.length === 0) throw new Error('CertificateClient: no CA servers');
    this.backoff = new Backoff(opts.backoff ?? DEFAULT_CERT_BACKOFF);
    this.metrics = certMetrics(opts.registry);
    this.log = opts.logger.child({ component: 'cert' });
  }

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Resolves once the first certificate is in the SecretStore. */
  whenIssued(): Promise<void> {
    if (this.held !== null) return Promise.resolve();
    return new Promise((resolve) => this.issuedWaiters.push(resolve));
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.renew().then(
        (delay) => this.schedule(delay),
        // renew() turns every failure into a delay; this only keeps a bug from becoming an unhandled rejection.
        (err: unknown) => {
          this.log.error({ err }, 'certificate client: internal error');
          this.schedule(this.backoff.next());
        },
      );
    }, ms);
    // The proxy's listeners keep the process alive; a pending renewal must not, on its own.
    this.timer.unref();
  }

  /** One CSR round; returns how long to wait before the next one. */
  private async renew(): Promise<number> {
    const server = this.opts.servers[this.serverIndex % this.opts.servers.length]!;
    try {
      const held = await this.request(server);
      this.install(held);
      this.backoff.reset();
      this.metrics.renewals.labels('success').inc();
      const remaining = held.notAfterMs - Date.now();
      // Half of the life it has left now (not since notBefore, which the CA backdates for clock skew).
      return Math.max(MIN_RENEW_DELAY_MS, remaining / 2);
    } catch (err) {
      this.metrics.renewals.labels('failure').inc();
      this.serverIndex++;
      const delay = this.backoff.next();
      const held = this.held;
      const expired = held !== null && held.notAfterMs <= Date.now();
      const fields = { server, reason: (err as Error).message, retryInMs: delay, attempt: this.backoff.attempts, ...(held ? { keeping: held.spiffeId, notAfter: new Date(held.notAfterMs).toISOString() } : {}) };
      if (expired && !this.expiredLogged) {
        this.expiredLogged = true;
        this.log.error(fields, 'workload certificate expired and the mesh CA cannot renew it');
      } else {
        this.log.warn(fields, held ? 'certificate renewal failed: keeping the current certificate' : 'cannot obtain a workload certificate');
      }
      return delay;
    }
  }

  /** Reads the token file, or says why not. */
  private token(): string {
    const file = this.opts.tokenFile;
    if (file === undefined) throw new Error('no --token: a bootstrap token is needed for the first certificate (and after the current one expired)');
    const size = statSync(file).size;
    if (size > MAX_TOKEN_FILE_BYTES) throw new Error(`${file}: ${size} bytes; a token file is at most ${MAX_TOKEN_FILE_BYTES}`);
    return readFileSync(file, 'utf8').trim();
  }

  private async request(server: string): Promise<Held> {
    const keys = await generateKeyPair();
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_P256 });
    const keyPem = await privateKeyPem(keys.privateKey);
    const metadata = new grpc.Metadata();
    const current = this.held !== null && !this.certAuthRefused && this.held.notAfterMs > Date.now() + 1_000 ? this.held : null;
    // With a valid certificate the proxy proves itself with it (mTLS); without one, with the token.
    const credentials = current
      ? grpc.credentials.createSsl(Buffer.from(this.opts.rootPem), Buffer.from(current.keyPem), Buffer.from(current.certChainPem))
      : grpc.credentials.createSsl(Buffer.from(this.opts.rootPem));
    if (current === null) metadata.set('authorization', `Bearer ${this.token()}`);
    const Ctor = certificateService() as unknown as new (address: string, credentials: grpc.ChannelCredentials) => CaStub;
    const client = new Ctor(server, credentials);
    let response: CreateCertificateResponse;
    try {
      response = await new Promise<CreateCertificateResponse>((resolve, reject) => {
        client.CreateCertificate(
          { csr: csr.toString('pem') },
          metadata,
          { deadline: Date.now() + (this.opts.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS) },
          (err, res) => {
            if (err && current !== null && (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED)) this.certAuthRefused = true;
            if (err) reject(describe(err));
            else resolve(res ?? {});
          },
        );
      });
    } finally {
      client.close();
    }
    return this.check(response, keyPem);
  }

  /** The chain must be for our key and our identity, and chain to the root it carries. */
  private check(response: CreateCertificateResponse, keyPem: string): Held {
    const chain = (response.cert_chain ?? []).map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`));
    if (chain.length < 2) throw new Error(`the CA answered ${chain.length} certificates; expected the certificate and the root`);
    const certs = chain.map((pem) => new X509Certificate(pem));
    const leaf = certs[0]!;
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('the CA answered a certificate for another key');
    for (let i = 0; i + 1 < certs.length; i++) {
      if (!certs[i]!.verify(certs[i + 1]!.publicKey)) throw new Error('the chain the CA answered does not verify up to its root');
    }
    const uri = (leaf.subjectAltName ?? '').split(', ').find((n) => n.startsWith('URI:'))?.slice(4) ?? '';
    const id = parseSpiffeId(uri);
    const { namespace, serviceAccount } = this.opts.identity;
    if (id === null || id.namespace !== namespace || id.serviceAccount !== serviceAccount) {
      throw new Error(`the CA issued a certificate for ${uri || 'no SPIFFE ID'}, but this proxy runs as ns/${namespace}/sa/${serviceAccount}: its --token is for another identity`);
    }
    return { certChainPem: chain.slice(0, -1).join(''), keyPem, rootPem: chain[chain.length - 1]!, notAfterMs: Date.parse(leaf.validTo), spiffeId: uri };
  }

  private install(held: Held): void {
    const first = this.held === null;
    this.held = held;
    this.expiredLogged = false;
    this.certAuthRefused = false;
    const { secrets } = this.opts;
    secrets.set(WORKLOAD_CERT_SECRET, { kind: 'tls_certificate', certChainPem: held.certChainPem, privateKeyPem: held.keyPem });
    // The root changes rarely; a new object each time would make every listener rebuild for nothing.
    const old = secrets.get(ROOT_CA_SECRET);
    if (old?.kind !== 'validation_context' || old.trustedCaPem !== held.rootPem) {
      secrets.set(ROOT_CA_SECRET, { kind: 'validation_context', trustedCaPem: held.rootPem });
    }
    this.metrics.expiry.set(held.notAfterMs / 1000);
    this.log.info({ identity: held.spiffeId, notAfter: new Date(held.notAfterMs).toISOString() }, first ? 'workload certificate issued' : 'workload certificate renewed');
    if (first) for (const resolve of this.issuedWaiters.splice(0)) resolve();
  }
}

/** A gRPC error in words an operator can act on. */
function describe(err: grpc.ServiceError): Error {
  const details = err.details || grpc.status[err.code] || 'failed';
  const hint = /certificate|self.signed|unable to verify|SSL|TLS/i.test(details)
    ? ' (TLS: is --xds-ca the root-cert.pem of the control server\'s --ca-dir, and --xds its TLS port?)'
    : '';
  return new Error(`${grpc.status[err.code] ?? err.code}: ${details}${hint}`);
}
