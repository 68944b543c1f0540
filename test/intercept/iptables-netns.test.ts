// `pillion iptables` against the real iptables/ip6tables (nft backend) in fresh network namespaces (root only):
// the installed ruleset, idempotence, cleanup, and what the rules do to real connections from the app's uid and the
// proxy's uid (tests/fixtures/netns-probe.mjs listens where the sidecar would and says who got each connection).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createNetns, netnsUnavailable, type Netns } from '../helpers/netns.js';
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
  // pod: 10.99.0.1 / fd99::1, the namespace with the rules; peer: 10.99.0.2 / fd99::2, across a veth pair.
  let pod: Netns;
  let peer: Netns;
  let probe: ChildProcess | undefined;

  beforeAll(async () => {
    pod = createNetns('pl-pod');
    peer = createNetns('pl-peer');
    const veth = `vp${process.pid % 100000}`;
    spawnSync('ip', ['link', 'add', `${veth}a`, 'netns', pod.name, 'type', 'veth', 'peer', 'name', `${veth}b`, 'netns', peer.name]);
    for (const [ns, v4, v6, dev] of [[pod, '10.99.0.1/24', 'fd99::1/64', `${veth}a`], [peer, '10.99.0.2/24', 'fd99::2/64', `${veth}b`]] as const) {
      ns.run('ip', ['addr', 'add', v4, 'dev', dev]);
      ns.run('ip', ['addr', 'add', v6, 'dev', dev, 'nodad']);
      ns.run('ip', ['link', 'set', dev, 'up']);
    }
    pillion(pod, ['--proxy-uid', String(PROXY_UID), '--exclude-outbound-ports', '5353', '--exclude-inbound-ports', '22', '--apply']);
    // Where the sidecar's listeners and the app would listen; no native addon needed for who-got-it.
    probe = pod.spawn(process.execPath, [PROBE, 'serve', 'outbound=15001,inbound=15006,app=9999,ssh=22']);
    probe.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      probe!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      probe!.on('exit', (code) => reject(new Error(`probe exited ${code}`)));
    });
    // The peer listens as well: whoever reaches 10.99.0.2 unredirected gets "peer".
    const peerProbe = peer.spawn(process.execPath, [PROBE, 'serve', 'peer=80,peer2=5353']);
    peerProbe.on('error', () => {});
    peerProbes.push(peerProbe);
    await new Promise<void>((resolve) => peerProbe.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()));
  });
  const peerProbes: ChildProcess[] = [];
  afterAll(() => {
    probe?.kill();
    for (const p of peerProbes) p.kill();
    pod?.delete();
    peer?.delete();
  });

  /** Who answered a connection made inside `ns`, as the app (root) or as the proxy's uid. */
  function who(ns: Netns, as: 'app' | 'proxy', host: string, port: number): string {
    const node = [process.execPath, PROBE, 'connect', host, String(port), '1500'];
    const out = as === 'app' ? ns.run(node[0]!, node.slice(1)) : ns.run('setpriv', ['--reuid', String(PROXY_UID), '--regid', String(PROXY_UID), '--clear-groups', ...node]);
    return out.trim().split(' ')[0] ?? '';
  }

  it('sends the app\'s outbound TCP to the outbound listener and lets the proxy\'s own through (IPv4 and IPv6)', () => {
    for (const host of ['10.99.0.2', 'fd99::2']) {
      expect(who(pod, 'app', host, 80)).toBe('outbound');
      expect(who(pod, 'proxy', host, 80)).toBe('peer');
      // An excluded port goes straight out.
      expect(who(pod, 'app', host, 5353)).toBe('peer2');
    }
  });

  it('keeps the app\'s loopback local, and sends the proxy calling its own pod address to the inbound side', () => {
    for (const host of ['127.0.0.1', '::1', '10.99.0.1', 'fd99::1']) expect(who(pod, 'app', host, 9999)).toBe('app');
    for (const host of ['127.0.0.1', '::1']) expect(who(pod, 'proxy', host, 9999)).toBe('app');
    for (const host of ['10.99.0.1', 'fd99::1']) expect(who(pod, 'proxy', host, 9999)).toBe('inbound');
  });

  it('sends TCP arriving from another namespace to the inbound listener, except excluded ports', () => {
    for (const host of ['10.99.0.1', 'fd99::1']) {
      expect(who(peer, 'app', host, 9999)).toBe('inbound');
      expect(who(peer, 'app', host, 22)).toBe('ssh');
    }
  });
});
