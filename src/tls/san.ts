// Subject alternative names of a peer certificate (pure): Node's `subjectaltname` string parsed into entries,
// the SPIFFE ID among them, and Envoy's match_typed_subject_alt_names applied. Node's own checkServerIdentity
// looks at DNS names and IP addresses only, so a SPIFFE (URI SAN) check has to be this one.
import type { SanMatcherModel } from '../config/model.js';
import { parseSpiffeId } from './peer.js';

export interface SanEntry {
  readonly type: SanMatcherModel['sanType'];
  readonly value: string;
}

/** Node's names for SAN types → Envoy's SanType names. */
const NODE_TYPES: Readonly<Record<string, SanMatcherModel['sanType']>> = {
  URI: 'URI',
  DNS: 'DNS',
  email: 'EMAIL',
  'IP Address': 'IP_ADDRESS',
};

/**
 * Parses `PeerCertificate.subjectaltname` ("DNS:a, URI:spiffe://td/ns/x/sa/y"). Node writes a value that holds
 * a separator as a JSON string (`URI:"a, b"`), so a quoted value is read as JSON, never split.
 */
export function parseSubjectAltNames(subjectaltname: string | undefined): SanEntry[] {
  const out: SanEntry[] = [];
  if (subjectaltname === undefined || subjectaltname === '') return out;
  let i = 0;
  const s = subjectaltname;
  while (i < s.length) {
    const colon = s.indexOf(':', i);
    if (colon < 0) break;
    const name = s.slice(i, colon);
    let value: string;
    let next: number;
    if (s[colon + 1] === '"') {
      let end = colon + 2;
      while (end < s.length && s[end] !== '"') end += s[end] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(s.slice(colon + 1, end + 1)) as string;
      } catch {
        value = s.slice(colon + 2, end);
      }
      next = s.indexOf(', ', end);
    } else {
      next = s.indexOf(', ', colon);
      value = next < 0 ? s.slice(colon + 1) : s.slice(colon + 1, next);
    }
    const type = NODE_TYPES[name];
    if (type !== undefined) out.push({ type, value });
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

/**
 * The certificate's SPIFFE ID, else null. An X.509-SVID has exactly one URI SAN and it is a valid SPIFFE ID (the
 * X.509-SVID spec): a certificate with a second URI SAN of any kind, or a malformed ID, names no workload.
 */
export function spiffeIdOfSans(sans: readonly SanEntry[]): string | null {
  let found: string | null = null;
  for (const san of sans) {
    if (san.type !== 'URI') continue;
    if (found !== null) return null;
    found = san.value;
  }
  return found !== null && parseSpiffeId(found) !== null ? found : null;
}

function matchOne(m: SanMatcherModel, value: string): boolean {
  const v = m.ignoreCase ? value.toLowerCase() : value;
  const want = m.ignoreCase ? m.value.toLowerCase() : m.value;
  switch (m.match) {
    case 'exact':
      return v === want;
    case 'prefix':
      return v.startsWith(want);
    case 'suffix':
      return v.endsWith(want);
    case 'contains':
      return v.includes(want);
  }
}

/** Envoy's rule: a certificate passes when any of its SANs matches any matcher of the same SAN type. */
export function sansMatch(matchers: readonly SanMatcherModel[], sans: readonly SanEntry[]): boolean {
  for (const m of matchers) {
    for (const san of sans) if (san.type === m.sanType && matchOne(m, san.value)) return true;
  }
  return false;
}
