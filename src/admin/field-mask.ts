// google.protobuf.FieldMask over proto3 JSON, as Envoy's /config_dump applies ?mask= (FieldMaskUtil::Trim):
// keep only the named paths; a path through a repeated field applies to each element. "@type" stays wherever
// a kept object has one, so a masked Any still says what it is.
import type { Json } from './proto-json.js';

/** A path tree: a leaf (true) keeps the whole value, a node keeps the named children only. */
type Tree = Map<string, Tree | true>;

/** "a.b,c" → a tree; empty segments are ignored. A path that names a parent of another keeps the parent whole. */
export function parseMask(mask: string): Tree {
  const root: Tree = new Map();
  for (const path of mask.split(',')) {
    const parts = path.trim().split('.').filter((p) => p !== '');
    if (parts.length === 0) continue;
    let node: Tree = root;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      const existing = node.get(part);
      if (existing === true) break;
      if (i === parts.length - 1) {
        node.set(part, true);
        break;
      }
      const next: Tree = existing ?? new Map();
      node.set(part, next);
      node = next;
    }
  }
  return root;
}

export function applyMask(value: Json, tree: Tree): Json {
  if (Array.isArray(value)) return value.map((v) => applyMask(v, tree));
  if (value === null || typeof value !== 'object') return value;
  const out: { [k: string]: Json } = {};
  if ('@type' in value) out['@type'] = value['@type']!;
  for (const [key, sub] of tree) {
    const v = value[key];
    if (v === undefined) continue;
    out[key] = sub === true ? v : applyMask(v, sub);
  }
  return out;
}
