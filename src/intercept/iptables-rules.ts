// The interception rules of a pod's network namespace, as iptables-restore input (pure: no processes, no I/O).
// Same shape as Istio's istio-iptables, with our own chain names, in the nat table of IPv4 and IPv6:
//   PREROUTING -> PILLION_INBOUND -> PILLION_IN_REDIRECT (REDIRECT to the inbound listener)
//   OUTPUT     -> PILLION_OUTPUT  -> PILLION_REDIRECT    (REDIRECT to the outbound listener)
// Applying computes a delta against the current `iptables-save` so that applying twice changes nothing, and
// cleanup removes exactly what apply added; both are one iptables-restore --noflush transaction each, so the
// namespace never holds half a ruleset.
import { isIP } from 'node:net';

export type Family = 4 | 6;

export interface InterceptOptions {
  /** The proxy's uid: its own connections are never redirected (else it would loop to itself). */
  readonly proxyUid: number;
  readonly inboundPort: number;
  readonly outboundPort: number;
  /** Destination ports of inbound connections left alone (e.g. the admin port, ssh). */
  readonly excludeInboundPorts: readonly number[];
  /** Destination ports of outbound connections left alone. */
  readonly excludeOutboundPorts: readonly number[];
  /** Destinations of outbound connections left alone, IPv4 and IPv6 CIDRs mixed; each goes to its family. */
  readonly excludeCidrs: readonly string[];
}

export const CHAIN_INBOUND = 'PILLION_INBOUND';
export const CHAIN_IN_REDIRECT = 'PILLION_IN_REDIRECT';
export const CHAIN_OUTPUT = 'PILLION_OUTPUT';
export const CHAIN_REDIRECT = 'PILLION_REDIRECT';
/** Every chain we own; cleanup removes these and every rule that jumps to one of them. */
export const OUR_CHAINS: readonly string[] = [CHAIN_INBOUND, CHAIN_IN_REDIRECT, CHAIN_OUTPUT, CHAIN_REDIRECT];

/** The rules in the built-in chains that send traffic into ours, as `iptables-save` prints them. */
export const JUMPS: readonly string[] = [`-A PREROUTING -p tcp -j ${CHAIN_INBOUND}`, `-A OUTPUT -p tcp -j ${CHAIN_OUTPUT}`];

/** The source of the proxy's inbound passthrough connections (xds/compiler.ts INBOUND_PASSTHROUGH_SOURCE). */
export const INBOUND_PASSTHROUGH_SOURCE = '127.0.0.6';
/** Its IPv6 counterpart (Istio's): not a loopback address, so `--apply` adds it to lo. */
export const INBOUND_PASSTHROUGH_SOURCE_V6 = '::6';

const LOOPBACK: Record<Family, string> = { 4: '127.0.0.1/32', 6: '::1/128' };

export class InterceptOptionsError extends Error {
  override name = 'InterceptOptionsError';
}

/** Checks a CIDR ("10.0.0.0/8", "fd00::/8", or a bare address) and returns its family. */
export function cidrFamily(cidr: string): Family | undefined {
  const slash = cidr.indexOf('/');
  const address = slash < 0 ? cidr : cidr.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return undefined;
  if (slash >= 0) {
    const bits = cidr.slice(slash + 1);
    if (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128)) return undefined;
  }
  return family as Family;
}

export function validateOptions(o: InterceptOptions): void {
  if (!Number.isInteger(o.proxyUid) || o.proxyUid < 0 || o.proxyUid > 0xfffffffe) throw new InterceptOptionsError(`--proxy-uid: expected a uid, got ${o.proxyUid}`);
  // uid 0 would exempt root's traffic from interception: a root app would bypass its sidecar without a word.
  if (o.proxyUid === 0) throw new InterceptOptionsError('--proxy-uid: 0 (root) would exempt every root process from interception; run the proxy under its own uid');
  for (const [flag, p] of [['inbound-port', o.inboundPort], ['outbound-port', o.outboundPort]] as const) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InterceptOptionsError(`--${flag}: expected a port 1-65535, got ${p}`);
  }
  for (const [flag, list] of [['exclude-inbound-ports', o.excludeInboundPorts], ['exclude-outbound-ports', o.excludeOutboundPorts]] as const) {
    for (const p of list) if (!Number.isInteger(p) || p < 1 || p > 65535) throw new InterceptOptionsError(`--${flag}: expected ports 1-65535, got ${p}`);
  }
  for (const c of o.excludeCidrs) if (cidrFamily(c) === undefined) throw new InterceptOptionsError(`--exclude-cidrs: "${c}" is not an IPv4 or IPv6 address or CIDR`);
}

