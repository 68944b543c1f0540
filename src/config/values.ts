// Small readers for decoded protobuf values (Duration, wrappers) shared by the translators.

export type Plain = Record<string, any>;

/** A validation failure inside a translator: becomes a NACK message naming the field. */
export class ResourceInvalid extends Error {}

export function invalid(message: string): never {
  throw new ResourceInvalid(message);
}

/** google.protobuf.Duration → milliseconds; `fallback` when unset. Negative durations are invalid. */
export function durationMs(d: Plain | undefined | null, fallback: number, field: string): number {
  if (!d) return fallback;
  const ms = Number(d.seconds ?? 0) * 1000 + Math.round(Number(d.nanos ?? 0) / 1_000_000);
  if (!Number.isFinite(ms) || ms < 0) invalid(`${field}: negative or invalid duration`);
  return ms;
}

/** google.protobuf.UInt32Value / UInt64Value / BoolValue → its value; `fallback` when unset. */
export function wrapped<T>(w: { value?: T } | undefined | null, fallback: T): T {
  return w && w.value !== undefined ? w.value : fallback;
}

/** Address.socket_address → host and port, or an error naming `field`. */
export function socketAddress(addr: Plain | undefined, field: string): { address: string; port: number } {
  const sa = addr?.socket_address;
  if (!sa) invalid(`${field}: missing socket_address`);
  if (!sa.address) invalid(`${field}.socket_address.address: missing`);
  if (sa.named_port !== undefined) invalid(`${field}.socket_address.named_port: not supported, use port_value`);
  const port = Number(sa.port_value ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) invalid(`${field}.socket_address.port_value: out of range`);
  return { address: String(sa.address), port };
}
