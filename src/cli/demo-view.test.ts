// The demo screen's pure parts: config status and NACKs from /proxies, counters carried across a restart.
import { describe, expect, it } from 'vitest';
import { carryOverReset, ConfigWatch } from './demo-view.js';
import type { ProxiesDocument } from './control-status.js';

const acked = { versionSent: 'v1', versionAcked: 'v1', lastNack: null };

function doc(over: Partial<ProxiesDocument> = {}): ProxiesDocument {
  return { configVersion: 'c1', configError: null, proxies: [{ nodeId: 'frontend-1', types: { lds: acked, cds: acked } }], ...over };
}

describe('ConfigWatch', () => {
  it('reports a NACK once, shows it while it stands, and forgets it once a newer version is ACKed', () => {
    const w = new ConfigWatch();
    expect(w.update(doc(), 0)).toEqual({ screen: ['valid, version c1; 1 proxies connected'], summary: 'ok nacks=0', events: [] });
    const nacked = doc({
      proxies: [{ nodeId: 'frontend-1', types: { lds: acked, cds: { versionSent: 'v2', versionAcked: 'v1', lastNack: { version: 'v2', error: 'cluster x:\n bad lb', at: 'T' } } } }],
    });
    const first = w.update(nacked, 0);
    expect(first.events).toEqual(['[00:00:00] frontend-1 rejected (NACK) cds version v2: cluster x: bad lb']);
    expect(first.screen).toContain('NACK frontend-1 cds v2: cluster x: bad lb');
    expect(first.summary).toBe('ok nacks=1');
    expect(w.update(nacked, 1000).events).toEqual([]);
    // v3 ACKed: the old NACK is history, not a current rejection.
    const fixed = doc({ proxies: [{ nodeId: 'frontend-1', types: { cds: { versionSent: 'v3', versionAcked: 'v3', lastNack: { version: 'v2', error: 'bad', at: 'T' } } } }] });
    expect(w.update(fixed, 2000)).toMatchObject({ summary: 'ok nacks=0', events: [] });
  });

  it('reports an invalid mesh file with its problems, and when it is valid again', () => {
    const w = new ConfigWatch();
    w.update(doc(), 0);
    const bad = doc({ configError: { message: 'm', problems: [{ path: 'services[0].policy.timeout', message: 'expected a duration', line: 4 }], at: 'T' } });
    const r = w.update(bad, 0);
    expect(r.summary).toBe('invalid nacks=0');
    expect(r.events).toEqual(['[00:00:00] mesh config rejected by the control server (the last good config keeps serving):', '    | services[0].policy.timeout: expected a duration (line 4)']);
    expect(w.update(bad, 0).events).toEqual([]);
    expect(w.update(doc(), 0).events).toEqual(['[00:00:00] mesh config valid again (version c1); pushed to the sidecars']);
    expect(w.update(undefined, 0)).toEqual({ screen: ['control server not answering'], summary: 'unknown', events: [] });
  });
});

describe('carryOverReset', () => {
  const zero = { retries: 0, ejections: 0, overflow: 0, mtls: 0, denied: 0 };
  it('adds increases, and all of a counter that restarted from zero', () => {
    let raw = { ...zero, retries: 18, mtls: 25 };
    const setRaw = (r: typeof raw): void => void (raw = r);
    const shown = carryOverReset({ ...zero, retries: 18, mtls: 25 }, raw, { ...zero, retries: 20, mtls: 26 }, setRaw);
    expect(shown).toMatchObject({ retries: 20, mtls: 26 });
    // The sidecar restarted: it reports 4 retries since.
    expect(carryOverReset(shown, raw, { ...zero, retries: 4, mtls: 1 }, setRaw)).toMatchObject({ retries: 24, mtls: 27 });
  });
});
