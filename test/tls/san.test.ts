// The pure cores of src/tls: SAN parsing and matching (secure naming), handshake failure classification and the
// rate-limited reporter (a clock injected, no sleeps).
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { parseSubjectAltNames, sansMatch, spiffeIdOfSans } from '../../src/tls/san.js';
import { classifyHandshakeError, HandshakeFailureReporter, PEER_IDENTITY_ERROR } from '../../src/tls/handshake-failures.js';
import { xfccValue } from '../../src/tls/downstream-peer.js';
import { parseSpiffeId } from '../../src/tls/peer.js';
import type { SanMatcherModel } from '../../src/config/model.js';

describe('subject alternative names', () => {
  it("parses Node's subjectaltname, quoted values included", () => {
    expect(parseSubjectAltNames('DNS:web, URI:spiffe://td/ns/a/sa/b, IP Address:127.0.0.1, email:x@y')).toEqual([
      { type: 'DNS', value: 'web' },
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
      { type: 'IP_ADDRESS', value: '127.0.0.1' },
      { type: 'EMAIL', value: 'x@y' },
    ]);
    expect(parseSubjectAltNames('URI:"spiffe://td/a, b", DNS:x')).toEqual([
      { type: 'URI', value: 'spiffe://td/a, b' },
      { type: 'DNS', value: 'x' },
    ]);
    expect(parseSubjectAltNames(undefined)).toEqual([]);
  });

  it('finds the one SPIFFE ID, and none when there are two URI SANs of any kind (an X.509-SVID has exactly one)', () => {
    expect(spiffeIdOfSans(parseSubjectAltNames('DNS:a, URI:spiffe://td/ns/a/sa/b, email:x@y'))).toBe('spiffe://td/ns/a/sa/b');
    expect(spiffeIdOfSans(parseSubjectAltNames('DNS:a, URI:https://x, URI:spiffe://td/ns/a/sa/b'))).toBeNull();
    expect(spiffeIdOfSans(parseSubjectAltNames('URI:spiffe://td/ns/a/sa/b, URI:spiffe://td/ns/a/sa/c'))).toBeNull();
    expect(spiffeIdOfSans(parseSubjectAltNames('DNS:a'))).toBeNull();
  });

  it('takes only valid SPIFFE IDs (the SPIFFE ID spec): no dot or empty segments, escapes, query, port or uppercase trust domain', () => {
    expect(parseSpiffeId('spiffe://cluster.local/ns/prod/sa/x')).toMatchObject({ trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: 'x' });
    expect(parseSpiffeId('spiffe://td')).toMatchObject({ trustDomain: 'td', namespace: '' });
    expect(parseSpiffeId('spiffe://td/Other_Path-1.2')).toMatchObject({ namespace: '' });
    for (const bad of [
      'SPIFFE://td/ns/a/sa/b', 'spiffe://', 'spiffe:///ns/a/sa/b', 'spiffe://TD/ns/a/sa/b', 'spiffe://td:8443/ns/a/sa/b', 'spiffe://u@td/ns/a/sa/b',
      'spiffe://td/', 'spiffe://td/ns/a/sa/b/', 'spiffe://td/ns//sa/b', 'spiffe://td/ns/./a/sa/b', 'spiffe://td/ns/a/../b/sa/c',
      'spiffe://td/ns/a/sa/%62', 'spiffe://td/ns/a/sa/b?x=1', 'spiffe://td/ns/a/sa/b#f', 'spiffe://td/ns/a/sa/b c',
    ]) expect(parseSpiffeId(bad), bad).toBeNull();
  });

  it("matches Envoy's typed SAN matchers: the type must agree", () => {
    const m = (over: Partial<SanMatcherModel>): SanMatcherModel => ({ sanType: 'URI', match: 'exact', value: 'spiffe://td/ns/a/sa/b', ignoreCase: false, ...over });
    const sans = parseSubjectAltNames('DNS:spiffe://td/ns/a/sa/b, URI:spiffe://td/ns/a/sa/b');
    expect(sansMatch([m({})], sans)).toBe(true);
    expect(sansMatch([m({ value: 'spiffe://td/ns/a/sa/c' })], sans)).toBe(false);
    expect(sansMatch([m({ sanType: 'DNS', value: 'x' })], parseSubjectAltNames('URI:x'))).toBe(false);
    expect(sansMatch([m({ match: 'prefix', value: 'SPIFFE://TD/', ignoreCase: true })], sans)).toBe(true);
    expect(sansMatch([], sans)).toBe(false);
  });
});

describe('handshake failures', () => {
  it('classifies error codes into bounded reasons', () => {
    expect(classifyHandshakeError('ERR_SSL_HTTP_REQUEST')).toBe('not_tls');
    expect(classifyHandshakeError('CERT_HAS_EXPIRED')).toBe('certificate_expired');
    expect(classifyHandshakeError('CERT_NOT_YET_VALID')).toBe('certificate_not_yet_valid');
    expect(classifyHandshakeError('UNABLE_TO_VERIFY_LEAF_SIGNATURE')).toBe('untrusted_certificate');
    expect(classifyHandshakeError(PEER_IDENTITY_ERROR)).toBe('peer_identity');
    expect(classifyHandshakeError('ERR_SSL_SOMETHING_NEW')).toBe('protocol');
    expect(classifyHandshakeError(undefined)).toBe('other');
  });

  it('counts every failure but logs one line per reason per 10 s, then says how many were not logged', () => {
    let now = 0;
    const counted: string[] = [];
    const lines: Record<string, unknown>[] = [];
    const r = new HandshakeFailureReporter((d, reason) => counted.push(`${d}/${reason}`), { warn: (obj) => lines.push(obj as Record<string, unknown>) }, () => now);
    for (let i = 0; i < 5; i++) r.report('inbound', 'not_tls', {});
    r.report('inbound', 'certificate_expired', {});
    expect(counted).toHaveLength(6);
    expect(lines).toHaveLength(2);
    now = 10_000;
    r.report('inbound', 'not_tls', {});
    expect(lines).toHaveLength(3);
    expect(lines[2]!.notLoggedSinceLast).toBe(4);
  });
});

describe('x-forwarded-client-cert', () => {
  it("is Envoy's By;Hash;URI element", () => {
    const v = xfccValue('spiffe://td/ns/a/sa/server', Buffer.from('der'), 'spiffe://td/ns/a/sa/client');
    const hash = createHash('sha256').update('der').digest('hex');
    expect(v).toBe(`By=spiffe://td/ns/a/sa/server;Hash=${hash};URI=spiffe://td/ns/a/sa/client`);
  });
});
