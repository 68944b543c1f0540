// Fields a resource carries that Pillion's trimmed copies of Envoy's protos do not declare. protobufjs skips them
// on decode, as proto3 says; a proxy that dropped them silently would accept config it does not enforce (a CRL,
// a custom validator, a filter option), so each one is named in a warning. Envoy counts the same case in
// server.dynamic_unknown_fields.
import protobuf from 'protobufjs';

/** Deeper than any Envoy resource nests; bounds the walk over hostile bytes. */
const MAX_DEPTH = 32;
/** Enough to name the problem; a resource made of thousands of unknown fields gets the first few. */
const MAX_REPORTED = 8;

/**
 * Paths of the unknown fields in `bytes` (a message of `type` that already decoded), e.g.
 * `validation_context.<field 7>`. Any payloads are not entered: they are decoded, and scanned, on their own.
 */
export function unknownFieldPaths(type: protobuf.Type, bytes: Uint8Array): string[] {
  const out: string[] = [];
  try {
    walk(type, bytes, '', out, 0);
  } catch {
    // The bytes decoded once already; a walk that still fails reports what it found so far.
  }
  return out;
}

function walk(type: protobuf.Type, bytes: Uint8Array, prefix: string, out: string[], depth: number): void {
  const reader = protobuf.Reader.create(bytes);
  while (reader.pos < reader.len && out.length < MAX_REPORTED) {
    const tag = reader.uint32();
    const id = tag >>> 3;
    const wireType = tag & 7;
    const field = type.fieldsById[id];
    if (field === undefined) {
      // Once per path: the entries of one repeated field must not use up the report for the fields after it.
      const path = `${prefix}<field ${id}>`;
      if (!out.includes(path)) out.push(path);
      reader.skipType(wireType);
    } else if (wireType === 2 && !field.map && field.resolvedType instanceof protobuf.Type && depth < MAX_DEPTH && field.resolvedType.fullName !== '.google.protobuf.Any') {
      walk(field.resolvedType, reader.bytes(), `${prefix}${field.name}.`, out, depth + 1);
    } else {
      reader.skipType(wireType);
    }
  }
}
