// Checks murmur3_32 against published vectors and a byte-buffer reference for non-ASCII text.
import { describe, expect, it } from 'vitest';
import { combineHashes, hashString } from './hash.js';

function reference(bytes: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const n = bytes.length;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = n & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= bytes[blocks + 2]! << 16;
    if (rest >= 2) k ^= bytes[blocks + 1]! << 8;
    k ^= bytes[blocks]!;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

describe('hashString (murmur3_32)', () => {
  it('matches published vectors', () => {
    expect(hashString('')).toBe(0);
    expect(hashString('', 0, 0, 1)).toBe(0x514e28b7);
    expect(hashString('hello')).toBe(0x248bfa47);
    expect(hashString('The quick brown fox jumps over the lazy dog')).toBe(0x2e4ff723);
  });

  it('hashes UTF-8 bytes like a buffer-based reference', () => {
    for (const s of ['é', '€uro', '😀 smile', 'a\u0800b', 'lone \ud800 surrogate', '10.0.0.1:8080_17']) {
      expect(hashString(s)).toBe(reference(new TextEncoder().encode(s)));
    }
  });

  it('hashes a substring in place', () => {
    expect(hashString('xxhelloyy', 2, 7)).toBe(hashString('hello'));
  });

  it('combines like Envoy (rotate left 1, xor)', () => {
    expect(combineHashes(0x80000001, 0)).toBe(0x00000003);
    expect(combineHashes(1, 1)).toBe(3);
  });
});
