// `pillion iptables` against the real iptables/ip6tables (nft backend) in fresh network namespaces (root only):
// the installed ruleset, idempotence, cleanup, and what the rules do to real connections from the app's uid and the
// proxy's uid (tests/fixtures/netns-probe.mjs listens where the sidecar would and says who got each connection).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createNetns, createPodPair, netnsUnavailable, waitForOutput, type Netns, type PodPair } from '../helpers/netns.js';
import { MAIN } from '../helpers/process.js';

const unavailable = netnsUnavailable();
if (unavailable) console.warn(`skipping the iptables netns tests: ${unavailable}`);

const PROBE = fileURLToPath(new URL('../fixtures/netns-probe.mjs', import.meta.url));
const PROXY_UID = 1337;
const FLAGS = ['--proxy-uid', String(PROXY_UID), '--exclude-inbound-ports', '22', '--exclude-cidrs', '10.98.0.0/16,fd98::/16', '--exclude-outbound-ports', '5353'];

function pillion(ns: Netns, args: string[]): string {
  return ns.run(process.execPath, [MAIN, 'iptables', ...args]);
}

/** Both nat tables without iptables-save's timestamp comments. */
function natTables(ns: Netns): string {
  const strip = (s: string): string => s.split('\n').filter((l) => !l.startsWith('#')).join('\n');
  return strip(ns.run('iptables-save', ['-t', 'nat'])) + strip(ns.run('ip6tables-save', ['-t', 'nat']));
}

describe.skipIf(unavailable !== undefined)('pillion iptables in a network namespace', () => {
  let ns: Netns;
  beforeAll(() => {
    ns = createNetns('pl-ipt');
  });
  afterAll(() => ns?.delete());

  it('installs our chains for IPv4 and IPv6, changes nothing when applied again, and cleanup leaves the tables as they were', () => {
    const before = natTables(ns);
    expect(before).not.toContain('PILLION');

    expect(pillion(ns, [...FLAGS, '--apply'])).toBe('pillion iptables: iptables interception rules installed\npillion iptables: ip6tables interception rules installed\n');
    const v4 = ns.run('iptables-save', ['-t', 'nat']);
    const v6 = ns.run('ip6tables-save', ['-t', 'nat']);
    for (const line of [
      '-A PREROUTING -p tcp -j PILLION_INBOUND',
      '-A OUTPUT -p tcp -j PILLION_OUTPUT',
      '-A PILLION_INBOUND -p tcp -m tcp --dport 22 -j RETURN',
      '-A PILLION_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
      '-A PILLION_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
      `-A PILLION_OUTPUT -m owner --uid-owner ${PROXY_UID} -j RETURN`,
      '-A PILLION_OUTPUT -p tcp -m tcp --dport 5353 -j RETURN',
    ]) {
      expect(v4).toContain(line);
      expect(v6).toContain(line);
    }
    expect(v4).toContain('-A PILLION_OUTPUT -d 10.98.0.0/16 -j RETURN');
    expect(v6).toContain('-A PILLION_OUTPUT -d fd98::/16 -j RETURN');
    expect(v6).toContain(`-A PILLION_OUTPUT ! -d ::1/128 -o lo -p tcp -m owner --uid-owner ${PROXY_UID} -j PILLION_IN_REDIRECT`);
    expect(v4).not.toContain('fd98');

    const applied = natTables(ns);
    expect(pillion(ns, [...FLAGS, '--apply'])).toContain('iptables interception rules already installed, unchanged');
    expect(natTables(ns)).toBe(applied);

    // A changed flag rewrites our chains in place: still one jump each.
    pillion(ns, [...FLAGS, '--outbound-port', '15011', '--apply']);
    const changed = ns.run('iptables-save', ['-t', 'nat']);
    expect(changed).toContain('-A PILLION_REDIRECT -p tcp -j REDIRECT --to-ports 15011');
    expect(changed.split('\n').filter((l) => l === '-A OUTPUT -p tcp -j PILLION_OUTPUT')).toHaveLength(1);

    expect(pillion(ns, ['--cleanup'])).toBe('pillion iptables: iptables interception rules removed\npillion iptables: ip6tables interception rules removed\n');
    expect(natTables(ns)).toBe(before);
    expect(pillion(ns, ['--cleanup'])).toContain('iptables interception rules none present');
    expect(natTables(ns)).toBe(before);
  });

  it('leaves rules that are not ours alone on apply and cleanup', () => {
    ns.run('iptables', ['-t', 'nat', '-A', 'OUTPUT', '-p', 'udp', '--dport', '53', '-j', 'RETURN']);
    const before = natTables(ns);
    pillion(ns, [...FLAGS, '--apply']);
    expect(ns.run('iptables-save', ['-t', 'nat'])).toContain('-A OUTPUT -p udp -m udp --dport 53 -j RETURN');
    pillion(ns, ['--cleanup']);
    expect(natTables(ns)).toBe(before);
    ns.run('iptables', ['-t', 'nat', '-D', 'OUTPUT', '-p', 'udp', '--dport', '53', '-j', 'RETURN']);
  });
});

