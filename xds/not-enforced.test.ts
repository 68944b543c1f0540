import { describe, expect, it } from 'vitest';
import { parseMeshConfig } from './mesh-config.js';
import { notEnforcedWarnings } from './not-enforced.js';

describe('notEnforcedWarnings', () => {
  it('names every unenforced setting by path, one warning per kind', () => {
    const mesh = parseMeshConfig(`services:
  - name: a
    ports: [{ port: 80, protocol: http }]
    policy:
      retries: { attempts: 2 }
      outlierDetection: { consecutive5xx: 3 }
      circuitBreakers: { maxConnections: 10, maxPendingRequests: 5, maxRequests: 7 }
    authorization: { allow: [{ principals: ["spiffe://cluster.local/ns/default/sa/b"] }] }
  - name: b
    ports: [{ port: 80, protocol: http }]
    policy: { mtls: DISABLE, retries: { attempts: 1 } }
`);
    expect(notEnforcedWarnings(mesh)).toEqual([
      'services[0].policy.mtls: mtls STRICT and PERMISSIVE (STRICT is the default) are enforced only by proxies with a workload identity (--cert/--key/--ca, or certificates from the mesh CA): without one, traffic between sidecars is plaintext; write mtls: DISABLE to say so',
      'services[0].authorization.allow[0].principals: principals and namespaces match only peers that mTLS proved: on a proxy without a workload identity (plaintext) they match no caller, ' +
        'so an allow rule that names them admits nobody and a deny rule that names them refuses nobody (methods, paths, ports and requestPrincipals are enforced)',
    ]);
  });

  it('says nothing of mtls to a proxy with a workload identity, which enforces it', () => {
    const mesh = parseMeshConfig(`services:
  - name: a
    ports: [{ port: 80, protocol: http }]
`);
    expect(notEnforcedWarnings(mesh)).toHaveLength(1);
    expect(notEnforcedWarnings(mesh, { workloadIdentity: true })).toEqual([]);
  });

  it('says nothing when only enforced settings are used', () => {
    const mesh = parseMeshConfig(`services:
  - name: a
    ports: [{ port: 80, protocol: http }]
    authorization: { deny: [{ methods: [DELETE] }], allow: [{ paths: ["/api/*"], requestPrincipals: ["*"] }] }
    policy: { mtls: DISABLE, timeout: 2s, circuitBreakers: { maxConnections: 10, maxPendingRequests: 5, maxRequests: 7, maxRetries: 2 }, outlierDetection: { consecutive5xx: 3 },
              retries: { attempts: 2, budget: { percent: 25 } } }
`);
    expect(notEnforcedWarnings(mesh)).toEqual([]);
  });
});
