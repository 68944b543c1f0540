// App logger: JSON lines, level filtering and runtime level changes.
import { describe, expect, it } from 'vitest';
import { createLogger, isLogLevel, setLevel } from './logger.js';

function sink() {
  const lines: Record<string, unknown>[] = [];
  return { lines, stream: { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) } };
}

describe('logger', () => {
  it('writes JSON lines at or above its level', () => {
    const s = sink();
    const log = createLogger('info', s.stream);
    log.debug('hidden');
    log.info({ port: 15001 }, 'listening');
    expect(s.lines).toHaveLength(1);
    expect(s.lines[0]).toMatchObject({ level: 30, msg: 'listening', port: 15001 });
  });

  it('changes level at runtime and rejects unknown levels', () => {
    const s = sink();
    const log = createLogger('warn', s.stream);
    log.info('no');
    expect(setLevel(log, 'debug')).toBe(true);
    log.debug('yes');
    expect(setLevel(log, 'verbose')).toBe(false);
    expect(log.level).toBe('debug');
    expect(s.lines.map((l) => l.msg)).toEqual(['yes']);
    expect(isLogLevel('trace')).toBe(true);
    expect(createLogger('nonsense', s.stream).level).toBe('info');
  });
});
