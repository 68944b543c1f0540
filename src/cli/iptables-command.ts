// `pillion iptables`: prints, installs (--apply) or removes (--cleanup) the interception rules of the current
// network namespace, for IPv4 (iptables) and IPv6 (ip6tables). Run it in the pod's namespace (an init container,
// or `ip netns exec POD pillion iptables --apply ...`) with NET_ADMIN.
import { parseArgs } from 'node:util';
import { UsageError } from '../bootstrap/args.js';
import { InterceptOptionsError, renderRuleset, validateOptions, type Family, type InterceptOptions } from '../intercept/iptables-rules.js';
import { addPassthroughSourceV6, applyRules, cleanupRules, removePassthroughSourceV6 } from '../intercept/iptables.js';

export const IPTABLES_USAGE = `usage: pillion iptables [--apply | --cleanup] --proxy-uid N [--inbound-port 15006] [--outbound-port 15001]
                        [--exclude-inbound-ports P,..] [--exclude-outbound-ports P,..] [--exclude-cidrs C,..]
  Without --apply or --cleanup: prints the rules (iptables-restore input, IPv4 then IPv6) and changes nothing.
  --apply     installs them in this network namespace (idempotent: applying again changes nothing), and adds
              ::6/128 to lo (the source of the IPv6 inbound passthrough, as Istio's)
  --cleanup   removes every PILLION_* chain and the jumps to them, and ::6 from lo (--proxy-uid not needed)
  --proxy-uid the uid the sidecar runs as: its own connections are never redirected
  Outbound TCP from any other uid goes to --outbound-port, inbound TCP to --inbound-port; traffic over lo
  stays local, except the proxy calling this pod's own address, which enters the inbound side.`;

function ports(flag: string, value: string | undefined): number[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`--${flag}: expected ports 1-65535 separated by commas, got "${s}"`);
    return n;
  });
}

function portFlag(flag: string, value: string | undefined, fallback: number): number {
  return value === undefined ? fallback : (ports(flag, value)[0] ?? fallback);
}

export function parseIptablesArgs(argv: string[]): { mode: 'print' | 'apply' | 'cleanup'; options?: InterceptOptions } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        apply: { type: 'boolean' },
        cleanup: { type: 'boolean' },
        'proxy-uid': { type: 'string' },
        'inbound-port': { type: 'string' },
        'outbound-port': { type: 'string' },
        'exclude-inbound-ports': { type: 'string' },
        'exclude-outbound-ports': { type: 'string' },
        'exclude-cidrs': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${IPTABLES_USAGE}`);
  }
  if (values.apply && values.cleanup) throw new UsageError(`--apply and --cleanup exclude each other\n${IPTABLES_USAGE}`);
  if (values.cleanup) return { mode: 'cleanup' };
  const uid = values['proxy-uid'];
  if (uid === undefined || !/^\d+$/.test(uid)) throw new UsageError(`--proxy-uid: expected the sidecar's numeric uid${uid === undefined ? '' : `, got "${uid}"`}\n${IPTABLES_USAGE}`);
  const options: InterceptOptions = {
    proxyUid: Number(uid),
    inboundPort: portFlag('inbound-port', values['inbound-port'], 15006),
    outboundPort: portFlag('outbound-port', values['outbound-port'], 15001),
    excludeInboundPorts: ports('exclude-inbound-ports', values['exclude-inbound-ports']),
    excludeOutboundPorts: ports('exclude-outbound-ports', values['exclude-outbound-ports']),
    excludeCidrs: (values['exclude-cidrs'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''),
  };
  try {
    validateOptions(options);
  } catch (err) {
    if (err instanceof InterceptOptionsError) throw new UsageError(err.message);
    throw err;
  }
  return { mode: values.apply ? 'apply' : 'print', options };
}

const FAMILIES: readonly Family[] = [4, 6];
const NAME: Record<Family, string> = { 4: 'iptables', 6: 'ip6tables' };

export function runIptablesCommand(argv: string[]): void {
  const { mode, options } = parseIptablesArgs(argv);
  if (mode === 'print' && options) {
    for (const family of FAMILIES) process.stdout.write(`# ${NAME[family]}: what --apply installs (iptables-restore input for a nat table without our rules)\n${renderRuleset(options, family)}`);
    return;
  }
  for (const family of FAMILIES) {
    const outcome = mode === 'apply' && options ? applyRules(options, family) : cleanupRules(family);
    const what = mode === 'apply' ? (outcome === 'changed' ? 'installed' : 'already installed, unchanged') : outcome === 'changed' ? 'removed' : 'none present';
    process.stdout.write(`pillion iptables: ${NAME[family]} interception rules ${what}\n`);
  }
  if (mode === 'cleanup') return removePassthroughSourceV6();
  // Not fatal: everything works without it but IPv6 connections to ports the service does not declare.
  const problem = addPassthroughSourceV6();
  if (problem !== undefined) process.stderr.write(`pillion iptables: cannot add ::6/128 to lo (${problem}): IPv6 connections to ports the service does not declare will be closed\n`);
}
