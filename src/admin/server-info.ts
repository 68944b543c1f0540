// /server_info as Envoy's envoy.admin.v3.ServerInfo (proto3 JSON): what tooling reads to learn which proxy, in
// which state, up for how long, started how. Pillion has no hot restart, so both uptimes are the same.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AdminSource } from './types.js';

let version: string | undefined;

/** Our package version; the file runs from src/admin (tests) or dist/src/admin (build), so walk up to package.json. */
function packageVersion(): string {
  if (version !== undefined) return version;
  version = 'unknown';
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pillion' && typeof pkg.version === 'string') {
        version = pkg.version;
        break;
      }
    }
    dir = dirname(dir);
  }
  return version;
}

/**
 * Envoy's version string is `<commit>/<version>/<Clean|Modified>/<RELEASE|DEBUG>/<TLS library>`; tools take the
 * second field as the version, so ours keeps that position: `pillion/<version>/node-<v>/RELEASE/OpenSSL-<v>`.
 */
export function versionString(): string {
  return `pillion/${packageVersion()}/node-${process.versions.node}/RELEASE/OpenSSL-${process.versions.openssl}`;
}

export function serverInfo(source: AdminSource, nowMs: number): Record<string, unknown> {
  // Whole seconds, as Envoy prints uptimes ("12s"): a valid proto3 Duration that scripts parse as an integer.
  const uptime = `${Math.max(0, Math.floor((nowMs - source.startedAtMs) / 1000))}s`;
  const { node, commandLineOptions } = source.identity();
  return {
    version: versionString(),
    state: source.state(),
    hot_restart_version: 'disabled',
    command_line_options: { ...commandLineOptions, restart_epoch: 0, disable_hot_restart: true, mode: 'Serve', concurrency: source.concurrency ?? 1 },
    node: { id: node.id, cluster: node.cluster, metadata: node.metadata, user_agent_name: 'pillion', user_agent_version: packageVersion() },
    uptime_current_epoch: uptime,
    uptime_all_epochs: uptime,
  };
}
