// Every metric the control server exports, declared in one place with help text, on its own prom-client Registry.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Short, bounded label values for the xDS resource types (never a raw type URL or node id), shared with the proxy. */
export type { XdsTypeLabel } from '../src/xds/type-labels.js';

export class ControlMetrics {
  readonly registry = new Registry();

  readonly connectedProxies = new Gauge({
    name: 'pillion_control_connected_proxies',
    help: 'ADS streams open now that have announced their node',
    registers: [this.registry],
  });

  readonly pushes = new Counter({
    name: 'pillion_control_pushes_total',
    help: 'DiscoveryResponses sent, by resource type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  readonly pushDuration = new Histogram({
    name: 'pillion_control_push_duration_seconds',
    help: 'Time from a config change being detected to a DiscoveryResponse carrying it being written to a stream',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  readonly nacks = new Counter({
    name: 'pillion_control_nacks_total',
    help: 'DiscoveryRequests that rejected (NACKed) the version last sent, by resource type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });

  readonly streamsRefused = new Counter({
    name: 'pillion_control_streams_refused_total',
    help: 'ADS streams refused or ended for passing a limit (streams open, resource names per type, name length, name characters per stream, node field length), by limit',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });

  readonly configValid = new Gauge({
    name: 'pillion_control_config_valid',
    help: '1 when the mesh config file as last read is valid, 0 when it is not (the last good config keeps serving)',
    registers: [this.registry],
  });

  readonly configErrors = new Counter({
    name: 'pillion_control_config_errors_total',
    help: 'Edits of the mesh config file that failed to load or validate',
    registers: [this.registry],
  });

  readonly configVersionInfo = new Gauge({
    name: 'pillion_control_config_version_info',
    help:
      'The mesh config version served now (value 1 on it): the version_info of every response compiled from it, so ' +
      'a proxy that took it shows the same string in pillion_config_version_info and its /config_dump',
    labelNames: ['version'] as const,
    registers: [this.registry],
  });

  constructor() {
    this.configValid.set(1);
    this.connectedProxies.set(0);
  }

  /** Marks `version` as the one served: its series is 1, the previous one is removed. */
  setConfigVersion(version: string): void {
    this.configVersionInfo.reset();
    this.configVersionInfo.labels(version).set(1);
  }
}

/** Why the mesh CA refused a certificate request: the `reason` label of pillion_control_certificates_refused_total. */
export type CertRefusalReason =
  | 'no_credentials'
  | 'token_malformed'
  | 'token_bad_signature'
  | 'token_expired'
  | 'client_cert_identity'
  | 'bad_csr'
  | 'identity_mismatch'
  | 'signing_failed';

export const CERT_REFUSAL_REASONS: readonly CertRefusalReason[] = [
  'no_credentials', 'token_malformed', 'token_bad_signature', 'token_expired', 'client_cert_identity', 'bad_csr', 'identity_mismatch', 'signing_failed',
];

/** The mesh CA's metrics (xds/ca/), on the control server's registry. */
export class CaMetrics {
  readonly issued: Counter<'auth'>;
  readonly refused: Counter<'reason'>;

  constructor(registry: Registry) {
    this.issued = new Counter({
      name: 'pillion_control_certificates_issued_total',
      help: 'Workload certificates the mesh CA issued, by how the caller proved its identity (token or client_cert)',
      labelNames: ['auth'] as const,
      registers: [registry],
    });
    this.refused = new Counter({
      name: 'pillion_control_certificates_refused_total',
      help: 'Certificate requests the mesh CA refused, by reason (no_credentials, token_malformed, token_bad_signature, token_expired, client_cert_identity, bad_csr, identity_mismatch, signing_failed)',
      labelNames: ['reason'] as const,
      registers: [registry],
    });
    for (const auth of ['token', 'client_cert']) this.issued.labels(auth).inc(0);
    for (const reason of CERT_REFUSAL_REASONS) this.refused.labels(reason).inc(0);
  }
}