describe.skipIf(unavailable !== undefined)('what the rules do to connections', () => {
  let pods: PodPair;
  const probes: ChildProcess[] = [];

  beforeAll(async () => {
    pods = createPodPair('pl-rule');
    pillion(pods.pod, ['--proxy-uid', String(PROXY_UID), '--exclude-outbound-ports', '5353', '--exclude-inbound-ports', '22', '--apply']);
    // Where the sidecar's listeners and the app would listen; the peer answers whoever reaches it unredirected.
    for (const [ns, spec] of [[pods.pod, 'outbound=15001,inbound=15006,app=9999,ssh=22'], [pods.peer, 'peer=80,peer2=5353']] as const) {
      const probe = ns.spawn(process.execPath, [PROBE, 'serve', spec]);
      probe.on('error', () => {});
      probes.push(probe);
      await waitForOutput(probe, 'ready');
    }
  });
  afterAll(() => {
    for (const p of probes) p.kill();
    pods?.delete();
  });

  /** Who answered a connection made inside `ns`, as the app (root) or as the proxy's uid. */
  function who(ns: Netns, as: 'app' | 'proxy', host: string, port: number): string {
    const node = [process.execPath, PROBE, 'connect', host, String(port), '1500'];
    const out = as === 'app' ? ns.run(node[0]!, node.slice(1)) : ns.run('setpriv', ['--reuid', String(PROXY_UID), '--regid', String(PROXY_UID), '--clear-groups', ...node]);
    return out.trim().split(' ')[0] ?? '';
  }

  it('sends the app\'s outbound TCP to the outbound listener and lets the proxy\'s own through (IPv4 and IPv6)', () => {
    for (const host of [pods.peerV4, pods.peerV6]) {
      expect(who(pods.pod, 'app', host, 80)).toBe('outbound');
      expect(who(pods.pod, 'proxy', host, 80)).toBe('peer');
      // An excluded port goes straight out.
      expect(who(pods.pod, 'app', host, 5353)).toBe('peer2');
    }
  });

  it('keeps the app\'s loopback local, and sends the proxy calling its own pod address to the inbound side', () => {
    for (const host of ['127.0.0.1', '::1', pods.podV4, pods.podV6]) expect(who(pods.pod, 'app', host, 9999)).toBe('app');
    for (const host of ['127.0.0.1', '::1']) expect(who(pods.pod, 'proxy', host, 9999)).toBe('app');
    for (const host of [pods.podV4, pods.podV6]) expect(who(pods.pod, 'proxy', host, 9999)).toBe('inbound');
  });

  it('sends TCP arriving from another namespace to the inbound listener, except excluded ports', () => {
    for (const host of [pods.podV4, pods.podV6]) {
      expect(who(pods.peer, 'app', host, 9999)).toBe('inbound');
      expect(who(pods.peer, 'app', host, 22)).toBe('ssh');
    }
  });
});
