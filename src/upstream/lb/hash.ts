// MurmurHash3 x86_32 over a string's UTF-8 bytes: the fast, allocation-free hash behind ring-hash entries and request keys.

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/**
 * murmur3_32 of the UTF-8 encoding of `s.slice(start, end)`, without building that slice or a byte buffer
 * (bytes are fed one at a time into a 4-byte block), so cookie values can be hashed in place.
 */
export function hashString(s: string, start = 0, end = s.length, seed = 0): number {
  let h = seed >>> 0;
  let block = 0;
  let filled = 0; // bytes in `block`
  let total = 0;
  for (let i = start; i < end; i++) {
    let c = s.charCodeAt(i);
    // UTF-8 encode in place; a lone surrogate becomes U+FFFD, as TextEncoder would.
    let bytes: number;
    let cp = c;
    if (c < 0x80) bytes = 1;
    else if (c < 0x800) bytes = 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < end && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      cp = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00);
      bytes = 4;
    } else {
      if (c >= 0xd800 && c <= 0xdfff) cp = 0xfffd;
      bytes = 3;
    }
    for (let k = 0; k < bytes; k++) {
      if (bytes === 1) c = cp;
      else if (k === 0) c = (bytes === 2 ? 0xc0 : bytes === 3 ? 0xe0 : 0xf0) | (cp >>> (6 * (bytes - 1)));
      else c = 0x80 | ((cp >>> (6 * (bytes - 1 - k))) & 0x3f);
      block |= (c & 0xff) << (8 * filled);
      total++;
      if (++filled === 4) {
        let k1 = Math.imul(block, C1);
        k1 = (k1 << 15) | (k1 >>> 17);
        k1 = Math.imul(k1, C2);
        h ^= k1;
        h = (h << 13) | (h >>> 19);
        h = (Math.imul(h, 5) + 0xe6546b64) | 0;
        block = 0;
        filled = 0;
      }
    }
  }
  if (filled > 0) {
    let k1 = Math.imul(block, C1);
    k1 = (k1 << 15) | (k1 >>> 17);
    k1 = Math.imul(k1, C2);
    h ^= k1;
  }
  h ^= total;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Envoy's way of folding several hash-policy results into one key: rotate left by one, then xor. */
export function combineHashes(acc: number, next: number): number {
  return (((acc << 1) | (acc >>> 31)) ^ next) >>> 0;
}
