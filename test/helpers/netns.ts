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
