// Decoded protobuf → the proto3 JSON mapping (protobuf.dev/programming-guides/json), as Envoy's admin prints
// config: Any as {"@type", ...fields}, Duration as "1.500s", wrappers as plain values, Struct as JSON, enums by
// name, 64-bit ints as strings, bytes as base64, and no decoder-internal oneof keys. Sensitive fields (keys,
// passwords) are replaced, as Envoy's config dump redacts fields marked sensitive.
import protobuf from 'protobufjs';
import { messageType } from '../config/protos.js';

/** What toObject gives us to walk: enums by name, 64-bit as strings, raw bytes kept (an Any's value is bytes). */
const TO_OBJECT: protobuf.IConversionOptions = { enums: String, longs: String, defaults: false, oneofs: false };

/** Envoy marks these DataSource fields (udpa.annotations.sensitive); its dump shows "[redacted]" in their place. */
const SENSITIVE = new Set(['private_key', 'password', 'hmac_secret', 'client_secret']);
const REDACTED = { inline_string: '[redacted]' };

/** Deeper than any config we carry; bounds recursion through Any and Struct that nest themselves. */
const MAX_DEPTH = 64;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** proto3 JSON Duration: seconds with 0, 3, 6 or 9 fractional digits and an "s". */
export function durationJson(seconds: string | number, nanos: number): string {
  const s = BigInt(String(seconds));
  const negative = s < 0n || nanos < 0;
  const whole = (s < 0n ? -s : s).toString();
  const n = Math.abs(nanos);
  let frac = '';
  if (n !== 0) {
    const nine = String(n).padStart(9, '0');
    frac = '.' + (n % 1_000_000 === 0 ? nine.slice(0, 3) : n % 1000 === 0 ? nine.slice(0, 6) : nine);
  }
  return `${negative ? '-' : ''}${whole}${frac}s`;
}

function base64(v: unknown): string {
  return v instanceof Uint8Array ? Buffer.from(v).toString('base64') : String(v ?? '');
}

const WRAPPER_DEFAULTS: Readonly<Record<string, Json>> = {
  '.google.protobuf.DoubleValue': 0,
  '.google.protobuf.FloatValue': 0,
  '.google.protobuf.Int64Value': '0',
  '.google.protobuf.UInt64Value': '0',
  '.google.protobuf.Int32Value': 0,
  '.google.protobuf.UInt32Value': 0,
  '.google.protobuf.BoolValue': false,
  '.google.protobuf.StringValue': '',
};

type Obj = Record<string, unknown>;

/** google.protobuf.Value (a Struct's member), decoded with snake_case keys. */
function valueJson(v: Obj, depth: number): Json {
  if (depth > MAX_DEPTH) return null;
  if ('string_value' in v) return String(v.string_value);
  if ('number_value' in v) return Number(v.number_value);
  if ('bool_value' in v) return Boolean(v.bool_value);
  if ('struct_value' in v) return structJson((v.struct_value ?? {}) as Obj, depth + 1);
  if ('list_value' in v) return (((v.list_value as Obj | undefined)?.values ?? []) as Obj[]).map((x) => valueJson(x, depth + 1));
  return null;
}

function structJson(v: Obj, depth: number): Json {
  const out: { [k: string]: Json } = {};
  for (const [k, x] of Object.entries((v.fields ?? {}) as Record<string, Obj>)) out[k] = valueJson(x, depth + 1);
  return out;
}

/** A message whose JSON form is not an object of its fields (well-known types); undefined for any other. */
function wellKnown(type: protobuf.Type, v: Obj, depth: number): Json | undefined {
  const name = type.fullName;
  if (name === '.google.protobuf.Duration') return durationJson((v.seconds as string | undefined) ?? '0', Number(v.nanos ?? 0));
  if (name === '.google.protobuf.Timestamp') {
    return new Date(Number(v.seconds ?? 0) * 1000 + Math.floor(Number(v.nanos ?? 0) / 1e6)).toISOString();
  }
  if (name in WRAPPER_DEFAULTS) return (v.value as Json | undefined) ?? WRAPPER_DEFAULTS[name]!;
  if (name === '.google.protobuf.BytesValue') return base64(v.value);
  if (name === '.google.protobuf.Struct') return structJson(v, depth);
  if (name === '.google.protobuf.Value') return valueJson(v, depth);
  if (name === '.google.protobuf.ListValue') return ((v.values ?? []) as Obj[]).map((x) => valueJson(x, depth + 1));
  if (name === '.google.protobuf.Empty') return {};
  return undefined;
}

/** An Any unpacked through our protos; a type we do not carry keeps its bytes (base64), as proto3 JSON allows no better. */
function anyJson(v: Obj, depth: number): Json {
  const url = String(v.type_url ?? '');
  let inner: protobuf.Type;
  try {
    inner = messageType(url.slice(url.lastIndexOf('/') + 1));
  } catch {
    return { '@type': url, value: base64(v.value) };
  }
  const value = v.value instanceof Uint8Array ? v.value : new Uint8Array();
  let decoded: Obj;
  try {
    decoded = inner.toObject(inner.decode(value), TO_OBJECT);
  } catch {
    return { '@type': url, value: base64(v.value) };
  }
  // A well-known type inside an Any keeps its JSON form under "value" (proto3 JSON mapping, Any).
  const wk = wellKnown(inner, decoded, depth + 1);
  if (wk !== undefined) return { '@type': url, value: wk };
  return { '@type': url, ...(messageJson(inner, decoded, depth + 1) as { [k: string]: Json }) };
}

function fieldJson(field: protobuf.Field, v: unknown, depth: number): Json {
  const t = field.resolvedType;
  if (t instanceof protobuf.Type) return messageOrWellKnown(t, v as Obj, depth + 1);
  if (field.type === 'bytes') return base64(v);
  return v as Json;
}

function messageOrWellKnown(type: protobuf.Type, v: Obj, depth: number): Json {
  if (depth > MAX_DEPTH) return null;
  if (type.fullName === '.google.protobuf.Any') return anyJson(v, depth);
  return wellKnown(type, v, depth) ?? messageJson(type, v, depth);
}

/** A decoded message (toObject with TO_OBJECT) in proto3 JSON form, sensitive fields redacted. */
function messageJson(type: protobuf.Type, v: Obj, depth: number): Json {
  const out: { [k: string]: Json } = {};
  for (const [key, value] of Object.entries(v)) {
    if (SENSITIVE.has(key)) {
      out[key] = REDACTED;
      continue;
    }
    const field = type.fields[key];
    if (field === undefined) continue;
    if (field.map) {
      const m: { [k: string]: Json } = {};
      for (const [mk, mv] of Object.entries(value as Obj)) m[mk] = fieldJson(field, mv, depth);
      out[key] = m;
    } else if (field.repeated) {
      out[key] = (value as unknown[]).map((x) => fieldJson(field, x, depth));
    } else {
      out[key] = fieldJson(field, value, depth);
    }
  }
  return out;
}

/**
 * Bytes of message `typeUrl` as Envoy's admin prints an Any: {"@type": typeUrl, ...fields}. Throws on bytes
 * that do not decode or a type we do not carry (the caller decides what to show instead).
 */
export function anyToJson(typeUrl: string, value: Uint8Array): { [k: string]: Json } {
  const type = messageType(typeUrl.slice(typeUrl.lastIndexOf('/') + 1));
  const decoded = type.toObject(type.decode(value), TO_OBJECT);
  return { '@type': typeUrl, ...(messageJson(type, decoded, 0) as { [k: string]: Json }) };
}

export type { Json };
