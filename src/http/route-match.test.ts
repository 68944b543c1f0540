// Route matching: virtual-host order and ports, path/header matching, weighted clusters, request hashing.
import { describe, expect, it } from 'vitest';
import type { HashPolicyModel, HeaderMatcherModel, RouteActionModel, RouteConfigModel, RouteModel, VirtualHostModel } from '../config/model.js';
import { combineHashes, hashString } from '../upstream/lb/hash.js';
import {
  AUTHORITY_CACHE_LIMIT,
  RecordHeaderSource,
  RouteIndex,
  computeRequestHash,
  hashCookie,
  headerSourceOf,
  matchRoute,
  pickWeightedCluster,
  routeIndexOf,
  selectVirtualHost,
  stripPort,
} from './route-match.js';

function action(clusters: [string, number][] = [['c', 1]]): RouteActionModel {
  return {
    clusters: clusters.map(([name, weight]) => ({ name, weight })),
    totalWeight: clusters.reduce((s, [, w]) => s + w, 0),
    timeoutMs: 15_000,
    idleTimeoutMs: 0,
    hedgeOnPerTryTimeout: false,
    hashPolicies: [],
  };
}

function route(name: string, kind: 'prefix' | 'path', value: string, extra: { caseSensitive?: boolean; headers?: HeaderMatcherModel[] } = {}): RouteModel {
  return { name, match: { kind, value, caseSensitive: extra.caseSensitive ?? true, headers: extra.headers ?? [] }, action: action() };
}

function vh(name: string, domains: string[], routes: RouteModel[] = []): VirtualHostModel {
  return { name, domains, routes };
}

function hm(name: string, kind: HeaderMatcherModel['kind'], value = '', invert = false): HeaderMatcherModel {
  return { name, kind, value, invert };
}

const config: RouteConfigModel = {
  name: 'rc',
  virtualHosts: [
    vh('any', ['*']),
    vh('prefix-short', ['api.*']),
    vh('prefix-long', ['api.v2.*']),
    vh('suffix-short', ['*.com']),
    vh('suffix-long', ['*.foo.com']),
    vh('exact', ['www.foo.com', 'backend']),
    vh('with-port', ['backend:9090']),
    vh('v6', ['[::1]']),
  ],
};

const sel = (a: string) => selectVirtualHost(config, a)?.name ?? null;

describe('selectVirtualHost', () => {
  it('follows Envoy order: exact, longest suffix, longest prefix, then *', () => {
    expect(sel('www.foo.com')).toBe('exact');
    expect(sel('x.foo.com')).toBe('suffix-long');
    expect(sel('x.bar.com')).toBe('suffix-short');
    expect(sel('api.v2.internal')).toBe('prefix-long');
    expect(sel('api.internal')).toBe('prefix-short');
    expect(sel('api.foo.com')).toBe('suffix-long'); // suffix wins over prefix
    expect(sel('other')).toBe('any');
  });

  it('is case-insensitive', () => {
    expect(sel('WWW.Foo.COM')).toBe('exact');
    expect(sel('X.FOO.COM')).toBe('suffix-long');
  });

  it('matches ports exactly, then retries without the port', () => {
    expect(sel('backend:9090')).toBe('with-port');
    expect(sel('backend:8080')).toBe('exact');
    expect(sel('backend')).toBe('exact');
    expect(sel('x.foo.com:443')).toBe('suffix-long');
    expect(sel('[::1]:8080')).toBe('v6');
  });

  it('requires the wildcard to stand for at least one character', () => {
    expect(sel('.foo.com')).toBe('suffix-short');
    expect(sel('api.')).toBe('any');
  });

  it('returns null when nothing matches and there is no *', () => {
    const rc: RouteConfigModel = { name: 'x', virtualHosts: [vh('a', ['a.svc'])] };
    expect(selectVirtualHost(rc, 'b.svc')).toBeNull();
    expect(selectVirtualHost(rc, 'a.svc:80')!.name).toBe('a');
  });

  it('builds one index per config and bounds its cache', () => {
    expect(routeIndexOf(config)).toBe(routeIndexOf(config));
    const idx = new RouteIndex(config);
    for (let i = 0; i < AUTHORITY_CACHE_LIMIT + 10; i++) expect(idx.select(`h${i}.foo.com`)!.name).toBe('suffix-long');
    expect((idx as unknown as { cache: Map<string, unknown> }).cache.size).toBeLessThanOrEqual(AUTHORITY_CACHE_LIMIT);
  });
});

describe('stripPort', () => {
  it('strips host and bracketed IPv6 ports only', () => {
    expect(stripPort('a:80')).toBe('a');
    expect(stripPort('[::1]:80')).toBe('[::1]');
    expect(stripPort('::1')).toBe('::1');
    expect(stripPort('a')).toBe('a');
    expect(stripPort('a:')).toBe('a:');
    expect(stripPort('a:8x')).toBe('a:8x');
  });
});

