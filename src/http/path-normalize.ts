// Request path normalization before routing and authorization, as Envoy's `normalize_path` (Istio's default BASE
// normalization) does it: an app that resolves `/public/../admin`, `/%61dmin` or `/admin#x` to `/admin` must not
// get such a request past a path rule that saw it otherwise. Shared by HTTP/1.1, HTTP/2 and Upgrade.
//   - percent-encoded unreserved characters (RFC 3986 §2.3) are decoded; other escapes are kept as sent
//     (`%2F` stays: merge_slashes false, path_with_escaped_slashes KEEP_UNCHANGED); `%00` is refused;
//   - `\` is `/` (as Envoy's canonicalizer has it: apps on some stacks treat it so);
//   - dot segments are removed (RFC 3986 §5.2.4), `..` above the root clamped there;
//   - the fragment is dropped (Envoy's default); the query is left alone.
// A malformed escape (`%zz`, `%4`) is passed on as sent, as Envoy does: it decodes to nothing a rule could miss.

/** The normalized request-target; the same string when nothing changes; null for a `%00` in the path (400). */
export function normalizePath(target: string): string | null {
  // Origin-form only: asterisk-form and anything else are no path a rule names.
  if (target.charCodeAt(0) !== 47 /* '/' */) return target;
  // The common case costs one scan and allocates nothing.
  const n = target.length;
  let i = 0;
  for (; i < n; i++) {
    const c = target.charCodeAt(i);
    if (c === 37 /* % */ || c === 92 /* \ */ || c === 35 /* # */) break;
    if (c === 47 /* / */ && target.charCodeAt(i + 1) === 46 /* . */) break;
    if (c === 63 /* ? */) {
      const hash = target.indexOf('#', i + 1);
      return hash < 0 ? target : target.slice(0, hash);
    }
  }
  if (i === n) return target;
  return normalizeSlow(target);
}

function normalizeSlow(target: string): string | null {
  const hash = target.indexOf('#');
  if (hash >= 0) target = target.slice(0, hash);
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  let decoded = '';
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 92 /* \ */) {
      decoded += '/';
    } else if (c === 37 /* % */) {
      const hi = hexValue(path.charCodeAt(i + 1));
      const lo = hexValue(path.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) {
        decoded += '%';
        continue;
      }
      const v = hi * 16 + lo;
      if (v === 0) return null;
      decoded += isUnreserved(v) ? String.fromCharCode(v) : path.slice(i, i + 3);
      i += 2;
    } else {
      decoded += path[i];
    }
  }
  const normalized = removeDotSegments(decoded);
  return q < 0 ? normalized : normalized + target.slice(q);
}

/** RFC 3986 §5.2.4 on an absolute path: `.` dropped, `..` drops the segment before (none above the root). */
function removeDotSegments(path: string): string {
  if (path.indexOf('/.') < 0) return path;
  const segments = path.split('/');
  const out: string[] = [];
  // A path ending in a dot segment names a directory: `/a/b/..` is `/a/`.
  let trailing = false;
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      trailing = true;
    } else {
      out.push(s);
      trailing = false;
    }
  }
  return '/' + out.join('/') + (trailing && out.length > 0 ? '/' : '');
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** ALPHA / DIGIT / "-" / "." / "_" / "~" */
function isUnreserved(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126;
}

/** The detail of the 400 a path that cannot be normalized gets. */
export const INVALID_PATH = 'the request path cannot be normalized (a NUL percent-encoding)';
