// `pillion demo` end to end: control server, five apps with their sidecars, traffic, summary, clean exit.
import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { MAIN } from '../helpers/process.js';

describe('pillion demo', () => {
  it('runs the mesh through the control server, reports traffic, and stops cleanly', async () => {
    const child = spawn(process.execPath, [MAIN, 'demo', '--duration', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(code).toBe(0);
    const final = out.split('\n').find((l) => l.startsWith('stopping (duration); final:'));
    expect(final, out).toBeDefined();
    const ok = Number(/ ok=(\d+)/.exec(final!)?.[1]);
    expect(ok).toBeGreaterThan(20);
    // All three backend endpoints took traffic through the frontend's sidecar.
    expect(final).toMatch(/backend-1=\d/);
    expect(final).toMatch(/backend-3=\d/);
  }, 60_000);
});