describe('matchRoute', () => {
  const none = headerSourceOf({});

  it('takes the first route that fits', () => {
    const v = vh('v', ['*'], [route('exact', 'path', '/a'), route('pre', 'prefix', '/a'), route('all', 'prefix', '/')]);
    expect(matchRoute(v, 'GET', '/a', none)!.name).toBe('exact');
    expect(matchRoute(v, 'GET', '/a?x=1', none)!.name).toBe('exact');
    expect(matchRoute(v, 'GET', '/ab', none)!.name).toBe('pre');
    expect(matchRoute(v, 'GET', '/b', none)!.name).toBe('all');
    expect(matchRoute(vh('v', ['*'], [route('x', 'path', '/x')]), 'GET', '/y', none)).toBeNull();
  });

  it('honours caseSensitive=false for path and prefix', () => {
    const v = vh('v', ['*'], [route('p', 'path', '/Users', { caseSensitive: false }), route('q', 'prefix', '/API/', { caseSensitive: false })]);
    expect(matchRoute(v, 'GET', '/users', none)!.name).toBe('p');
    expect(matchRoute(v, 'GET', '/USERS?q', none)!.name).toBe('p');
    expect(matchRoute(v, 'GET', '/api/x', none)!.name).toBe('q');
    const cs = vh('v', ['*'], [route('p', 'path', '/Users')]);
    expect(matchRoute(cs, 'GET', '/users', none)).toBeNull();
  });

  it('applies header matchers of every kind, with invert', () => {
    const h = headerSourceOf({ 'x-env': 'canary-eu', 'x-list': ['a', 'b'] });
    const fits = (m: HeaderMatcherModel) => matchRoute(vh('v', ['*'], [route('r', 'prefix', '/', { headers: [m] })]), 'GET', '/', h) !== null;
    expect(fits(hm('x-env', 'exact', 'canary-eu'))).toBe(true);
    expect(fits(hm('x-env', 'exact', 'canary'))).toBe(false);
    expect(fits(hm('x-env', 'prefix', 'canary'))).toBe(true);
    expect(fits(hm('x-env', 'suffix', '-eu'))).toBe(true);
    expect(fits(hm('x-env', 'contains', 'ary-e'))).toBe(true);
    expect(fits(hm('x-env', 'present'))).toBe(true);
    expect(fits(hm('x-missing', 'present'))).toBe(false);
    expect(fits(hm('x-missing', 'present', '', true))).toBe(true);
    expect(fits(hm('x-env', 'exact', 'prod', true))).toBe(true);
    expect(fits(hm('x-env', 'exact', 'canary-eu', true))).toBe(false);
    expect(fits(hm('x-list', 'exact', 'a,b'))).toBe(true);
  });

  it('requires all header matchers', () => {
    const v = vh('v', ['*'], [route('r', 'prefix', '/', { headers: [hm('a', 'present'), hm('b', 'present')] })]);
    expect(matchRoute(v, 'GET', '/', headerSourceOf({ a: '1' }))).toBeNull();
    expect(matchRoute(v, 'GET', '/', headerSourceOf({ a: '1', b: '2' }))).not.toBeNull();
  });

  it('matches :method, :path and :authority for HTTP/1 and HTTP/2 header objects', () => {
    const v = vh('v', ['*'], [
      route('post', 'prefix', '/', { headers: [hm(':method', 'exact', 'POST')] }),
      route('q', 'prefix', '/', { headers: [hm(':path', 'suffix', '?debug=1')] }),
      route('auth', 'prefix', '/', { headers: [hm(':authority', 'exact', 'svc:80')] }),
    ]);
    expect(matchRoute(v, 'POST', '/', headerSourceOf({}))!.name).toBe('post');
    expect(matchRoute(v, 'GET', '/x?debug=1', headerSourceOf({}))!.name).toBe('q');
    expect(matchRoute(v, 'GET', '/', headerSourceOf({ host: 'svc:80' }))!.name).toBe('auth');
    expect(matchRoute(v, 'GET', '/', headerSourceOf({ ':authority': 'svc:80' }))!.name).toBe('auth');
    expect(matchRoute(v, 'GET', '/', headerSourceOf({ host: 'other' }))).toBeNull();
    // HTTP/2 heads carry no pseudo headers in their map: the exchange's authority is matched.
    expect(matchRoute(v, 'GET', '/', headerSourceOf({}, 'svc:80'))!.name).toBe('auth');
    expect(matchRoute(v, 'GET', '/', headerSourceOf({}, 'other'))).toBeNull();
    expect(matchRoute(v, 'GET', '/', headerSourceOf({}))).toBeNull();
  });

  it('matches :scheme on the request scheme the exchange gives (HTTP/2 :scheme; HTTP/1: the connection\'s)', () => {
    const v = vh('v', ['*'], [route('tls', 'prefix', '/', { headers: [hm(':scheme', 'exact', 'https')] })]);
    expect(matchRoute(v, 'GET', '/', headerSourceOf({}, 'svc', 'https'))!.name).toBe('tls');
    expect(matchRoute(v, 'GET', '/', headerSourceOf({}, 'svc', 'http'))).toBeNull();
    expect(matchRoute(v, 'GET', '/', headerSourceOf({ ':scheme': 'https' }))!.name).toBe('tls');
    expect(matchRoute(v, 'GET', '/', headerSourceOf({}))).toBeNull();
  });

  it('headerSourceOf reuses one instance; RecordHeaderSource can be owned', () => {
    expect(headerSourceOf({ a: '1' })).toBe(headerSourceOf({ b: '2' }));
    const own = new RecordHeaderSource({ a: '1' });
    expect(own.get('a')).toBe('1');
    expect(own.reset({ a: ['x'] }).get('a')).toBe('x');
    expect(own.reset({ a: [] }).get('a')).toBeUndefined();
  });
});

