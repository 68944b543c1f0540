// Network namespaces for the interception tests (root only): create, run commands and processes inside, delete.
// Every namespace gets lo up and a name unique to this test process, and is deleted by its owner.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { findTool } from '../../src/intercept/iptables.js';

let counter = 0;

/** Why the netns tests cannot run here, or undefined when they can (root, ip, iptables, ip6tables, setpriv). */
export function netnsUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root (network namespaces and iptables need CAP_NET_ADMIN)';
  for (const tool of ['ip', 'iptables-save', 'iptables-restore', 'ip6tables-save', 'ip6tables-restore', 'setpriv']) {
    if (findTool(tool) === undefined) return `${tool} not installed (Debian: apt-get install iptables iproute2 util-linux)`;
  }
  const probe = `pillion-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (add.status !== 0) return `ip netns add failed: ${add.stderr.trim()}`;
  spawnSync('ip', ['netns', 'del', probe]);
  return undefined;
}

export interface Netns {
  readonly name: string;
  /** Runs a command inside and returns its stdout; throws with its stderr when it fails. */
  run(cmd: string, args: string[], input?: string): string;
  /** Starts a long-running process inside (its owner kills it). */
  spawn(cmd: string, args: string[]): ChildProcess;
  delete(): void;
}

export function createNetns(prefix = 'pl'): Netns {
  const name = `${prefix}-${process.pid}-${++counter}`;
  const must = (args: string[], input?: string): string => {
    const res = spawnSync(findTool(args[0]!) ?? args[0]!, args.slice(1), { encoding: 'utf8', input, timeout: 30_000 });
    if (res.status !== 0) throw new Error(`${args.join(' ')} failed (${res.status ?? res.signal}): ${res.stderr}`);
    return res.stdout;
  };
  must(['ip', 'netns', 'add', name]);
  must(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
  return {
    name,
    run: (cmd, args, input) => must(['ip', 'netns', 'exec', name, findTool(cmd) ?? cmd, ...args], input),
    spawn: (cmd, args) => spawn('ip', ['netns', 'exec', name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }),
    delete: () => void spawnSync('ip', ['netns', 'del', name]),
  };
}

export interface PodPair {
  /** 10.99.N.1 and fd99:N::1, default routes via the peer */
  readonly pod: Netns;
  /** 10.99.N.2 and fd99:N::2, across a veth pair */
  readonly peer: Netns;
  readonly podV4: string;
  readonly podV6: string;
  readonly peerV4: string;
  readonly peerV6: string;
  delete(): void;
}

let subnet = 0;

/** Two namespaces joined by a veth pair, each with an IPv4 and an IPv6 address on it (subnet per pair). */
export function createPodPair(prefix: string): PodPair {
  const n = (process.pid % 200) + (++subnet);
  const pod = createNetns(`${prefix}a`);
  const peer = createNetns(`${prefix}b`);
  const veth = `v${process.pid % 100000}x${subnet}`;
  const pair = {
    pod, peer,
    podV4: `10.99.${n}.1`, peerV4: `10.99.${n}.2`, podV6: `fd99:${n}::1`, peerV6: `fd99:${n}::2`,
    delete: () => {
      pod.delete();
      peer.delete();
    },
  };
  const res = spawnSync('ip', ['link', 'add', `${veth}a`, 'netns', pod.name, 'type', 'veth', 'peer', 'name', `${veth}b`, 'netns', peer.name], { encoding: 'utf8' });
  if (res.status !== 0) {
    pair.delete();
    throw new Error(`ip link add veth failed: ${res.stderr}`);
  }
  for (const [ns, v4, v6, dev] of [[pod, pair.podV4, pair.podV6, `${veth}a`], [peer, pair.peerV4, pair.peerV6, `${veth}b`]] as const) {
    ns.run('ip', ['addr', 'add', `${v4}/24`, 'dev', dev]);
    ns.run('ip', ['addr', 'add', `${v6}/64`, 'dev', dev, 'nodad']);
    ns.run('ip', ['link', 'set', dev, 'up']);
  }
  // As a pod has: addresses outside its subnet are routable (the peer drops them), so connects to them are made.
  pod.run('ip', ['route', 'add', 'default', 'via', pair.peerV4]);
  pod.run('ip', ['-6', 'route', 'add', 'default', 'via', pair.peerV6]);
  return pair;
}

/** Waits for a child to print `word` on stdout (bounded), or rejects with its stderr when it exits first. */
export function waitForOutput(child: ChildProcess, word: string, timeoutMs = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no "${word}" within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes(word)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before "${word}"; stderr: ${err}`));
    });
  });
}
