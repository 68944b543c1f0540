// SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST through src/listener/original-dst.ts (the built native helper), in a
// network namespace with `pillion iptables` REDIRECT rules (root only): a listener that received a redirected
// connection recovers the address and port the client dialed, IPv4 and IPv6, outbound and inbound.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createPodPair, netnsUnavailable, waitForOutput, type Netns, type PodPair } from '../helpers/netns.js';
import { MAIN } from '../helpers/process.js';
import { originalDstAvailable, originalDstProblem } from '../../src/listener/original-dst.js';

const PROBE = fileURLToPath(new URL('../fixtures/netns-probe.mjs', import.meta.url));
const PROXY_UID = 1337;

const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable) console.warn(`skipping the original destination tests: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('original destination of redirected connections', () => {
  let pods: PodPair;
  const probes: ChildProcess[] = [];

  beforeAll(async () => {
    pods = createPodPair('pl-odst');
    pods.pod.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(PROXY_UID), '--apply']);
    const probe = pods.pod.spawn(process.execPath, [PROBE, 'serve', 'outbound=15001,inbound=15006']);
    probe.on('error', () => {});
    probes.push(probe);
    await waitForOutput(probe, 'ready');
  });
  afterAll(() => {
    for (const p of probes) p.kill();
    pods?.delete();
  });

  function connect(ns: Netns, host: string, port: number): string {
    return ns.run(process.execPath, [PROBE, 'connect', host, String(port), '2000']).trim();
  }

  it('outbound: the app dialed a peer address and port (IPv4 and IPv6)', () => {
    expect(connect(pods.pod, pods.peerV4, 8080)).toBe(`outbound ${pods.peerV4} 8080 redirected`);
    expect(connect(pods.pod, '203.0.113.9', 443)).toBe('outbound 203.0.113.9 443 redirected');
    expect(connect(pods.pod, pods.peerV6, 9090)).toBe(`outbound ${pods.peerV6} 9090 redirected`);
  });

  it('inbound: a peer dialed this pod\'s address and the app\'s port (IPv4 and IPv6)', () => {
    expect(connect(pods.peer, pods.podV4, 8080)).toBe(`inbound ${pods.podV4} 8080 redirected`);
    expect(connect(pods.peer, pods.podV6, 5432)).toBe(`inbound ${pods.podV6} 5432 redirected`);
  });

  it('a connection made straight to the listener reports the listener itself (not redirected)', () => {
    expect(connect(pods.pod, '127.0.0.1', 15001)).toBe('outbound 127.0.0.1 15001 direct');
    expect(connect(pods.pod, '::1', 15006)).toBe('inbound ::1 15006 direct');
  });
});
