import { describe, expect, it } from 'vitest';
import { headerMapFromFlat, HeaderNames } from './h1-parser.js';
import { HOP_BY_HOP } from './headers.js';

const NAMES = ['Host', 'host', 'HOST', 'Content-Length', 'content-length', 'Connection', 'Set-Cookie', 'set-cookie', 'X-Trace', 'Transfer-Encoding', 'TE', 'Keep-Alive', 'Date'];

/** A deterministic pseudo-random sequence (no Math.random: a failure must replay). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** Fresh strings, as the parser hands over: equal text, distinct string objects. */
function fresh(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

function head(rand: () => number, lines: number): string[] {
  const flat: string[] = [];
  for (let i = 0; i < lines; i++) {
    const name = NAMES[Math.floor(rand() * NAMES.length)]!;
    // Numbers for content-length (what contentLength reads), now and then one that is not.
    const value = name.toLowerCase() === 'content-length' && rand() < 0.8 ? String(i * 1000) : `v${i}`;
    flat.push(fresh(name), fresh(value));
  }
  return flat;
}

/** What the upstream pool scanned each response head for before HeaderNames noted it. */
function contentLengthByScan(lines: string[]): number {
  let length = -1;
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]!.toLowerCase();
    if (name === 'content-length') length = Number(lines[i + 1]);
    else if (name === 'transfer-encoding') return -1;
  }
  return Number.isSafeInteger(length) ? length : -1;
}

function firstKeepAliveByScan(lines: string[]): number {
  for (let i = 0; i < lines.length; i += 2) if (lines[i]!.toLowerCase() === 'keep-alive') return i;
  return -1;
}

describe('HeaderNames', () => {
  for (const drop of [null, HOP_BY_HOP]) {
    it(`makes the same map as headerMapFromFlat and notes framing lines, head after head (drop: ${drop === null ? 'none' : 'hop-by-hop'})`, () => {
      const rand = lcg(7);
      const memo = new HeaderNames(drop);
      let previous: string[] = [];
      for (let n = 0; n < 400; n++) {
        // Mostly the previous head again (the memo's hits), sometimes a new one, sometimes longer than it remembers.
        const r = rand();
        const flat = r < 0.6 && previous.length > 0 ? previous.map(fresh) : head(rand, r < 0.95 ? Math.floor(rand() * 12) : 60);
        previous = flat;
        const expected = headerMapFromFlat(flat, drop);
        const got = memo.map(flat);
        expect(Object.keys(got)).toEqual(Object.keys(expected));
        expect({ ...got }).toEqual({ ...expected });
        expect(Object.getPrototypeOf(got)).toBe(Object.getPrototypeOf(expected));
        // What map() notes of the head, dropped names (keep-alive, transfer-encoding) included.
        expect(memo.contentLength(flat)).toBe(contentLengthByScan(flat));
        expect(memo.keepAliveAt).toBe(firstKeepAliveByScan(flat));
      }
    });
  }
});
