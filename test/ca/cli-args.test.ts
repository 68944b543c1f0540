// The CA's flags on `pillion control`: defaults, bounds, and the flags that make no sense without --ca-dir.
import { describe, expect, it } from 'vitest';
import { parseControlArgs } from '../../src/cli/control-command.js';
import { UsageError } from '../../src/bootstrap/args.js';

describe('pillion control CA flags', () => {
  it('has no CA and no TLS port without --ca-dir', () => {
    expect(parseControlArgs(['--config', 'm.yaml'])).not.toHaveProperty('ca');
  });

  it('defaults to the TLS port 15012 and 24 h certificates', () => {
    expect(parseControlArgs(['--config', 'm.yaml', '--ca-dir', '/var/lib/pillion/ca'])).toMatchObject({
      ca: { dir: '/var/lib/pillion/ca', securePort: 15012, certTtlMs: 24 * 3600_000 },
    });
  });

  it('takes --secure-port and --cert-ttl down to seconds', () => {
    expect(parseControlArgs(['--config', 'm.yaml', '--ca-dir', 'ca', '--secure-port', '0', '--cert-ttl', '5m'])).toMatchObject({
      ca: { securePort: 0, certTtlMs: 300_000 },
    });
  });

  it.each([
    [['--secure-port', '15012'], /need --ca-dir/],
    [['--cert-ttl', '1h'], /need --ca-dir/],
    [['--ca-dir', 'ca', '--cert-ttl', '100ms'], /--cert-ttl: expected a duration from 1s/],
    [['--ca-dir', 'ca', '--cert-ttl', '2161h'], /--cert-ttl/],
    [['--ca-dir', 'ca', '--cert-ttl', 'soon'], /--cert-ttl/],
  ])('refuses %j', (extra, message) => {
    expect(() => parseControlArgs(['--config', 'm.yaml', ...extra])).toThrow(UsageError);
    expect(() => parseControlArgs(['--config', 'm.yaml', ...extra])).toThrow(message);
  });
});
