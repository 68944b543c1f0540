// Runs the distribution's iptables-save / iptables-restore (and the ip6tables pair) in the current network
// namespace, to apply or remove the rules that src/intercept/iptables-rules.ts computes.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { applyPlan, cleanupPlan, INBOUND_PASSTHROUGH_SOURCE_V6, type Family, type InterceptOptions } from './iptables-rules.js';

const TOOLS: Record<Family, { save: string; restore: string }> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

export class IptablesError extends Error {
  override name = 'IptablesError';
}

/** The binary's path: PATH first, then the sbin folders a non-login shell's PATH often lacks. */
export function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const file = join(dir, name);
    if (existsSync(file)) return file;
  }
  return undefined;
}

function run(name: string, args: string[], input?: string): string {
  const file = findTool(name);
  if (file === undefined) throw new IptablesError(`${name} not found (install the iptables package; Debian: apt-get install iptables)`);
  const res = spawnSync(file, args, { input, encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
  if (res.error) throw new IptablesError(`${name}: ${res.error.message}`);
  if (res.status !== 0) {
    const detail = (res.stderr || res.stdout).trim().slice(0, 2048);
    throw new IptablesError(`${name} ${args.join(' ')} exited ${res.status ?? res.signal}: ${detail}${input ? `\ninput was:\n${input}` : ''}`);
  }
  return res.stdout;
}

/** The current nat table of this namespace, as `iptables-save -t nat` prints it. */
export function saveNat(family: Family): string {
  return run(TOOLS[family].save, ['-t', 'nat']);
}

export type Outcome = 'changed' | 'unchanged';

/** Installs our rules for one family; 'unchanged' when they were already exactly there. */
export function applyRules(o: InterceptOptions, family: Family): Outcome {
  const plan = applyPlan(o, family, saveNat(family));
  if (plan === undefined) return 'unchanged';
  run(TOOLS[family].restore, ['--noflush'], plan);
  return 'changed';
}

const PASSTHROUGH_V6 = `${INBOUND_PASSTHROUGH_SOURCE_V6}/128`;

/**
 * Puts ::6 on lo, the inbound passthrough's IPv6 source (127.0.0.6 is loopback already, ::6 is not); idempotent.
 * Returns why it could not (no `ip`, IPv6 disabled): the proxy then closes IPv6 connections to undeclared ports.
 */
export function addPassthroughSourceV6(): string | undefined {
  const ip = findTool('ip');
  if (ip === undefined) return 'ip not found (Debian: apt-get install iproute2)';
  const res = spawnSync(ip, ['-6', 'addr', 'replace', PASSTHROUGH_V6, 'dev', 'lo'], { encoding: 'utf8', timeout: 10_000 });
  if (res.error) return res.error.message;
  return res.status === 0 ? undefined : (res.stderr || `exited ${res.status ?? res.signal}`).trim().slice(0, 512);
}

/** Takes ::6 off lo again (--cleanup); nothing when it is not there. */
export function removePassthroughSourceV6(): void {
  const ip = findTool('ip');
  if (ip === undefined) return;
  const shown = spawnSync(ip, ['-6', 'addr', 'show', 'dev', 'lo'], { encoding: 'utf8', timeout: 10_000 });
  if (shown.status !== 0 || !shown.stdout.includes(` ${PASSTHROUGH_V6} `)) return;
  spawnSync(ip, ['-6', 'addr', 'del', PASSTHROUGH_V6, 'dev', 'lo'], { timeout: 10_000 });
}

/** Removes our jumps and chains for one family; 'unchanged' when there were none. */
export function cleanupRules(family: Family): Outcome {
  const plan = cleanupPlan(saveNat(family));
  if (plan === undefined) return 'unchanged';
  run(TOOLS[family].restore, ['--noflush'], plan);
  return 'changed';
}
