// envoy.filters.http.fault: a fixed delay and/or an abort for a share of requests, for chaos testing. The route's
// typed_per_filter_config replaces the listener's config; as in Envoy, a delayed request that is also to be
// aborted is aborted after its delay.
import type { FaultModel, RouteModel } from '../../config/model.js';
import { faultAbort, type Reason } from '../../reasons.js';
import type { Random } from '../../upstream/types.js';
import type { FilteredRequest, HoldTracker, HttpFilter } from './filter.js';

const PER_MILLION = 1_000_000;

/** Per config: the delays in progress (max_active_faults) and the abort reasons. */
class FaultState implements HoldTracker {
  active = 0;
  readonly httpAbort: Reason | null;
  readonly grpcAbort: Reason | null;

  constructor(readonly model: FaultModel) {
    this.httpAbort = model.abortHttpStatus !== 0 ? faultAbort(model.abortHttpStatus, 14) : null;
    this.grpcAbort = model.abortGrpcStatus !== undefined ? faultAbort(503, model.abortGrpcStatus) : null;
  }

  holdEnded(): void {
    this.active--;
  }
}

/** By config object, not by filter: a config update that keeps a config keeps its state (a bucket stays drained). */
const STATES = new WeakMap<FaultModel, FaultState>();

export class FaultFilter implements HttpFilter {
  constructor(
    private readonly name: string,
    private readonly listenerConfig: FaultModel,
    private readonly random: Random,
  ) {}

  onRequest(request: FilteredRequest, route: RouteModel): boolean {
    const override = route.filterConfigs?.get(this.name);
    const model = override?.kind === 'fault' ? override.config : this.listenerConfig;
    const state = this.stateOf(model);
    if (model.maxActiveFaults > 0 && state.active >= model.maxActiveFaults) return true;
    // A gRPC abort applies to gRPC requests; an HTTP status to the rest (and to gRPC ones when no gRPC status is set).
    const abort = request.grpc && state.grpcAbort !== null ? state.grpcAbort : state.httpAbort ?? (request.grpc ? null : state.grpcAbort);
    const aborting = abort !== null && this.chance(model.abortPerMillion);
    if (model.delayMs > 0 && this.chance(model.delayPerMillion)) {
      state.active++;
      request.hold(model.delayMs, aborting ? abort : null, state);
      return false;
    }
    if (aborting) {
      request.localReply(abort);
      return false;
    }
    return true;
  }

  private chance(perMillion: number): boolean {
    return perMillion >= PER_MILLION || (perMillion > 0 && this.random() * PER_MILLION < perMillion);
  }

  private stateOf(model: FaultModel): FaultState {
    let state = STATES.get(model);
    if (state === undefined) {
      state = new FaultState(model);
      STATES.set(model, state);
    }
    return state;
  }
}
