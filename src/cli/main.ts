#!/usr/bin/env -S node --max-semi-space-size=2 --single-threaded-gc --v8-pool-size=1 --disable-warning=DEP0123
// The `pillion` executable: one binary, several commands (see DESIGN.md §3).
import { PROXY_USAGE, UsageError } from '../bootstrap/args.js';
import { MeshConfigError } from '../../xds/mesh-config.js';

const USAGE = `usage: pillion <command> [flags]

commands:
  proxy     run a sidecar proxy (pillion proxy --help)
  control   run the xDS control server for a mesh config (pillion control --help)
  token     mint a bootstrap token a proxy uses to get its certificate (pillion token --help)
  demo      run a whole demo mesh on this machine (npm start)
  iptables  print, install or remove the interception rules of this network namespace (pillion iptables --help)
  inject    add the sidecar to Kubernetes manifests (pillion inject --help)
  wait-ready, drain  the sidecar's Kubernetes hooks: wait for /ready, drain before SIGTERM
  ctl       show a proxy's clusters, listeners, routes, config or stats, or a control server's proxies (pillion ctl --help)
`;

const DEMO_USAGE = `usage: pillion demo [--duration SEC] [--rate REQ_PER_SEC] [--base-port N] [--verbose]
`;

const wantsHelp = (args: string[]): boolean => args.includes('--help') || args.includes('-h');

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'proxy': {
      if (wantsHelp(rest)) return void process.stdout.write(`${PROXY_USAGE}\n`);
      const { runProxyCommand } = await import('./proxy-command.js');
      return runProxyCommand(rest);
    }
    case 'control': {
      const { runControlCommand } = await import('./control-command.js');
      return runControlCommand(rest);
    }
    case 'token': {
      const { runTokenCommand } = await import('./token-command.js');
      return runTokenCommand(rest);
    }
    case 'iptables': {
      const { runIptablesCommand, IPTABLES_USAGE } = await import('./iptables-command.js');
      if (wantsHelp(rest)) return void process.stdout.write(`${IPTABLES_USAGE}\n`);
      return runIptablesCommand(rest);
    }
    case 'inject': {
      const { runInjectCommand, INJECT_USAGE } = await import('./inject-command.js');
      if (wantsHelp(rest)) return void process.stdout.write(`${INJECT_USAGE}\n`);
      return runInjectCommand(rest);
    }
    case 'wait-ready': {
      const { runWaitReadyCommand, WAIT_READY_USAGE } = await import('./lifecycle-command.js');
      if (wantsHelp(rest)) return void process.stdout.write(`${WAIT_READY_USAGE}\n`);
      return runWaitReadyCommand(rest);
    }
    case 'drain': {
      const { runDrainCommand, DRAIN_USAGE } = await import('./lifecycle-command.js');
      if (wantsHelp(rest)) return void process.stdout.write(`${DRAIN_USAGE}\n`);
      return runDrainCommand(rest);
    }
    case 'ctl': {
      const { runCtlCommand, CTL_USAGE } = await import('./ctl.js');
      if (wantsHelp(rest)) return void process.stdout.write(CTL_USAGE);
      return runCtlCommand(rest);
    }
    case 'demo': {
      if (wantsHelp(rest)) return void process.stdout.write(DEMO_USAGE);
      const { runDemoCommand } = await import('./demo.js');
      try {
        return await runDemoCommand(rest);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`${(err as Error).message}\n${DEMO_USAGE}`);
        throw err;
      }
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      throw new UsageError(`unknown command "${command}"\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError || err instanceof MeshConfigError) {
    process.stderr.write(`pillion: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`pillion: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