/** The rules of our own chains for one family, in order (without the jumps from the built-in chains). */
export function chainRules(o: InterceptOptions, family: Family): string[] {
  const uid = String(o.proxyUid);
  const rules: string[] = [];
  // Inbound: everything TCP that arrives for this pod, except the excluded ports, goes to the inbound listener.
  for (const p of o.excludeInboundPorts) rules.push(`-A ${CHAIN_INBOUND} -p tcp -m tcp --dport ${p} -j RETURN`);
  rules.push(`-A ${CHAIN_INBOUND} -p tcp -j ${CHAIN_IN_REDIRECT}`);
  rules.push(`-A ${CHAIN_IN_REDIRECT} -p tcp -j REDIRECT --to-ports ${o.inboundPort}`);
  rules.push(`-A ${CHAIN_REDIRECT} -p tcp -j REDIRECT --to-ports ${o.outboundPort}`);
  // Outbound, in this order (the first match wins):
  // 0. The proxy's inbound passthrough (a peer's connection to a port the service does not declare) dials the
  //    original destination, this pod's own address, from 127.0.0.6 or ::6 (as Istio's): it must reach the app,
  //    not loop back into the inbound listener by rule 1.
  if (family === 4) rules.push(`-A ${CHAIN_OUTPUT} -s ${INBOUND_PASSTHROUGH_SOURCE}/32 -o lo -j RETURN`);
  else rules.push(`-A ${CHAIN_OUTPUT} -s ${INBOUND_PASSTHROUGH_SOURCE_V6}/128 -o lo -j RETURN`);
  // 1. The proxy dialing this pod's own (non-loopback) address leaves through lo: that is an app calling its own
  //    service by pod IP, already through the outbound side, so it enters the inbound side as a peer would.
  rules.push(`-A ${CHAIN_OUTPUT} ! -d ${LOOPBACK[family]} -o lo -p tcp -m owner --uid-owner ${uid} -j ${CHAIN_IN_REDIRECT}`);
  // 2. The app talking to itself over lo (localhost, or its own pod IP) stays local, as without a sidecar.
  rules.push(`-A ${CHAIN_OUTPUT} -o lo -m owner ! --uid-owner ${uid} -j RETURN`);
  // 3. The proxy's own connections (to peers, to the app on 127.0.0.1, to the control server) are never redirected.
  rules.push(`-A ${CHAIN_OUTPUT} -m owner --uid-owner ${uid} -j RETURN`);
  // 4. Loopback by any other route, then the operator's exclusions.
  rules.push(`-A ${CHAIN_OUTPUT} -d ${LOOPBACK[family]} -j RETURN`);
  for (const c of o.excludeCidrs) {
    if (cidrFamily(c) === family) rules.push(`-A ${CHAIN_OUTPUT} -d ${normalizeCidr(c, family)} -j RETURN`);
  }
  for (const p of o.excludeOutboundPorts) rules.push(`-A ${CHAIN_OUTPUT} -p tcp -m tcp --dport ${p} -j RETURN`);
  // 5. Everything else the app sends goes to the outbound listener.
  rules.push(`-A ${CHAIN_OUTPUT} -j ${CHAIN_REDIRECT}`);
  return rules;
}

/** "10.0.0.1" -> "10.0.0.1/32": iptables-save prints a prefix length always; we write what it prints. */
function normalizeCidr(c: string, family: Family): string {
  return c.includes('/') ? c : `${c}/${family === 4 ? 32 : 128}`;
}

