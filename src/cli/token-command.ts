// `pillion token`: mint a bootstrap token for one workload identity, signed with the token key of --ca-dir (created
// there if the control server has not started yet). It goes to stdout alone, so `> web.token` makes the file a
// proxy reads with --token.
import { parseArgs } from 'node:util';
import { UsageError } from '../bootstrap/args.js';
import { parseDuration } from '../../xds/mesh-config.js';
import { DEFAULT_TOKEN_TTL_MS, MAX_TOKEN_TTL_MS, loadOrCreateTokenKey, mintToken, validName } from '../../xds/ca/token.js';

export const TOKEN_USAGE = `usage: pillion token --ca-dir DIR --namespace NS --service-account NAME [--ttl 24h]
  prints a bootstrap token: whoever holds it may obtain certificates for spiffe://<trust domain>/ns/NS/sa/NAME
  until it expires. A proxy renews with its certificate, so the token is needed again only after an outage
  longer than the certificate's life.`;

export function runTokenCommand(argv: string[]): void {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'ca-dir': { type: 'string' },
        namespace: { type: 'string' },
        'service-account': { type: 'string' },
        ttl: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${TOKEN_USAGE}`);
  }
  if (values.help) {
    process.stdout.write(`${TOKEN_USAGE}\n`);
    return;
  }
  const dir = values['ca-dir'];
  const namespace = values.namespace;
  const serviceAccount = values['service-account'];
  if (!dir || !namespace || !serviceAccount) throw new UsageError(`--ca-dir, --namespace and --service-account are required\n${TOKEN_USAGE}`);
  for (const [flag, name] of [['namespace', namespace], ['service-account', serviceAccount]] as const) {
    if (!validName(name)) throw new UsageError(`--${flag}: expected a lowercase DNS name (a-z, 0-9, '-', '.'), got "${name}"`);
  }
  let ttlMs = DEFAULT_TOKEN_TTL_MS;
  if (values.ttl !== undefined) {
    const ms = parseDuration(values.ttl);
    if (ms === undefined || ms < 1000 || ms > MAX_TOKEN_TTL_MS) throw new UsageError(`--ttl: expected a duration from 1s to 8784h (366 days), got "${values.ttl}"`);
    ttlMs = ms;
  }
  const key = loadOrCreateTokenKey(dir);
  process.stdout.write(`${mintToken(key, { namespace, serviceAccount }, ttlMs, Date.now())}\n`);
}
