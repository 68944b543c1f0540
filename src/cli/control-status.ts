// The control server's /proxies document (xds/admin.ts, built in xds/server.ts) as its readers see it: who is
// connected, what each proxy ACKed or NACKed per type, and whether the mesh file is valid. `pillion ctl proxies`
// and the demo's screen read it through here, so both say the same about a rejected config.

export interface ProxyTypeStatus {
  readonly typeUrl?: string;
  readonly subscribed?: '*' | readonly string[];
  readonly subscribedCount?: number | null;
  readonly versionSent: string | null;
  readonly versionAcked: string | null;
  readonly lastNack: { readonly version: string; readonly error: string; readonly at: string } | null;
}

export interface ProxyStatus {
  readonly nodeId: string;
  readonly service?: string;
  readonly namespace?: string;
  readonly proxyless?: boolean;
  readonly peer?: string;
  readonly connectedSince?: string;
  /** Keyed by the type's short label (as the control server's metrics name it). */
  readonly types: Readonly<Record<string, ProxyTypeStatus>>;
}

export interface ProxiesDocument {
  readonly configVersion?: string | null;
  readonly configError: {
    readonly message: string;
    readonly problems?: ReadonlyArray<{ readonly path: string; readonly message: string; readonly line?: number }>;
    readonly at: string;
  } | null;
  readonly proxies: readonly ProxyStatus[];
}

/** Checks the shape enough that the readers below cannot throw on it; a wrong one is an Error naming the field. */
export function parseProxiesDocument(text: string): ProxiesDocument {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error(`/proxies: not JSON (is this a Pillion control server's admin port?): ${oneLine(text, 80)}`);
  }
  if (typeof doc !== 'object' || doc === null) throw new Error('/proxies: expected a JSON object');
  const d = doc as Partial<ProxiesDocument>;
  if (!Array.isArray(d.proxies)) throw new Error('/proxies: expected a "proxies" list');
  for (const p of d.proxies as unknown[]) {
    if (typeof p !== 'object' || p === null || typeof (p as ProxyStatus).nodeId !== 'string' || typeof (p as ProxyStatus).types !== 'object' || (p as ProxyStatus).types === null) {
      throw new Error('/proxies: each proxy needs "nodeId" and "types"');
    }
  }
  return { configVersion: d.configVersion ?? null, configError: d.configError ?? null, proxies: d.proxies };
}

/** A type whose last response the proxy rejected and has not since ACKed: it runs on an older config. */
export function isRejecting(t: ProxyTypeStatus): boolean {
  return t.lastNack !== null && t.versionSent !== null && t.lastNack.version === t.versionSent && t.versionAcked !== t.versionSent;
}

export interface CurrentNack {
  readonly nodeId: string;
  readonly type: string;
  readonly version: string;
  readonly error: string;
  readonly at: string;
}

/** Every (proxy, type) whose newest config it rejected, in the document's order. */
export function currentNacks(doc: ProxiesDocument): CurrentNack[] {
  const out: CurrentNack[] = [];
  for (const p of doc.proxies) {
    for (const [type, t] of Object.entries(p.types)) {
      if (isRejecting(t)) out.push({ nodeId: p.nodeId, type, version: t.lastNack!.version, error: t.lastNack!.error, at: t.lastNack!.at });
    }
  }
  return out;
}

/** The mesh file's problems, one per line without the file name (the reader knows which file), or [] when valid. */
export function configProblems(doc: ProxiesDocument): string[] {
  const e = doc.configError;
  if (e === null) return [];
  if (e.problems && e.problems.length > 0) return e.problems.map((p) => `${p.path}: ${p.message}${p.line !== undefined ? ` (line ${p.line})` : ''}`);
  return e.message.split('\n');
}

/** `s` on one line, cut to `max` characters: a screen row for an error that may be 1 KiB of anything. */
export function oneLine(s: string, max: number): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
