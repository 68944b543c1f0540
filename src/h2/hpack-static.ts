// The HPACK static table (RFC 7541 Appendix A): names and values as prebuilt strings, so an indexed field
// allocates nothing, plus the encoder's lookup (name -> first index; entries of one name are contiguous).

/** Index 1..61; slot 0 unused. */
export const STATIC_NAMES: readonly string[] = [
  '',
  ':authority', ':method', ':method', ':path', ':path', ':scheme', ':scheme', ':status', ':status', ':status',
  ':status', ':status', ':status', ':status', 'accept-charset', 'accept-encoding', 'accept-language',
  'accept-ranges', 'accept', 'access-control-allow-origin', 'age', 'allow', 'authorization', 'cache-control',
  'content-disposition', 'content-encoding', 'content-language', 'content-length', 'content-location',
  'content-range', 'content-type', 'cookie', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match',
  'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified', 'link', 'location',
  'max-forwards', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer', 'refresh', 'retry-after',
  'server', 'set-cookie', 'strict-transport-security', 'transfer-encoding', 'user-agent', 'vary', 'via',
  'www-authenticate',
];

export const STATIC_VALUES: readonly string[] = [
  '',
  '', 'GET', 'POST', '/', '/index.html', 'http', 'https', '200', '204', '206', '304', '400', '404', '500', '',
  'gzip, deflate',
];
while ((STATIC_VALUES as string[]).length < 62) (STATIC_VALUES as string[]).push('');

export const STATIC_COUNT = 61;

/** Name -> lowest static index with that name. */
export const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_COUNT; i >= 1; i--) STATIC_NAME_INDEX.set(STATIC_NAMES[i]!, i);
