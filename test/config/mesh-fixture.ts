// A multi-service mesh config used by the config-path tests.
export const MESH_YAML = `
trustDomain: cluster.local
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 18080 }]
    egress:
      - { localPort: 19080, service: backend, port: 8080 }
      - { localPort: 15432, service: db }
  - name: backend
    namespace: default
    ports: [{ port: 8080, protocol: http }, { port: 9090, protocol: http }]
    endpoints:
      - { address: 127.0.0.1, port: 18081, locality: { region: r1, zone: a }, weight: 2 }
      - { address: 127.0.0.2, port: 18081, locality: { region: r1, zone: b } }
    policy:
      loadBalancer: { policy: least_request, choiceCount: 3 }
      connectTimeout: 1s
      timeout: 5s
      retries: { attempts: 2, perTryTimeout: 1s, retryOn: [5xx, reset, connect-failure, 503], backoff: { base: 25ms, max: 250ms } }
      outlierDetection: { consecutive5xx: 7 }
      circuitBreakers: { maxConnections: 100, maxRetries: 5 }
    routes:
      - match: { prefix: /api, headers: [{ name: X-Canary, exact: "1" }] }
        split: [{ service: backend-v2, weight: 10 }, { service: backend, weight: 90 }]
        timeout: 2s
      - match: { path: /health }
        to: { service: backend-v2 }
  - name: backend-v2
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.3, port: 18082 }]
  - name: sessions
    ports: [{ port: 7000, protocol: grpc }]
    endpoints: [{ address: 127.0.0.4, port: 17000 }]
    policy:
      loadBalancer: { policy: ring_hash, hashOn: { header: X-User }, minRingSize: 2048 }
  - name: db
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.5, port: 15433 }]
`;

/**
 * A "billion laughs" mesh file: `services` holds one anchored service and n-1 aliases of it, that service's
 * `routes` one anchored route and n-1 aliases, the route's `headers` one anchored header and n-1 aliases.
 * Validation walks n³ headers from about 12·n bytes: n = 2000 is 24 KB of text and 8·10⁹ headers.
 */
export function aliasBomb(n = 2000, header = '{ name: x, exact: 1 }'): string {
  const list = (first: string, alias: string) => [first, ...Array<string>(n - 1).fill(alias)].join(', ');
  const headers = list(`&h ${header}`, '*h');
  const routes = list(`&r { match: { prefix: /, headers: [${headers}] }, to: { service: a } }`, '*r');
  return `services: [${list(`&s { name: a, ports: [{ port: 80 }], routes: [${routes}] }`, '*s')}]\n`;
}
