import { describe, expect, it } from 'vitest';
import { UsageError } from '../bootstrap/args.js';
import { parseAppProbes } from './app-probes.js';

const parse = (v: unknown): ReturnType<typeof parseAppProbes> => parseAppProbes(JSON.stringify(v));

describe('parseAppProbes (PILLION_APP_PROBES)', () => {
  it('reads httpGet and tcpSocket probes with their defaults', () => {
    const probes = parse({
      '/app-health/web/readyz': { httpGet: { path: '/ready', port: 8080, scheme: 'HTTPS', host: '10.0.0.1', httpHeaders: [{ name: 'X-A', value: 'b' }] }, timeoutSeconds: 2, periodSeconds: 5 },
      '/app-health/web/livez': { tcpSocket: { port: 8080 }, timeoutSeconds: 0 },
      '/app-health/web/startupz': { httpGet: { port: 8080 } },
    });
    expect(probes.get('/app-health/web/readyz')).toEqual({ kind: 'httpGet', host: '10.0.0.1', port: 8080, path: '/ready', https: true, headers: [['X-A', 'b']], timeoutMs: 2000 });
    expect(probes.get('/app-health/web/livez')).toEqual({ kind: 'tcpSocket', host: '127.0.0.1', port: 8080, timeoutMs: 1000 });
    expect(probes.get('/app-health/web/startupz')).toMatchObject({ path: '/', https: false, headers: [], timeoutMs: 1000 });
    expect(parseAppProbes(undefined).size).toBe(0);
  });

  it('reads grpc probes: the service name, or none for the server as a whole', () => {
    const probes = parse({ '/a': { grpc: { port: 9090, service: 'grpc.health.v1.Health' }, timeoutSeconds: 3 }, '/b': { grpc: { port: 9091 } } });
    expect(probes.get('/a')).toEqual({ kind: 'grpc', host: '127.0.0.1', port: 9090, service: 'grpc.health.v1.Health', timeoutMs: 3000 });
    expect(probes.get('/b')).toEqual({ kind: 'grpc', host: '127.0.0.1', port: 9091, service: '', timeoutMs: 1000 });
  });

  it.each([
    [{ '/p': { exec: { command: ['true'] } } }, '"/p": exec: exec probes are not run'],
    [{ '/p': { grpc: { port: 9090, service: 'a b' } } }, '"/p": grpc.service: expected a service name'],
    [{ '/p': { grpc: { port: 9090, host: '10.0.0.1' } } }, '"/p": grpc.host: unknown field'],
    [{ '/p': { grpc: { port: 9090 }, tcpSocket: { port: 80 } } }, '"/p": tcpSocket: give one of httpGet, tcpSocket or grpc'],
    [{ '/p': { httpGet: { port: 'http' } } }, '"/p": httpGet.port: expected a port number 1-65535'],
    [{ '/p': { httpGet: { port: 80, scheme: 'FTP' } } }, '"/p": httpGet.scheme: expected HTTP or HTTPS'],
    [{ '/p': { httpGet: { port: 80, path: 'ready' } } }, '"/p": httpGet.path:'],
    [{ '/p': { httpGet: { port: 80, httpHeaders: [{ name: 'bad name', value: 'x' }] } } }, '"/p": httpGet.httpHeaders[0]:'],
    [{ '/p': { httpGet: { port: 80, bogus: 1 } } }, '"/p": httpGet.bogus: unknown field'],
    [{ '/p': { tcpSocket: { port: 80 }, httpGet: { port: 80 } } }, '"/p": httpGet: give one of'],
    [{ '/p': { tcpSocket: { port: 80 }, timeoutSeconds: 1.5 } }, '"/p": timeoutSeconds: expected a whole number'],
    [{ '/p': {} }, '"/p": value: expected httpGet, tcpSocket or grpc'],
    [{ 'app-health': { tcpSocket: { port: 80 } } }, '"app-health": key: expected a request path'],
    [['/p'], 'expected a JSON object'],
  ])('refuses %j naming the key and field', (value, message) => {
    expect(() => parse(value)).toThrow(UsageError);
    expect(() => parse(value)).toThrow(message);
  });

  it('refuses invalid JSON, more than 64 probes and more than 64 KiB', () => {
    expect(() => parseAppProbes('{')).toThrow(/PILLION_APP_PROBES: not JSON/);
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`/p${i}`, { tcpSocket: { port: 80 } }]));
    expect(() => parse(many)).toThrow(/65 probes, more than 64/);
    const big = { '/p': { httpGet: { port: 80, httpHeaders: [{ name: 'x', value: 'a'.repeat(70_000) }] } } };
    expect(() => parse(big)).toThrow(/bytes, more than 65536/);
  });
});
