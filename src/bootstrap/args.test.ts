import { describe, expect, it } from 'vitest';
import { parseControlArgs } from '../cli/control-command.js';
import { parseProxyArgs, UsageError } from './args.js';

describe('parseProxyArgs --idle-memory-release', () => {
  const base = ['--service', 'web', '--config', 'mesh.yaml'];

  it('is on unless turned off', () => {
    expect(parseProxyArgs(base).idleMemoryRelease).toBe(true);
    expect(parseProxyArgs([...base, '--idle-memory-release', 'off']).idleMemoryRelease).toBe(false);
  });

  it('rejects anything but on or off', () => {
    expect(() => parseProxyArgs([...base, '--idle-memory-release', 'yes'])).toThrow(UsageError);
    expect(() => parseProxyArgs([...base, '--idle-memory-release', 'yes'])).toThrow(/expected on or off, got "yes"/);
  });
});

describe('pillion control --idle-memory-release', () => {
  it('is on unless turned off, and rejects other values', () => {
    expect(parseControlArgs(['--config', 'mesh.yaml'])).toMatchObject({ idleMemoryRelease: true });
    expect(parseControlArgs(['--config', 'mesh.yaml', '--idle-memory-release', 'off'])).toMatchObject({ idleMemoryRelease: false });
    expect(() => parseControlArgs(['--config', 'mesh.yaml', '--idle-memory-release', '1'])).toThrow(/expected on or off, got "1"/);
  });
});

describe('parseProxyArgs --concurrency', () => {
  const base = ['--service', 'web', '--config', 'mesh.yaml'];

  it('is 1 unless given, and takes 1-64', () => {
    expect(parseProxyArgs(base).concurrency).toBe(1);
    expect(parseProxyArgs([...base, '--concurrency', '2']).concurrency).toBe(2);
    expect(() => parseProxyArgs([...base, '--concurrency', '0'])).toThrow(/--concurrency: expected a whole number 1-64, got "0"/);
    expect(() => parseProxyArgs([...base, '--concurrency', '65'])).toThrow(UsageError);
    expect(() => parseProxyArgs([...base, '--concurrency', 'auto'])).toThrow(UsageError);
  });
});

describe('parseProxyArgs --status-port', () => {
  const base = ['--service', 'web', '--config', 'mesh.yaml'];

  it('is off unless given, and takes a port (0 = pick one)', () => {
    expect(parseProxyArgs(base).statusPort).toBeUndefined();
    expect(parseProxyArgs([...base, '--status-port', '15020']).statusPort).toBe(15020);
    expect(parseProxyArgs([...base, '--status-port', '0']).statusPort).toBe(0);
    expect(() => parseProxyArgs([...base, '--status-port', '65536'])).toThrow(/--status-port: expected a port number 0-65535, got "65536"/);
    expect(() => parseProxyArgs([...base, '--status-port', 'http'])).toThrow(UsageError);
  });
});