/** The whole ruleset for one family as iptables-restore input: what `pillion iptables` prints. */
export function renderRuleset(o: InterceptOptions, family: Family): string {
  const lines = ['*nat', ...OUR_CHAINS.map((c) => `:${c} - [0:0]`), ...JUMPS, ...chainRules(o, family), 'COMMIT', ''];
  return lines.join('\n');
}

/** The nat table's lines of an `iptables-save` output (comments, counters and other tables left out). */
export function natLines(save: string): string[] {
  const out: string[] = [];
  let inNat = false;
  for (const raw of save.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inNat = line === '*nat';
    else if (inNat && line !== 'COMMIT' && line !== '' && !line.startsWith('#')) out.push(line);
  }
  return out;
}

/** Our chains that exist in the current ruleset. */
function existingChains(nat: readonly string[]): Set<string> {
  const set = new Set<string>();
  for (const line of nat) {
    if (!line.startsWith(':')) continue;
    const name = line.slice(1).split(' ')[0] ?? '';
    if (OUR_CHAINS.includes(name)) set.add(name);
  }
  return set;
}

/** Rules in chains that are not ours which jump to one of ours (ours: from any version of our rules). */
function foreignJumps(nat: readonly string[]): string[] {
  return nat.filter((line) => {
    if (!line.startsWith('-A ')) return false;
    const chain = line.split(' ')[1] ?? '';
    if (OUR_CHAINS.includes(chain)) return false;
    const target = /\s-j\s+(\S+)/.exec(line)?.[1];
    return target !== undefined && OUR_CHAINS.includes(target);
  });
}

/**
 * iptables-restore --noflush input that turns the current ruleset (`iptables-save` output) into ours: declaring
 * a chain creates it or empties it, so our chains get exactly our rules; a jump is added only where it is missing,
 * and stale or duplicate jumps into our chains are deleted. Undefined when nothing would change.
 */
export function applyPlan(o: InterceptOptions, family: Family, currentSave: string): string | undefined {
  const nat = natLines(currentSave);
  if (isApplied(o, family, nat)) return undefined;
  const lines = ['*nat', ...OUR_CHAINS.map((c) => `:${c} - [0:0]`)];
  const seen = new Set<string>();
  for (const jump of foreignJumps(nat)) {
    if (JUMPS.includes(jump) && !seen.has(jump)) seen.add(jump);
    else lines.push(`-D${jump.slice(2)}`);
  }
  for (const jump of JUMPS) if (!seen.has(jump)) lines.push(jump);
  lines.push(...chainRules(o, family), 'COMMIT', '');
  return lines.join('\n');
}

/** True when the nat table holds exactly our jumps (once each) and our chains with exactly our rules. */
export function isApplied(o: InterceptOptions, family: Family, nat: readonly string[]): boolean {
  const jumps = foreignJumps(nat);
  if (jumps.length !== JUMPS.length || !JUMPS.every((j) => jumps.includes(j))) return false;
  if (existingChains(nat).size !== OUR_CHAINS.length) return false;
  // Order matters within a chain only; iptables-save lists the chains in its own order.
  const want = chainRules(o, family);
  return OUR_CHAINS.every((chain) => {
    const prefix = `-A ${chain} `;
    const have = nat.filter((line) => line.startsWith(prefix));
    const expected = want.filter((line) => line.startsWith(prefix));
    return have.length === expected.length && have.every((line, i) => line === expected[i]);
  });
}

/** iptables-restore --noflush input that removes our jumps and chains; undefined when none are there. */
export function cleanupPlan(currentSave: string): string | undefined {
  const nat = natLines(currentSave);
  const jumps = foreignJumps(nat);
  const chains = existingChains(nat);
  if (jumps.length === 0 && chains.size === 0) return undefined;
  const lines = ['*nat', ...jumps.map((j) => `-D${j.slice(2)}`)];
  // Flush all first: a chain can only be deleted once nothing jumps to it, ours included.
  for (const c of OUR_CHAINS) if (chains.has(c)) lines.push(`-F ${c}`);
  for (const c of OUR_CHAINS) if (chains.has(c)) lines.push(`-X ${c}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}
