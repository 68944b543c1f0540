// Finds the external tools the benchmark compares against, installing missing ones with apt-get (Debian).
// `apt-get update` runs at most once, only after an install failed without it. A tool that cannot be had
// is reported as missing with the reason; the bench then skips what needs it instead of failing.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export interface ToolStatus {
  bin: string;
  pkg: string;
  path?: string;
  /** Set when the tool is unavailable. */
  missing?: string;
  installed?: boolean;
}

export function which(bin: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/usr/bin', '/sbin', '/usr/local/bin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

let updated = false;

function aptGet(args: string[], log: (s: string) => void): boolean {
  const r = spawnSync('apt-get', args, {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 300_000,
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    const tail = `${r.stderr ?? ''}${r.error?.message ?? ''}`.trim().split('\n').slice(-2).join(' | ');
    log(`apt-get ${args.join(' ')} failed: ${tail}`);
  }
  return r.status === 0;
}

/** Makes each tool available if possible. `log` receives one line per action taken. */
export function ensureTools(
  wanted: Array<{ bin: string; pkg: string }>,
  log: (s: string) => void,
  install = true,
): ToolStatus[] {
  const out: ToolStatus[] = [];
  const toInstall = install ? wanted.filter((w) => !which(w.bin)) : [];
  const canApt = which('apt-get') !== undefined && process.getuid?.() === 0;
  if (toInstall.length > 0) {
    if (!canApt) {
      log(`cannot install ${toInstall.map((t) => t.pkg).join(', ')}: apt-get unavailable or not root`);
    } else {
      for (const t of toInstall) {
        log(`installing ${t.pkg} (for ${t.bin}) with apt-get`);
        let ok = aptGet(['install', '-y', '--no-install-recommends', t.pkg], log);
        if (!ok && !updated) {
          updated = true;
          log('running apt-get update once, then retrying');
          aptGet(['update'], log);
          ok = aptGet(['install', '-y', '--no-install-recommends', t.pkg], log);
        }
      }
    }
  }
  for (const w of wanted) {
    const path = which(w.bin);
    const status: ToolStatus = { bin: w.bin, pkg: w.pkg };
    if (path) {
      status.path = path;
      status.installed = toInstall.includes(w);
    } else {
      status.missing = !install ? 'not installed (--no-install)' : canApt ? `apt-get install ${w.pkg} did not provide ${w.bin}` : 'not installed and apt-get unavailable';
    }
    out.push(status);
  }
  return out;
}

/** Makes a file that a package provides exist (e.g. nginx's dynamic stream module); false when it cannot. */
export function ensurePackageFile(path: string, pkg: string, log: (s: string) => void, install = true): boolean {
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    /* install below */
  }
  if (!install || which('apt-get') === undefined || process.getuid?.() !== 0) return false;
  log(`installing ${pkg} (for ${path}) with apt-get`);
  let ok = aptGet(['install', '-y', '--no-install-recommends', pkg], log);
  if (!ok && !updated) {
    updated = true;
    log('running apt-get update once, then retrying');
    aptGet(['update'], log);
    ok = aptGet(['install', '-y', '--no-install-recommends', pkg], log);
  }
  try {
    accessSync(path, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}
