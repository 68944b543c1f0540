import { describe, expect, it } from 'vitest';
import type { RetryPolicyModel } from '../../config/model.js';
import { backoffMs, parseRetryOn, retriableFailure, retriableResponse } from './retry-policy.js';

function policy(retryOn: string[], retriableStatusCodes: number[] = []): RetryPolicyModel {
  const { conditions } = parseRetryOn(retryOn);
  return { numRetries: 2, perTryTimeoutMs: 0, retryOn, conditions, bufferLimitBytes: 65_536, retriableStatusCodes, backoffBaseMs: 25, backoffMaxMs: 250 };
}

describe('retry conditions (Envoy x-envoy-retry-on semantics)', () => {
  it('5xx retries every 5xx and every failure without a response', () => {
    const p = policy(['5xx']);
    expect([500, 502, 503, 504, 599].every((s) => retriableResponse(p, s, undefined))).toBe(true);
    expect(retriableResponse(p, 404, undefined)).toBe(false);
    expect((['connect', 'reset', 'refused', 'perTryTimeout'] as const).every((f) => retriableFailure(p, f))).toBe(true);
  });

  it('gateway-error retries 502-504 only', () => {
    const p = policy(['gateway-error']);
    expect(retriableResponse(p, 500, undefined)).toBe(false);
    expect(retriableResponse(p, 501, undefined)).toBe(false);
    expect([502, 503, 504].every((s) => retriableResponse(p, s, undefined))).toBe(true);
    expect(retriableFailure(p, 'perTryTimeout')).toBe(true);
  });

  it('connect-failure retries only failed connects; refused-stream only REFUSED_STREAM', () => {
    const c = policy(['connect-failure']);
    expect(retriableFailure(c, 'connect')).toBe(true);
    expect(retriableFailure(c, 'reset')).toBe(false);
    expect(retriableResponse(c, 503, undefined)).toBe(false);
    const r = policy(['refused-stream']);
    expect(retriableFailure(r, 'refused')).toBe(true);
    expect(retriableFailure(r, 'connect')).toBe(false);
  });

  it('retriable-status-codes and retriable-4xx', () => {
    const p = policy(['retriable-status-codes'], [429]);
    expect(retriableResponse(p, 429, undefined)).toBe(true);
    expect(retriableResponse(p, 503, undefined)).toBe(false);
    expect(retriableFailure(p, 'perTryTimeout')).toBe(false);
    expect(retriableFailure(policy(['retriable-status-codes'], [504]), 'perTryTimeout')).toBe(true);
    expect(retriableResponse(policy(['retriable-4xx']), 409, undefined)).toBe(true);
    expect(retriableResponse(policy(['retriable-4xx']), 400, undefined)).toBe(false);
  });

  it('gRPC conditions read grpc-status', () => {
    const p = policy(['unavailable', 'cancelled']);
    expect(retriableResponse(p, 200, '14')).toBe(true);
    expect(retriableResponse(p, 200, '1')).toBe(true);
    expect(retriableResponse(p, 200, '4')).toBe(false);
    expect(retriableResponse(p, 200, undefined)).toBe(false);
    expect(retriableResponse(policy(['deadline-exceeded', 'resource-exhausted', 'internal']), 200, '8')).toBe(true);
  });

  it('reports conditions it does not know', () => {
    expect(parseRetryOn(['5xx', 'retriable-headers', 'bogus']).unknown).toEqual(['retriable-headers', 'bogus']);
  });
});

describe('backoff (fully jittered exponential)', () => {
  it('draws from [0, (2^N - 1) × base), capped at max', () => {
    const p = policy(['5xx']);
    expect(backoffMs(p, 1, () => 0.999)).toBe(24);
    expect(backoffMs(p, 2, () => 0.999)).toBe(74);
    expect(backoffMs(p, 3, () => 0.999)).toBe(174);
    expect(backoffMs(p, 4, () => 0.999)).toBe(249);
    expect(backoffMs(p, 50, () => 0.5)).toBe(125);
    expect(backoffMs(p, 1, () => 0)).toBe(0);
  });
});
