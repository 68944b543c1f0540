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