describe('pickWeightedCluster', () => {
  it('returns the single cluster without calling random', () => {
    expect(pickWeightedCluster(action([['only', 1]]), () => { throw new Error('no'); })).toBe('only');
  });

  it('picks by weight', () => {
    const a = action([['a', 10], ['b', 30], ['c', 60]]);
    expect(pickWeightedCluster(a, () => 0)).toBe('a');
    expect(pickWeightedCluster(a, () => 0.0999)).toBe('a');
    expect(pickWeightedCluster(a, () => 0.1)).toBe('b');
    expect(pickWeightedCluster(a, () => 0.4)).toBe('c');
    expect(pickWeightedCluster(a, () => 0.99999)).toBe('c');
    let s = 1;
    const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 20_000; i++) counts[pickWeightedCluster(a, rnd)]!++;
    expect(counts.a! / 20_000).toBeCloseTo(0.1, 1);
    expect(counts.c! / 20_000).toBeCloseTo(0.6, 1);
  });

  it('skips zero-weight clusters', () => {
    expect(pickWeightedCluster(action([['a', 0], ['b', 5]]), () => 0)).toBe('b');
  });
});

describe('computeRequestHash', () => {
  const header = (name: string, terminal = false): HashPolicyModel => ({ kind: 'header', name, terminal });
  const cookie = (name: string, terminal = false): HashPolicyModel => ({ kind: 'cookie', name, terminal });
  const ip = (terminal = false): HashPolicyModel => ({ kind: 'source_ip', terminal });

  it('is undefined without policies or values', () => {
    expect(computeRequestHash([], headerSourceOf({ a: '1' }), '1.2.3.4')).toBeUndefined();
    expect(computeRequestHash([header('x-user')], headerSourceOf({}), '1.2.3.4')).toBeUndefined();
  });

  it('hashes a header, a cookie and the source IP', () => {
    expect(computeRequestHash([header('x-user')], headerSourceOf({ 'x-user': 'bob' }), '')).toBe(hashString('bob'));
    expect(computeRequestHash([cookie('sid')], headerSourceOf({ cookie: 'a=1; sid=xyz; b=2' }), '')).toBe(hashString('xyz'));
    expect(computeRequestHash([ip()], headerSourceOf({}), '10.1.2.3')).toBe(hashString('10.1.2.3'));
  });

  it('combines in order and stops at a terminal policy that produced a value', () => {
    const h = headerSourceOf({ 'x-a': 'A', 'x-b': 'B' });
    expect(computeRequestHash([header('x-a'), header('x-b')], h, '')).toBe(combineHashes(hashString('A'), hashString('B')));
    expect(computeRequestHash([header('x-a', true), header('x-b')], h, '')).toBe(hashString('A'));
    // A terminal policy with no value does not stop evaluation.
    expect(computeRequestHash([header('x-none', true), header('x-b')], h, '')).toBe(hashString('B'));
    expect(computeRequestHash([header('x-a'), ip(true), header('x-b')], h, '9.9.9.9')).toBe(combineHashes(hashString('A'), hashString('9.9.9.9')));
  });
});

describe('hashCookie', () => {
  it('finds a cookie by exact name without being fooled by longer names', () => {
    expect(hashCookie('sid=1', 'sid')).toBe(hashString('1'));
    expect(hashCookie('xsid=0; sid=2', 'sid')).toBe(hashString('2'));
    expect(hashCookie('sidx=0;sid=3', 'sid')).toBe(hashString('3'));
    expect(hashCookie('a=1;  sid=4 ', 'sid')).toBe(hashString('4'));
    expect(hashCookie('sid="q"', 'sid')).toBe(hashString('q'));
    expect(hashCookie('sid=', 'sid')).toBe(hashString(''));
    expect(hashCookie('a=1; b=2', 'sid')).toBeUndefined();
    expect(hashCookie('', 'sid')).toBeUndefined();
  });
});
