// Issue 13: a mesh file's size, YAML aliases, durations and numbers are bounded, and a bad value is refused with
// its path; nothing the file holds can make parsing and validating it stall the server or exhaust its heap.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildSnapshot } from '../../src/config/snapshot.js';
import { compileForNode } from '../../xds/compiler.js';
import {
  LINE_LOOKUP_MAX_BYTES,
  MAX_DURATION_MS,
  MESH_FILE_MAX_BYTES,
  MeshConfigError,
  loadMeshConfigFile,
  parseMeshConfig,
  type MeshConfig,
} from '../../xds/mesh-config.js';
import { loadConfigFile } from '../../xds/watch.js';
import { aliasBomb } from './mesh-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'pillion-mesh-limits-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function problems(yaml: string): string[] {
  try {
    parseMeshConfig(yaml, 'm.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(MeshConfigError);
    return (e as Error).message.split('\n');
  }
  throw new Error('expected a MeshConfigError');
}

/** One service with `policy` (flow-style YAML) and an endpoint of the given weight. */
function withPolicy(policy: string, endpoint = '{ address: 127.0.0.1, port: 1 }'): string {
  return `services:\n  - name: a\n    ports: [{ port: 80 }]\n    endpoints: [${endpoint}]\n    policy: ${policy}\n`;
}

function timed<T>(fn: () => T): { value: T; ms: number } {
  const start = performance.now();
  const value = fn();
  return { value, ms: performance.now() - start };
}

const BOMB_MESSAGE = 'm.yaml: (yaml): YAML aliases expand the file to more than 500000 values (the limit; an alias bomb?): refused before validation';

describe('YAML aliases', () => {
  it('refuses a 24 KB alias bomb before validation, at once, naming the file and the reason', () => {
    const text = aliasBomb(2000);
    expect(text.length).toBeGreaterThan(20_000);
    expect(text.length).toBeLessThan(30_000);
    // Before: validation walked every aliased path (8·10⁹ headers); the control server ran out of heap.
    const { value, ms } = timed(() => problems(text));
    expect(value).toEqual([BOMB_MESSAGE]);
    expect(ms).toBeLessThan(1_000);
  });

  it('refuses a bomb whose values are all valid too (it would compile to billions of routes)', () => {
    expect(problems(aliasBomb(2000, '{ name: x, exact: "1" }'))).toEqual([BOMB_MESSAGE]);
  });

  it('refuses an alias that contains itself', () => {
    expect(problems('services: &s [{ name: a, ports: [{ port: 80 }], routes: *s }]\n')).toEqual([
      'm.yaml: (yaml): a YAML alias refers to a node that contains it, so it expands without end',
    ]);
  });

  it('stays fast just under the limit, listing 100 problems and counting the rest', () => {
    // 54³ = 157,464 bad headers, about 480,000 values: under the limit, so validated.
    const { value, ms } = timed(() => problems(aliasBomb(54)));
    expect(value).toHaveLength(101);
    expect(value[0]).toBe('m.yaml: services[0].routes[0].match.headers[0].exact: expected a non-empty string, got number 1 (line 1)');
    // Every header, and the 53 duplicate services.
    expect(value[100]).toBe(`m.yaml: (more): ${54 ** 3 + 53 - 100} more problems not listed`);
    expect(ms).toBeLessThan(5_000);
  });

  it('keeps ordinary aliases working: one policy block shared by several services', () => {
    const m = parseMeshConfig(`
services:
  - name: a
    ports: [{ port: 80 }]
    policy: &standard { connectTimeout: 250ms, timeout: 2s, circuitBreakers: { maxConnections: 10 } }
  - name: b
    ports: [{ port: 80 }]
    policy: *standard
`);
    expect(m.services.map((s) => [s.name, s.policy.timeoutMs, s.policy.connectTimeoutMs, s.policy.circuitBreakers])).toEqual([
      ['a', 2000, 250, { maxConnections: 10 }],
      ['b', 2000, 250, { maxConnections: 10 }],
    ]);
  });
});

describe('mesh file size', () => {
  /** A valid mesh padded with a comment to exactly `bytes`. */
  function padded(bytes: number): string {
    const head = 'services:\n  - name: a\n    ports: [{ port: 80 }]\n#';
    return head + 'x'.repeat(bytes - head.length - 1) + '\n';
  }

  it(`accepts ${MESH_FILE_MAX_BYTES} bytes and refuses one more, before parsing, from text and from the file`, async () => {
    expect(parseMeshConfig(padded(MESH_FILE_MAX_BYTES)).services).toHaveLength(1);
    const over = padded(MESH_FILE_MAX_BYTES + 1);
    const message = `(file): ${MESH_FILE_MAX_BYTES + 1} bytes (4.0 MiB) is over the limit of ${MESH_FILE_MAX_BYTES} bytes (4.0 MiB)`;
    expect(problems(over)).toEqual([`m.yaml: ${message}`]);
    // Multi-byte characters count as bytes, not characters.
    expect(problems(`${padded(MESH_FILE_MAX_BYTES - 10)}#${'é'.repeat(6)}\n`)[0]).toMatch(/^m\.yaml: \(file\): 4194308 bytes/);

    const file = join(dir, 'big.yaml');
    writeFileSync(file, over);
    expect(() => loadMeshConfigFile(file)).toThrow(`${file}: ${message}`);
    const watched = await loadConfigFile(file);
    expect(watched.ok).toBe(false);
    expect(!watched.ok && watched.error.message).toBe(`${file}: ${message}`);
    writeFileSync(file, padded(MESH_FILE_MAX_BYTES));
    expect(loadMeshConfigFile(file).services).toHaveLength(1);
    expect((await loadConfigFile(file)).ok).toBe(true);
  });

  it(`gives line numbers for a bad file up to ${LINE_LOOKUP_MAX_BYTES} bytes, paths alone above (the line lookup is a slower second parse)`, () => {
    const bad = 'services:\n  - name: a\n    ports: [{ port: 0 }]\n';
    expect(problems(bad)).toEqual(['m.yaml: services[0].ports[0].port: expected an integer from 1 to 65535, got number 0 (line 3)']);
    expect(problems(`${bad}#${'x'.repeat(LINE_LOOKUP_MAX_BYTES)}\n`)).toEqual([
      'm.yaml: services[0].ports[0].port: expected an integer from 1 to 65535, got number 0',
    ]);
  });
});

describe('durations', () => {
  it(`take up to ${MAX_DURATION_MS}ms (the longest timer) and refuse longer, naming the path`, () => {
    const ok = parseMeshConfig(withPolicy('{ timeout: 2147483647ms, connectTimeout: 596h }'));
    expect(ok.services[0]!.policy).toMatchObject({ timeoutMs: MAX_DURATION_MS, connectTimeoutMs: 596 * 3_600_000 });
    const fields = [
      ['timeout', '{ timeout: 597h }'],
      ['connectTimeout', '{ connectTimeout: 2147483648ms }'],
      ['retries.perTryTimeout', '{ retries: { attempts: 1, perTryTimeout: 36000m } }'],
      ['retries.backoff.base', '{ retries: { attempts: 1, backoff: { base: 25d } } }'],
      ['retries.backoff.max', '{ retries: { attempts: 1, backoff: { base: 1s, max: 99999999999999999999999h } } }'],
      ['outlierDetection.interval', '{ outlierDetection: { interval: 1000h } }'],
      ['outlierDetection.baseEjectionTime', '{ outlierDetection: { baseEjectionTime: 2147483.648s } }'],
    ] as const;
    for (const [field, policy] of fields) {
      const p = problems(withPolicy(policy));
      expect(p, field).toHaveLength(1);
      if (field === 'retries.backoff.base') {
        // "25d" is no unit at all.
        expect(p[0]).toBe('m.yaml: services[0].policy.retries.backoff.base: expected a duration like "250ms", got string "25d" (line 5)');
      } else {
        expect(p[0], field).toMatch(new RegExp(`^m\\.yaml: services\\[0\\]\\.policy\\.${field.replace('.', '\\.')}: expected at most 2147483647ms \\(about 24\\.8 days, the longest a timer holds\\), got string ".*" \\(line 5\\)$`));
      }
    }
    // A route's own timeout too.
    expect(problems('services:\n  - name: a\n    ports: [{ port: 80 }]\n    routes: [{ match: { prefix: / }, to: { service: a }, timeout: 600h }]\n')).toEqual([
      'm.yaml: services[0].routes[0].timeout: expected at most 2147483647ms (about 24.8 days, the longest a timer holds), got string "600h" (line 4)',
    ]);
  });

  it('refuse a nonzero duration under 1 ms (it would round to 0, "no timeout") and 0 where it means nothing', () => {
    expect(problems(withPolicy('{ timeout: 0.4ms }'))).toEqual([
      'm.yaml: services[0].policy.timeout: expected 0 or at least 1ms, got string "0.4ms" (line 5)',
    ]);
    expect(parseMeshConfig(withPolicy('{ timeout: 0s, connectTimeout: 1.5ms }')).services[0]!.policy).toMatchObject({ timeoutMs: 0, connectTimeoutMs: 2 });
    for (const [field, policy] of [
      ['connectTimeout', '{ connectTimeout: 0ms }'],
      ['outlierDetection.interval', '{ outlierDetection: { interval: 0s } }'],
      ['outlierDetection.baseEjectionTime', '{ outlierDetection: { baseEjectionTime: 0s } }'],
      ['retries.backoff.base', '{ retries: { attempts: 1, backoff: { base: 0ms } } }'],
    ] as const) {
      expect(problems(withPolicy(policy)), field).toEqual([`m.yaml: services[0].policy.${field}: expected a duration above 0 (line 5)`]);
    }
  });

  it('reach the proxy as written: the longest duration compiles and translates back unchanged, with no warning', () => {
    const mesh: MeshConfig = parseMeshConfig(`
services:
  - name: a
    ports: [{ port: 80 }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    policy: { timeout: 2147483647ms, connectTimeout: 596h, outlierDetection: { interval: 2147483647ms, baseEjectionTime: 596h },
              retries: { attempts: 1, perTryTimeout: 2147483647ms, backoff: { base: 596h, max: 2147483647ms } } }
`);
    const resources = compileForNode(mesh, { id: 'a-1', service: 'a', namespace: 'default', serviceAccount: 'a', appPort: 80, inboundPort: 15006, outboundPort: 15001 });
    const { snapshot, errors, warnings } = buildSnapshot(resources, 'v');
    expect(errors).toEqual([]);
    // Nothing was clamped, and retries are enforced (no warning about them either).
    expect(warnings).toEqual([]);
    const cluster = snapshot.clusters.get('a.default:80')!;
    expect(cluster.connectTimeoutMs).toBe(596 * 3_600_000);
    expect(cluster.outlierDetection).toMatchObject({ intervalMs: MAX_DURATION_MS, baseEjectionTimeMs: 596 * 3_600_000 });
    const action = snapshot.routeConfigs.get('outbound')!.virtualHosts.find((v) => v.domains.includes('a'))!.routes.at(-1)!.action;
    expect(action.timeoutMs).toBe(MAX_DURATION_MS);
    expect(action.retry).toMatchObject({ perTryTimeoutMs: MAX_DURATION_MS, backoffBaseMs: 596 * 3_600_000, backoffMaxMs: MAX_DURATION_MS });
  });
});

describe('numbers', () => {
  it('refuses negative, fractional, NaN, infinite and out-of-range counts, weights and ports with their path', () => {
    const cases: [string, string][] = [
      [withPolicy('{ circuitBreakers: { maxConnections: -1 } }'), 'services[0].policy.circuitBreakers.maxConnections: expected an integer from 0 to 4294967295, got number -1'],
      [withPolicy('{ circuitBreakers: { maxRequests: 4294967296 } }'), 'services[0].policy.circuitBreakers.maxRequests: expected an integer from 0 to 4294967295, got number 4294967296'],
      [withPolicy('{ circuitBreakers: { maxRetries: 1.5 } }'), 'services[0].policy.circuitBreakers.maxRetries: expected an integer from 0 to 4294967295, got number 1.5'],
      [withPolicy('{ outlierDetection: { consecutive5xx: .nan } }'), 'services[0].policy.outlierDetection.consecutive5xx: expected an integer from 1 to 1000000, got number null'],
      [withPolicy('{ outlierDetection: { maxEjectionPercent: 101 } }'), 'services[0].policy.outlierDetection.maxEjectionPercent: expected an integer from 0 to 100, got number 101'],
      [withPolicy('{ retries: { attempts: .inf } }'), 'services[0].policy.retries.attempts: expected an integer from 0 to 100, got number null'],
      [withPolicy('{ loadBalancer: { policy: ring_hash, hashOn: { sourceIp: true }, minRingSize: 8388609 } }'), 'services[0].policy.loadBalancer.minRingSize: expected an integer from 1 to 8388608, got number 8388609'],
      [withPolicy('{}', '{ address: 127.0.0.1, port: 1, weight: 0 }'), 'services[0].endpoints[0].weight: expected an integer from 1 to 134217728, got number 0'],
      [withPolicy('{}', '{ address: 127.0.0.1, port: 65536 }'), 'services[0].endpoints[0].port: expected an integer from 1 to 65535, got number 65536'],
      [withPolicy('{}', '{ address: 127.0.0.1, port: -80 }'), 'services[0].endpoints[0].port: expected an integer from 1 to 65535, got number -80'],
    ];
    for (const [yaml, expected] of cases) {
      expect(problems(yaml).map((l) => l.replace(/ \(line \d+\)$/, ''))).toEqual([`m.yaml: ${expected}`]);
    }
  });

  it('refuses endpoint weights whose sum does not fit the uint32 xDS carries (it would wrap silently)', () => {
    const endpoints = Array.from({ length: 33 }, (_, i) => `{ address: 127.0.0.${i + 1}, port: 1, weight: 134217728 }`).join(', ');
    expect(problems(withPolicy('{}', endpoints))).toEqual([
      'm.yaml: services[0].endpoints: the endpoint weights add up to 4429185024; at most 4294967295 (line 4)',
    ]);
    const fits = Array.from({ length: 31 }, (_, i) => `{ address: 127.0.0.${i + 1}, port: 1, weight: 134217728 }`).join(', ');
    expect(parseMeshConfig(withPolicy('{}', fits)).services[0]!.endpoints).toHaveLength(31);
  });
});

describe('endpoint addresses', () => {
  it('refuses an address that is neither an IP address nor a DNS name, as the proxy would (an HTTP/2 upstream threw on it)', () => {
    for (const [address, reason] of [
      ['"a b"', '"a b" is neither an IP address nor a DNS name'],
      ['"[::1"', '"[::1" is neither an IP address nor a DNS name'],
      ['"fe80::1%eth0"', '"fe80::1%eth0": scoped IPv6 addresses (with a zone) are not supported'],
      ['"a.1"', '"a.1" is neither an IP address nor a DNS name (it ends in a number)'],
    ] as const) {
      expect(problems(withPolicy('{}', `{ address: ${address}, port: 80 }`)).map((l) => l.replace(/ \(line \d+\)$/, ''))).toEqual([
        `m.yaml: services[0].endpoints[0].address: ${reason}`,
      ]);
    }
    for (const address of ['127.0.0.1', '"::1"', 'localhost', 'db.prod.svc.cluster.local']) {
      expect(parseMeshConfig(withPolicy('{}', `{ address: ${address}, port: 80 }`)).services[0]!.endpoints).toHaveLength(1);
    }
  });
});
