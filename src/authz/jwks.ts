// JSON Web Key Sets for JWT verification, from inline JSON, a file or a URL. Remote and file sets are cached and
// refreshed in the background while the old keys keep serving; a failed load is retried after a pause, never in a
// loop per request. A fetch is bounded in time (the whole response, so a server that trickles bytes is cut too)
// and in size: a JWKS is a few KiB, and a huge or endless body must cost neither memory nor a hang.
import { open } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';
import type { JwksSourceModel } from './model.js';

/** The largest JWKS read (bytes), from a file or a URL. */
export const MAX_JWKS_BYTES = 1024 * 1024;
/** The most keys a set may hold. */
export const MAX_JWKS_KEYS = 100;
/** After a failed load, the next attempt waits this long (Envoy's failed_refetch_duration default is 1 s). */
export const JWKS_RETRY_MS = 1_000;
/** A file's keys are read again at most this often (an edited file is picked up without a config push). */
const FILE_RECHECK_MS = 10_000;
/** Sets kept; the key set of the cache is bounded by config, this bounds it anyway. */
const MAX_ENTRIES = 256;

export class JwksUnavailable extends Error {}

/** Parses and checks a JWKS document; throws JwksUnavailable with why. */
export function parseJwks(text: string): JWTVerifyGetKey {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new JwksUnavailable('not JSON');
  }
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new JwksUnavailable('no "keys" list');
  if (keys.length > MAX_JWKS_KEYS) throw new JwksUnavailable(`${keys.length} keys, more than ${MAX_JWKS_KEYS}`);
  try {
    return createLocalJWKSet(doc as JSONWebKeySet);
  } catch (err) {
    throw new JwksUnavailable((err as Error).message);
  }
}

/** GET `uri` within `timeoutMs` (the whole exchange), status 200, body at most MAX_JWKS_BYTES. */
export function fetchJwksText(uri: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const get = uri.startsWith('https:') ? https.get : http.get;
    let settled = false;
    const fail = (why: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new JwksUnavailable(why));
    };
    const req = get(uri, { headers: { accept: 'application/json' } }, (res) => {
      if (res.statusCode !== 200) return fail(`HTTP status ${res.statusCode}`);
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > MAX_JWKS_BYTES) return fail(`body of ${declared} bytes, more than ${MAX_JWKS_BYTES}`);
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_JWKS_BYTES) return fail(`body larger than ${MAX_JWKS_BYTES} bytes`);
        chunks.push(chunk);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
      res.on('error', (err) => fail(err.message));
      res.on('aborted', () => fail('response aborted'));
    });
    req.on('error', (err) => fail(err.message));
    const timer = setTimeout(fail, timeoutMs, `no complete response within ${timeoutMs} ms`);
  });
}

async function readJwksFile(path: string): Promise<string> {
  let file;
  try {
    file = await open(path, 'r');
  } catch (err) {
    throw new JwksUnavailable((err as Error).message);
  }
  try {
    const { size } = await file.stat();
    if (size > MAX_JWKS_BYTES) throw new JwksUnavailable(`${path}: ${size} bytes, more than ${MAX_JWKS_BYTES}`);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await file.read(buf, 0, size, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await file.close();
  }
}

export interface JwksLoadReport {
  /** A load of a file or URL ended (ok or not), for counters and a rate-limited warning. */
  (source: JwksSourceModel, ok: boolean, detail: string): void;
}

class Entry {
  keys: JWTVerifyGetKey | null = null;
  /** When the keys are due for a refresh. */
  freshUntil = 0;
  /** No new load before this after a failure. */
  retryAt = 0;
  lastError = '';
  loading: Promise<void> | null = null;

  constructor(readonly source: JwksSourceModel) {}

  private refreshMs(): number {
    const s = this.source;
    return s.kind === 'remote' ? s.cacheMs : s.kind === 'file' ? FILE_RECHECK_MS : Number.MAX_SAFE_INTEGER;
  }

  load(report: JwksLoadReport, now: () => number): Promise<void> {
    if (this.loading === null) this.loading = this.doLoad(report, now);
    return this.loading;
  }

  private async doLoad(report: JwksLoadReport, now: () => number): Promise<void> {
    const s = this.source;
    try {
      const text = s.kind === 'inline' ? s.json : s.kind === 'file' ? await readJwksFile(s.path) : await fetchJwksText(s.uri, s.timeoutMs);
      this.keys = parseJwks(text);
      this.freshUntil = now() + this.refreshMs();
      this.lastError = '';
      if (s.kind !== 'inline') report(s, true, '');
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.retryAt = now() + JWKS_RETRY_MS;
      report(s, false, this.lastError);
    } finally {
      this.loading = null;
    }
  }
}

/**
 * The cache key of a source model, made once per model: built per request it concatenated (and hashed) a whole
 * inline JWKS for every token checked. Keyed by content, so a config rebuild's new models find the old keys.
 */
const KEYS = new WeakMap<JwksSourceModel, string>();

/** JWKS by source, shared by the filters of a process (keys are public data; a config rebuild keeps them). */
export class JwksCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The keys of `source`: cached ones at once (a due refresh runs in the background), else after a load.
   * Throws JwksUnavailable when there are none (the load failed, or failed lately and waits to be retried).
   */
  async keys(source: JwksSourceModel, report: JwksLoadReport): Promise<JWTVerifyGetKey> {
    const entry = this.entryOf(source);
    const nowMs = this.now();
    if (entry.keys !== null) {
      // load() settles every failure itself; the catch only satisfies the rule that no promise floats.
      if (nowMs >= entry.freshUntil && nowMs >= entry.retryAt) entry.load(report, this.now).catch(ignore);
      return entry.keys;
    }
    if (nowMs >= entry.retryAt) await entry.load(report, this.now);
    if (entry.keys === null) throw new JwksUnavailable(entry.lastError || 'not loaded');
    return entry.keys;
  }

  private entryOf(source: JwksSourceModel): Entry {
    let key = KEYS.get(source);
    if (key === undefined) {
      key = source.kind === 'remote' ? `remote ${source.uri} ${source.timeoutMs} ${source.cacheMs}` : source.kind === 'file' ? `file ${source.path}` : `inline ${source.json}`;
      KEYS.set(source, key);
    }
    let entry = this.entries.get(key);
    if (entry === undefined) {
      if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
      entry = new Entry(source);
      this.entries.set(key, entry);
    }
    return entry;
  }
}

export const JWKS_CACHE = new JwksCache();

function ignore(): void {}
