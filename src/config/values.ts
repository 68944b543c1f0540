// Small readers for decoded protobuf values (Duration, wrappers) shared by the translators.
import { isIP } from 'node:net';

export type Plain = Record<string, any>;

/** A validation failure inside a translator: becomes a NACK message naming the field. */
export class ResourceInvalid extends Error {}

export function invalid(message: string): never {
  throw new ResourceInvalid(message);
}

/**
 * The longest delay a Node timer holds: setTimeout and socket.setTimeout turn anything longer (about 24.8 days)
 * into 1 ms, so a longer configured duration would fire at once instead of late.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/** google.protobuf.Duration's own range (±10,000 years); Envoy refuses anything outside it. */
const MAX_DURATION_SECONDS = 315_576_000_000;

let warningSink: string[] | null = null;

/**
 * Runs a translation and collects the warnings it raised (values it had to adjust, such as a clamped
 * duration). Translators are synchronous, so one sink at a time is enough.
 */
export function collectWarnings<T>(fn: () => T): { value: T; warnings: string[] } {
  const outer = warningSink;
  const warnings: string[] = [];
  warningSink = warnings;
  try {
    return { value: fn(), warnings };
  } finally {
    warningSink = outer;
  }
}

function warn(message: string): void {
  warningSink?.push(message);
}

/**
 * A setting the translator accepts and keeps in the model that the data path does not act on yet: said in a
 * warning every time a resource carrying it is translated, never silently taken.
 */
export function notEnforced(field: string, consequence: string): void {
  const message = `${field}: accepted but not enforced yet (${consequence})`;
  // Once per resource: a route table with a retry policy on every route says it once.
  if (warningSink !== null && !warningSink.includes(message)) warningSink.push(message);
}

/**
 * google.protobuf.Duration → milliseconds; `fallback` when unset. Negative or malformed durations are invalid.
 * A duration shorter than 1 ms but above 0 counts as 1 ms (0 means "no timeout" to most readers, which is not
 * what was written). A duration longer than a Node timer holds is clamped to MAX_TIMER_MS with a warning: Envoy
 * accepts such durations (up to Duration's own range), so refusing the resource would refuse config Envoy takes,
 * and a timer of 24.8 days instead of longer is the closest behaviour a Node process can give.
 */
export function durationMs(d: Plain | undefined | null, fallback: number, field: string): number {
  if (!d) return fallback;
  const seconds = Number(d.seconds ?? 0);
  const nanos = Number(d.nanos ?? 0);
  if (!Number.isInteger(seconds) || !Number.isInteger(nanos) || Math.abs(nanos) > 999_999_999) {
    invalid(`${field}: invalid duration`);
  }
  if (seconds < 0 || nanos < 0) invalid(`${field}: negative duration (seconds ${seconds}, nanos ${nanos})`);
  if (seconds > MAX_DURATION_SECONDS) invalid(`${field}: ${seconds}s is beyond google.protobuf.Duration's range`);
  const exact = seconds * 1000 + nanos / 1_000_000;
  if (exact > MAX_TIMER_MS) {
    const written = nanos === 0 ? `${seconds}s` : `${seconds}s ${nanos}ns`;
    warn(`${field}: ${written} is longer than a timer can hold; using ${MAX_TIMER_MS} ms (about 24.8 days)`);
    return MAX_TIMER_MS;
  }
  return exact > 0 && exact < 1 ? 1 : Math.round(exact);
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
  const problem = hostProblem(String(sa.address));
  if (problem !== undefined) invalid(`${field}.socket_address.address: ${problem}`);
  if (sa.named_port !== undefined) invalid(`${field}.socket_address.named_port: not supported, use port_value`);
  const port = Number(sa.port_value ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) invalid(`${field}.socket_address.port_value: out of range`);
  return { address: String(sa.address), port };
}

const DNS_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/**
 * Why `address` cannot be a listener or endpoint address, or undefined when it can: an IP literal, or a DNS name
 * (labels of letters, digits, '-' and '_', at most 253 characters). Anything else reaches Node APIs that throw
 * synchronously: an HTTP/2 upstream opens `http2.connect('http://HOST:PORT')`, and a host WHATWG URL cannot
 * parse (a space, a bracket, '%', a scoped IPv6 address, a name ending in a number like `a.1`) threw
 * ERR_INVALID_URL on the request path, uncaught: the end of the proxy process. The mesh config validator
 * applies the same rule.
 */
export function hostProblem(address: string): string | undefined {
  const shown = JSON.stringify(address.length > 64 ? `${address.slice(0, 64)}…` : address);
  const ip = isIP(address);
  if (ip !== 0) {
    if (address.includes('%')) return `${shown}: scoped IPv6 addresses (with a zone) are not supported`;
    return undefined;
  }
  const name = address.endsWith('.') ? address.slice(0, -1) : address;
  const labels = name.split('.');
  if (address.length > 253 || !labels.every((l) => DNS_LABEL.test(l))) {
    return `${shown} is neither an IP address nor a DNS name`;
  }
  // WHATWG URL reads a name whose last label is a number as an IPv4 address (and refuses it when it is not one).
  if (/^(?:[0-9]+|0x[0-9a-f]*)$/i.test(labels[labels.length - 1]!)) return `${shown} is neither an IP address nor a DNS name (it ends in a number)`;
  try {
    new URL(`http://${address}:1`);
  } catch {
    return `${shown} is not a valid host name`;
  }
  return undefined;
}

/** One spelling per IP address (`FD99:0::1` -> `fd99::1`), the kernel's: what an original destination is compared with. */
export function canonicalIp(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}
