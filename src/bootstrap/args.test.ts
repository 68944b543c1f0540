import { describe, expect, it } from 'vitest';
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
