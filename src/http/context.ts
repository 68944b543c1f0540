// What the requests of one HTTP filter chain share: the chain's config, the live route table of the current
// snapshot, the cluster manager, and where stats go. One per listener chain, not per request.
import type { ConfigSnapshot, Direction, HashPolicyModel, HttpChainModel, RouteActionModel, RouteConfigModel, RouteModel } from '../config/model.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { NO_AUTHZ_SINK, type AuthzSink } from '../authz/stats.js';
import type { Random } from '../upstream/types.js';
import type { Reason } from '../reasons.js';
import type { OverloadState } from '../process/overload.js';
import type { HttpExchange } from './exchange.js';
import { buildFilters } from './filters/chain.js';
import type { HttpFilter } from './filters/filter.js';
import type { OriginalDestination } from '../listener/original-dst.js';
import { endpointKey } from '../upstream/cluster-manager.js';
import { computeRequestHash, headerSourceOf, matchRoute, pickWeightedCluster, routeIndexOf, type RouteIndex } from './route-match.js';

/** Request headers by lower-case name, as either codec delivers them (HTTP/2: no pseudo headers; see the exchange). */
export type RequestHeaders = Record<string, string | string[] | undefined>;

export interface ConfigHolder {
  readonly current: ConfigSnapshot;
}

export interface HttpStats {
  /** Where the RBAC and JWT filters count (none: they count nothing). */
  readonly authz?: AuthzSink;
  requestStarted(direction: Direction): void;
  localReply(reason: Reason): void;
  requestFinished(request: FinishedRequest, seconds: number): void;
}

/** What the request counters and the access log read of a finished request: an exchange, or a refused Upgrade. */
export type FinishedRequest = Pick<
  HttpExchange,
  | 'direction' | 'protocol' | 'method' | 'authority' | 'path' | 'status' | 'bytesReceived' | 'bytesSent'
  | 'upstreamCluster' | 'upstreamHost' | 'attempts' | 'reason' | 'requestId' | 'span' | 'remoteAddress' | 'peer'
>;

/** A route table bound to one RouteConfigModel (immutable), so requests in flight keep the one they matched on. */
export class RouteTable {
  private readonly index: RouteIndex;
  constructor(readonly config: RouteConfigModel) {
    this.index = routeIndexOf(config);
  }

  /**
   * With `originalDst` (an intercepted connection), a Host no virtual host names (or only `*`) is matched again as
   * the dialed ADDR:PORT, exact domains only: an app that dials a service's address with a Host of its own (or
   * none we know) reaches that service, as without a sidecar. A Pillion rule; Envoy has no such fallback.
   */
  match(authority: string, method: string, path: string, headers: RequestHeaders, scheme: string, originalDst?: OriginalDestination): RouteModel | null {
    let vh = this.index.select(authority);
    // An inbound table (`*` only) has no address domains: no string is made for it, per request.
    if (originalDst !== undefined && (vh === null || vh === this.index.wildcard) && this.index.hasExactDomains) {
      vh = this.index.exact(endpointKey(originalDst.address, originalDst.port)) ?? vh;
    }
    if (vh === null) return null;
    return matchRoute(vh, method, path, headerSourceOf(headers, authority, scheme));
  }
}

export class HttpContext {
  draining = false;
  private tableConfig: RouteConfigModel | null = null;
  private table: RouteTable | null = null;

  private filtersOf: HttpChainModel | null = null;
  private builtFilters: readonly HttpFilter[] = [];

  constructor(
    public chain: HttpChainModel,
    readonly direction: Direction,
    private readonly config: ConfigHolder,
    readonly clusters: ClusterManager,
    readonly stats: HttpStats,
    /** Past the memory threshold new requests get 503 overload (src/process/overload.ts). */
    readonly overload: OverloadState,
    readonly random: Random = Math.random,
  ) {}

  /** The route table of the current snapshot (rebuilt only when the RouteConfiguration object changes). */
  routeTable(): RouteTable | null {
    const config = this.config.current.routeConfigs.get(this.chain.routeConfigName);
    if (config === undefined) return null;
    if (config !== this.tableConfig) {
      this.tableConfig = config;
      this.table = new RouteTable(config);
    }
    return this.table;
  }

  /** The chain's filters before the router, built again only when the chain's config changes. */
  filters(): readonly HttpFilter[] {
    const chain = this.chain;
    if (chain !== this.filtersOf) {
      this.filtersOf = chain;
      this.builtFilters = buildFilters(chain.httpFilters, this.random, this.stats.authz ?? NO_AUTHZ_SINK);
    }
    return this.builtFilters;
  }

  pickCluster(action: RouteActionModel): string {
    return pickWeightedCluster(action, this.random);
  }

  requestHash(policies: readonly HashPolicyModel[], headers: RequestHeaders, authority: string, sourceIp: string): number | undefined {
    return computeRequestHash(policies, headerSourceOf(headers, authority), sourceIp);
  }
}
