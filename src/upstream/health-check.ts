// Active health checking of one cluster: per endpoint one unref'd timer and at most one probe in flight; results
// go to the pure core (health-check-state.ts) and the cluster hears when an endpoint starts or stops passing.
// Probes use their own sockets, not the connection pools, so they count in no request or connection stat.
import type { HealthCheckModel } from '../config/model.js';
import { nextDelayMs, recordProbe, type ProbeResult } from './health-check-state.js';
import { HealthProbe } from './health-probe.js';
import type { EndpointState } from './types.js';
import type { UpstreamTlsConnector } from '../tls/upstream-tls.js';

/** What the checker needs from its cluster. */
export interface HealthCheckHost {
  /** An endpoint started or stopped passing: rebuild the load balancer. */
  healthChanged(): void;
  /** Counts one finished probe. */
  probed(success: boolean): void;
  /** Whether the cluster has carried traffic yet (Envoy probes at no_traffic_interval until it has). */
  hadTraffic(): boolean;
  /** The cluster's TLS origination now (null: plaintext); probes go through it, as the cluster's connections do. */
  readonly tls: UpstreamTlsConnector | null;
}

class Session {
  private timer: NodeJS.Timeout | null = null;
  private probe: HealthProbe | null = null;
  private stopped = false;

  constructor(
    private readonly checker: HealthChecker,
    readonly endpoint: EndpointState,
  ) {}

  schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => this.run(), delayMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.probe?.cancel();
    this.probe = null;
  }

  private run(): void {
    this.timer = null;
    const cfg = this.checker.config;
    const e = this.endpoint;
    this.probe = new HealthProbe(e.address, e.port, cfg.timeoutMs, cfg.http, (result) => this.onResult(result), this.checker.tls);
    this.probe.start();
  }

  private onResult(result: ProbeResult): void {
    this.probe = null;
    if (this.stopped) return;
    this.checker.record(this.endpoint, result);
    this.schedule(this.checker.nextDelay());
  }
}

export class HealthChecker {
  private readonly sessions = new Map<EndpointState, Session>();
  private configKey: string;

  constructor(
    public config: HealthCheckModel,
    private readonly host: HealthCheckHost,
    private readonly random: () => number = Math.random,
  ) {
    this.configKey = JSON.stringify(config);
  }

  /** The cluster's TLS origination for the next probe (it follows the cluster's transport socket). */
  get tls(): UpstreamTlsConnector | null {
    return this.host.tls;
  }

  /**
   * Follows a new config and endpoint list: endpoints new to the list start probing (after the initial jitter),
   * those that left stop. A changed health check restarts every session so a new interval or path applies now;
   * the endpoints keep their status.
   */
  sync(config: HealthCheckModel, endpoints: readonly EndpointState[]): void {
    const key = JSON.stringify(config);
    this.config = config;
    if (key !== this.configKey) {
      this.configKey = key;
      this.stop();
    }
    const live = new Set(endpoints);
    for (const [endpoint, session] of this.sessions) {
      if (live.has(endpoint)) continue;
      session.stop();
      this.sessions.delete(endpoint);
    }
    for (const endpoint of endpoints) {
      if (this.sessions.has(endpoint)) continue;
      const session = new Session(this, endpoint);
      this.sessions.set(endpoint, session);
      session.schedule(Math.floor(this.random() * this.config.initialJitterMs));
    }
  }

  stop(): void {
    for (const session of this.sessions.values()) session.stop();
    this.sessions.clear();
  }

  record(endpoint: EndpointState, result: ProbeResult): void {
    const state = endpoint.healthCheck;
    if (state === null) return;
    this.host.probed(result === 'success');
    if (recordProbe(this.config, state, result)) this.host.healthChanged();
  }

  nextDelay(): number {
    return nextDelayMs(this.config, this.host.hadTraffic(), this.random);
  }
}
