import { describe, expect, it } from 'vitest';
import { MAX_BODY_CHARS, parseAppliedBody, parseFromWorker, parseMetrics } from './ipc.js';

describe('messages from workers', () => {
  it('takes the known types with their fields', () => {
    expect(parseFromWorker({ t: 'up' })).toEqual({ message: { t: 'up' } });
    expect(parseFromWorker({ t: 'applied', gen: 3, ok: true, body: '{}' })).toEqual({ message: { t: 'applied', gen: 3, ok: true, body: '{}' } });
    expect(parseFromWorker({ t: 'answer', id: 7, body: '[]' })).toEqual({ message: { t: 'answer', id: 7, body: '[]' } });
    expect(parseFromWorker({ t: 'drained', id: 2 })).toEqual({ message: { t: 'drained', id: 2 } });
  });

  it('ignores unknown types, wrong fields and oversized bodies, saying which', () => {
    expect(parseFromWorker({ t: 'hello' })).toEqual({ ignored: 'unknown_type' });
    expect(parseFromWorker('up')).toEqual({ ignored: 'malformed' });
    expect(parseFromWorker(null)).toEqual({ ignored: 'malformed' });
    expect(parseFromWorker({ t: 'applied', gen: -1, ok: true, body: '{}' })).toEqual({ ignored: 'malformed' });
    expect(parseFromWorker({ t: 'answer', id: 1.5, body: '' })).toEqual({ ignored: 'malformed' });
    expect(parseFromWorker({ t: 'answer', id: 1, body: 'x'.repeat(MAX_BODY_CHARS + 1) })).toEqual({ ignored: 'too_large' });
  });

  it('checks bodies before the primary uses them', () => {
    expect(parseAppliedBody('{"error":null,"listeners":[{"name":"outbound","address":"127.0.0.1","port":15001,"direction":"outbound"}]}')?.listeners).toHaveLength(1);
    expect(parseAppliedBody('{"error":null,"listeners":[{"name":1}]}')).toBeNull();
    expect(parseAppliedBody('not json')).toBeNull();
    const metric = { name: 'm', help: 'h', type: 'counter', aggregator: 'sum', values: [{ value: 1, labels: {} }, { value: null, labels: {} }] };
    expect(parseMetrics(JSON.stringify([metric]))?.[0]?.values).toEqual([{ value: 1, labels: {} }]);
    expect(parseMetrics(JSON.stringify([{ ...metric, aggregator: 'bogus' }]))).toBeNull();
    expect(parseMetrics(JSON.stringify([{ ...metric, type: 'weird' }]))).toBeNull();
  });
});
