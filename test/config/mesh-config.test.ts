import { describe, expect, it } from 'vitest';
import { MeshConfigError, parseDuration, parseMeshConfig } from '../../xds/mesh-config.js';
import { MESH_YAML } from './mesh-fixture.js';

function problems(yaml: string): string[] {
  try {
    parseMeshConfig(yaml, 'm.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(MeshConfigError);
    return (e as Error).message.split('\n');
  }
  throw new Error('expected a MeshConfigError');
}

describe('mesh config', () => {
  it('parses the full example with defaults and resolved references', () => {
    const m = parseMeshConfig(MESH_YAML);
    expect(m.trustDomain).toBe('cluster.local');
    const backend = m.services.find((s) => s.name === 'backend')!;
    expect(backend.namespace).toBe('default');
    expect(backend.policy.timeoutMs).toBe(5000);
    expect(backend.policy.retries).toMatchObject({ attempts: 2, perTryTimeoutMs: 1000, retriableStatusCodes: [503] });
    expect(backend.policy.retries!.retryOn).toEqual(['5xx', 'reset', 'connect-failure', 'retriable-status-codes']);
    expect(backend.routes[0]!.split).toEqual([
      { service: 'backend-v2', namespace: 'default', port: 8080, weight: 10 },
      { service: 'backend', namespace: 'default', port: 8080, weight: 90 },
    ]);
    expect(backend.routes[0]!.match.headers).toEqual([{ name: 'x-canary', kind: 'exact', value: '1', invert: false }]);
    const frontend = m.services.find((s) => s.name === 'frontend')!;
    expect(frontend.egress[1]).toEqual({ localPort: 15432, service: 'db', namespace: 'default', port: 5432 });
    expect(frontend.policy.mtls).toBe('STRICT');
  });

  it('parses durations and rejects numbers', () => {
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('5')).toBeUndefined();
    const p = problems(`
services:
  - name: a
    ports: [{ port: 80 }]
    policy:
      retries: { attempts: 2, perTryTimeout: 5 }
`);
    expect(p).toEqual([
      'm.yaml: services[0].policy.retries.perTryTimeout: expected a duration like "250ms", got number 5 (add a unit: ms, s, m or h) (line 6)',
    ]);
  });

  it('takes a trust domain only in SPIFFE ID characters (a certificate for another would be refused by every peer)', () => {
    for (const td of ['Cluster.local', 'td:8443', 'td/x', 'td x']) expect(problems(`trustDomain: "${td}"\nservices: []\n`).join('\n'), td).toContain('trustDomain: expected a SPIFFE trust domain');
    expect(parseMeshConfig('trustDomain: prod.example-1_x\nservices: []\n', 'm.yaml').trustDomain).toBe('prod.example-1_x');
  });

  it('lists every problem with its exact path', () => {
    const p = problems(`
services:
  - name: ok
    ports: [{ port: 80 }]
  - name: Bad_Name
    ports: [{ port: 70000, protocol: udp }]
    policy:
      loadBalancer: { policy: fastest }
      timeOut: 1s
  - name: ok
    ports: [{ port: 80 }]
    routes:
      - match: { prefix: /x }
        split: [{ service: nowhere, weight: 0 }]
    egress:
      - { localPort: 1000, service: ok, port: 81 }
`);
    expect(p).toContain('m.yaml: services[1].name: expected a DNS label (lowercase letters, digits and "-", at most 63), got "Bad_Name" (line 5)');
    expect(p).toContain('m.yaml: services[1].ports[0].port: expected an integer from 1 to 65535, got number 70000 (line 6)');
    expect(p).toContain('m.yaml: services[1].ports[0].protocol: expected one of http | http2 | grpc | tcp | auto, got string "udp" (line 6)');
    expect(p).toContain('m.yaml: services[1].policy.loadBalancer.policy: expected one of least_request | round_robin | ring_hash | random, got string "fastest" (line 8)');
    expect(p.some((l) => l.startsWith('m.yaml: services[1].policy.timeOut: unknown field'))).toBe(true);
    expect(p).toContain('m.yaml: services[2].routes[0].split[0].weight: expected an integer from 1 to 1000000, got number 0 (line 14)');
    expect(p).toContain('m.yaml: services[2].name: duplicate service "ok.default" (name.namespace must be unique) (line 10)');
    expect(p).toContain('m.yaml: services[2].egress[0]: service ok.default has no port 81 (ports: 80) (line 16)');
  });

  it('checks policy.healthCheck with exact paths, and keeps what was written', () => {
    const p = problems(`
services:
  - name: a
    ports: [{ port: 80 }]
    policy: { healthCheck: { path: healthz, interval: 0s, timeout: 5, healthyThreshold: 0, unhealthyThreshold: 2, grace: 1s } }
  - name: b
    ports: [{ port: 80 }, { port: 81, protocol: grpc }]
    policy: { healthCheck: { path: "/ready now" } }
  - name: c
    ports: [{ port: 81, protocol: grpc }]
    policy: { healthCheck: { path: /healthz } }
`);
    expect(p).toContain('m.yaml: services[0].policy.healthCheck.path: expected a path starting with "/", got "healthz" (line 5)');
    expect(p).toContain('m.yaml: services[0].policy.healthCheck.interval: expected a duration above 0 (line 5)');
    expect(p).toContain('m.yaml: services[0].policy.healthCheck.timeout: expected a duration like "250ms", got number 5 (add a unit: ms, s, m or h) (line 5)');
    expect(p).toContain('m.yaml: services[0].policy.healthCheck.healthyThreshold: expected an integer from 1 to 1000000, got number 0 (line 5)');
    expect(p.some((l) => l.startsWith('m.yaml: services[0].policy.healthCheck.grace: unknown field'))).toBe(true);
    expect(p).toContain('m.yaml: services[1].policy.healthCheck.path: expected no spaces or control characters (line 8)');
    expect(p.find((l) => l.startsWith('m.yaml: services[2].policy.healthCheck.path'))).toMatch(/HTTP checks speak HTTP\/1\.1; port 81 is grpc/);
    expect(p.some((l) => l.includes('healthCheck.unhealthyThreshold'))).toBe(false);

    const ok = parseMeshConfig(`
services:
  - name: a
    ports: [{ port: 80 }]
    policy: { healthCheck: { path: /healthz, interval: 2s, timeout: 250ms, healthyThreshold: 1, unhealthyThreshold: 4 } }
  - name: t
    ports: [{ port: 5432, protocol: tcp }]
    policy: { healthCheck: {} }
`);
    expect(ok.services[0]!.policy.healthCheck).toEqual({ path: '/healthz', intervalMs: 2000, timeoutMs: 250, healthyThreshold: 1, unhealthyThreshold: 4 });
    expect(ok.services[1]!.policy.healthCheck).toEqual({});
  });

  it('checks references once every service is known', () => {
    const p = problems(`
services:
  - name: a
    ports: [{ port: 80 }]
    routes: [{ match: { prefix: / }, to: { service: b } }]
    egress: [{ localPort: 9000, service: c }]
  - name: b
    ports: [{ port: 5432, protocol: tcp }]
`);
    expect(p).toEqual([
      'm.yaml: services[0].egress[0]: unknown service "c.default" (line 6)',
    ]);
    const q = problems(`
services:
  - name: a
    ports: [{ port: 80 }]
    routes: [{ match: { prefix: / }, to: { service: b } }]
  - name: b
    ports: [{ port: 5432, protocol: tcp }]
`);
    expect(q).toEqual(['m.yaml: services[0].routes[0]: target b.default:5432 is a tcp port; routes need an HTTP port (line 5)']);
  });

  it('reports YAML syntax errors with a line', () => {
    const p = problems('services:\n  - name: a\n   bad: [\n');
    expect(p[0]).toMatch(/^m\.yaml: \(yaml\): .* \(line \d+\)$/);
  });
});
