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
