// The control server's mesh CA: loads (or creates) the CA in --ca-dir, serves CreateCertificate, and gives the TLS
// port its credentials: a serving certificate issued from the same CA (SANs: localhost, 127.0.0.1, ::1, this host's
// name, the listen host), renewed at half-life, and the root to verify optional client certificates with (a proxy
// renews with its workload certificate instead of its bootstrap token).
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { generateKeyPair, privateKeyPem } from '../../src/tls/keys.js';
import type { x509 } from '../../src/tls/x509.js';
import { CaMetrics } from '../metrics.js';
import { loadOrCreateAuthority, type MeshAuthority } from './authority.js';
import { issueLeaf } from './issue.js';
import { CertificateService } from './service.js';
import { loadOrCreateTokenKey } from './token.js';

/** The serving certificate lives at least this long, whatever --cert-ttl says (it is renewed at half-life). */
const MIN_SERVING_TTL_MS = 3600_000;

export interface MeshCaOptions {
  readonly dir: string;
  readonly trustDomain: () => string;
  readonly certTtlMs: number;
  readonly registry: Registry;
  readonly logger: Logger;
  /** The address the TLS port listens on: a name or IP there is added to the serving certificate. */
  readonly listenHost: string;
  /** More names proxies dial the TLS port by (--server-name: a Kubernetes Service's DNS names). */
  readonly serverNames?: readonly string[];
}

export interface MeshCa {
  readonly authority: MeshAuthority;
  readonly service: CertificateService;
  readonly credentials: grpc.ServerCredentials;
  close(): void;
}

type Listener<T> = (update: T | null) => void;

/** grpc-js's CertificateProvider for one identity and one CA bundle, pushed to the server when they change. */
class ServingCertificates implements grpc.experimental.CertificateProvider {
  private ca: grpc.experimental.CaCertificateUpdate | null = null;
  private identity: grpc.experimental.IdentityCertificateUpdate | null = null;
  private readonly caListeners = new Set<Listener<grpc.experimental.CaCertificateUpdate>>();
  private readonly identityListeners = new Set<Listener<grpc.experimental.IdentityCertificateUpdate>>();

  setCa(pem: string): void {
    this.ca = { caCertificate: Buffer.from(pem) };
    for (const l of this.caListeners) l(this.ca);
  }

  setIdentity(certChainPem: string, keyPem: string): void {
    this.identity = { certificate: Buffer.from(certChainPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.identityListeners) l(this.identity);
  }

  // The current value goes to a new listener on the next tick, not at once: grpc-js registers its server's watcher
  // only after adding the listener, so an update delivered synchronously would never reach the TLS server.
  addCaCertificateListener(l: Listener<grpc.experimental.CaCertificateUpdate>): void {
    this.caListeners.add(l);
    setImmediate(() => {
      if (this.ca && this.caListeners.has(l)) l(this.ca);
    });
  }

  removeCaCertificateListener(l: Listener<grpc.experimental.CaCertificateUpdate>): void {
    this.caListeners.delete(l);
  }

  addIdentityCertificateListener(l: Listener<grpc.experimental.IdentityCertificateUpdate>): void {
    this.identityListeners.add(l);
    setImmediate(() => {
      if (this.identity && this.identityListeners.has(l)) l(this.identity);
    });
  }

  removeIdentityCertificateListener(l: Listener<grpc.experimental.IdentityCertificateUpdate>): void {
    this.identityListeners.delete(l);
  }
}

/** The names a proxy may dial the control server by. */
export function servingNames(listenHost: string, extra: readonly string[] = []): x509.JsonGeneralName[] {
  const names: x509.JsonGeneralName[] = [
    { type: 'dns', value: 'localhost' },
    { type: 'ip', value: '127.0.0.1' },
    { type: 'ip', value: '::1' },
  ];
  const add = (host: string): void => {
    if (host === '' || host === '0.0.0.0' || host === '::') return;
    const type = isIP(host) !== 0 ? 'ip' : 'dns';
    if (!names.some((n) => n.type === type && n.value === host)) names.push({ type, value: host });
  };
  add(hostname());
  add(listenHost);
  for (const name of extra) add(name);
  return names;
}

export async function startMeshCa(opts: MeshCaOptions): Promise<MeshCa> {
  const authority = await loadOrCreateAuthority(opts.dir, { trustDomain: opts.trustDomain() });
  for (const warning of authority.warnings) opts.logger.warn({ caDir: opts.dir }, warning);
  opts.logger.info(
    { caDir: opts.dir, source: authority.source, subject: authority.signingCert.subject, notAfter: authority.signingCert.notAfter.toISOString() },
    authority.source === 'created-root' ? 'mesh CA: created a new root' : 'mesh CA loaded',
  );
  const tokenKey = loadOrCreateTokenKey(opts.dir);
  const service = new CertificateService({
    authority,
    tokenKey,
    trustDomain: opts.trustDomain,
    certTtlMs: opts.certTtlMs,
    metrics: new CaMetrics(opts.registry),
    logger: opts.logger,
  });

  const provider = new ServingCertificates();
  provider.setCa(authority.rootPem);
  const names = servingNames(opts.listenHost, opts.serverNames ?? []);
  const ttlMs = Math.max(opts.certTtlMs, MIN_SERVING_TTL_MS);
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const renew = async (): Promise<void> => {
    const keys = await generateKeyPair();
    const leaf = await issueLeaf(authority, { publicKey: keys.publicKey, sans: names, ttlMs, nowMs: Date.now() });
    provider.setIdentity([leaf, ...authority.intermediatesPem].join(''), await privateKeyPem(keys.privateKey));
  };
  const schedule = (ms: number): void => {
    if (closed) return;
    timer = setTimeout(() => {
      renew().then(
        () => schedule(ttlMs / 2),
        (err: unknown) => {
          // Keeps the current certificate (still valid for a while) and tries again soon.
          opts.logger.error({ err: (err as Error).message }, 'mesh CA: cannot renew the serving certificate; retrying in 1 min');
          schedule(60_000);
        },
      );
    }, ms);
    timer.unref();
  };
  await renew();
  schedule(ttlMs / 2);
  opts.logger.info({ names: names.map((n) => n.value) }, 'mesh CA: serving certificate issued');
  // One provider as both: grpc-js's factory passes its arguments on in the other order than it names them.
  const credentials = grpc.experimental.createCertificateProviderServerCredentials(provider, provider, false);
  return {
    authority,
    service,
    credentials,
    close: () => {
      closed = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
