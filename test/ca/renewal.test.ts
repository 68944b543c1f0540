// The proxy's certificate client against a real control server (TLS gRPC) issuing 4-second certificates: it
// installs the first one in the SecretStore, renews at half-life (a later notAfter), keeps the certificate it
// holds while the CA is down (counting failures), and gets a new one once the CA is back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { CertificateClient } from '../../src/tls/cert-client.js';
import { ROOT_CA_SECRET, SecretStore, WORKLOAD_CERT_SECRET, type TlsCertificateSecret } from '../../src/tls/secrets.js';
import { loadOrCreateTokenKey, mintToken } from '../../xds/ca/token.js';
import type { ControlServer } from '../../xds/server.js';
import { readRoot, startCaControl, tempDir } from './helpers.js';

let base: string;
let caDir: string;
let control: ControlServer | null = null;
let client: CertificateClient | null = null;

beforeAll(() => {
  base = tempDir('pillion-ca-renew-');
  caDir = join(base, 'ca');
});

afterAll(async () => {
  client?.stop();
  await control?.close();
  rmSync(base, { recursive: true, force: true });
});

function notAfter(store: SecretStore): number {
  const secret = store.get(WORKLOAD_CERT_SECRET) as TlsCertificateSecret | undefined;
  if (secret === undefined) return 0;
  return Date.parse(new X509Certificate(secret.certChainPem).validTo);
}

/** Resolves with the next workload certificate put into the store. */
function nextCert(store: SecretStore, timeoutMs: number): Promise<TlsCertificateSecret> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no new workload certificate within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = store.onChange((name, secret) => {
      if (name !== WORKLOAD_CERT_SECRET || secret?.kind !== 'tls_certificate') return;
      clearTimeout(timer);
      off();
      resolve(secret);
    });
  });
}

async function counter(registry: Registry, result: string): Promise<number> {
  const m = (await registry.getSingleMetric('pillion_workload_cert_renewals_total')!.get()).values.find((v) => v.labels.result === result);
  return m?.value ?? 0;
}

describe('certificate client', () => {
  it('renews at half-life and keeps its certificate while the CA is down', async () => {
    control = await startCaControl(caDir, { certTtlMs: 4_000 });
    const securePort = control.securePort;
    const tokenFile = join(base, 'web.token');
    writeFileSync(tokenFile, mintToken(loadOrCreateTokenKey(caDir), { namespace: 'shop', serviceAccount: 'web' }, 3600_000, Date.now()));
    const store = new SecretStore();
    const registry = new Registry();
    client = new CertificateClient({
      servers: [`127.0.0.1:${securePort}`],
      rootPem: readRoot(caDir),
      tokenFile,
      identity: { namespace: 'shop', serviceAccount: 'web' },
      secrets: store,
      registry,
      logger: pino({ level: 'silent' }),
      backoff: { baseMs: 200, maxMs: 500 },
    });
    const first = nextCert(store, 5_000);
    client.start();
    await first;
    const firstNotAfter = notAfter(store);
    expect(new X509Certificate((store.get(WORKLOAD_CERT_SECRET) as TlsCertificateSecret).certChainPem).subjectAltName).toBe('URI:spiffe://example.org/ns/shop/sa/web');
    expect(store.get(ROOT_CA_SECRET)).toEqual({ kind: 'validation_context', trustedCaPem: readRoot(caDir) });
    const expiry = (await registry.getSingleMetric('pillion_workload_cert_expiry_timestamp_seconds')!.get()).values[0]!.value;
    expect(expiry).toBe(firstNotAfter / 1000);

    // Half of 4 s: the renewal comes about 2 s later, with a later notAfter and a new key.
    const started = Date.now();
    const renewed = await nextCert(store, 4_000);
    expect(Date.now() - started).toBeGreaterThan(1_000);
    expect(notAfter(store)).toBeGreaterThan(firstNotAfter);
    expect(renewed.privateKeyPem).not.toBe((await first).privateKeyPem);
    expect(await counter(registry, 'success')).toBeGreaterThanOrEqual(2);
    // The renewal proved the proxy by its certificate (mTLS), not by the token.
    const caMetrics = await (await fetch(`http://127.0.0.1:${control.adminPort}/metrics`)).text();
    expect(caMetrics).toMatch(/pillion_control_certificates_issued_total\{auth="client_cert"\} [1-9]/);

    // The CA goes away: renewals fail, and the store keeps what it has.
    await control.close();
    control = null;
    const held = store.get(WORKLOAD_CERT_SECRET);
    const failuresBefore = await counter(registry, 'failure');
    await new Promise((r) => setTimeout(r, 3_000));
    expect(store.get(WORKLOAD_CERT_SECRET)).toBe(held);
    expect(await counter(registry, 'failure')).toBeGreaterThan(failuresBefore);

    // Back on the same port and CA directory: a new certificate (by token, the old one has expired by now).
    const back = nextCert(store, 6_000);
    control = await startCaControl(caDir, { certTtlMs: 4_000, securePort });
    await back;
    expect(notAfter(store)).toBeGreaterThan(Date.now());
  }, 20_000);
});
