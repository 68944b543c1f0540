// Files of the mesh CA directory (--ca-dir): names, and the one way private material is written (mode 0600,
// created exclusively, so two processes starting at once never overwrite each other's key).
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** DESIGN.md §3: the root the CA creates, or the operator supplies. */
export const ROOT_CERT_FILE = 'root-cert.pem';
export const ROOT_KEY_FILE = 'root-key.pem';
/** Istio's "plugged-in CA" names: an intermediate signing CA, its key, and its chain up to the root. */
export const CA_CERT_FILE = 'ca-cert.pem';
export const CA_KEY_FILE = 'ca-key.pem';
export const CERT_CHAIN_FILE = 'cert-chain.pem';
/** The HMAC key bootstrap tokens are signed with. */
export const TOKEN_KEY_FILE = 'token-key';

/** A CA file is a few KiB; anything much larger is not one (and is not read into memory whole). */
export const MAX_CA_FILE_BYTES = 256 * 1024;

export class CaDirError extends Error {
  override name = 'CaDirError';
}

export function ensureCaDir(dir: string): void {
  // 0700: the directory holds private keys; an existing directory keeps the mode its operator gave it.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

export function caPath(dir: string, file: string): string {
  return join(dir, file);
}

export function exists(dir: string, file: string): boolean {
  return existsSync(join(dir, file));
}

/** Reads a CA file, refusing one too large to be a certificate or key. */
export function readCaFile(dir: string, file: string): string {
  const path = join(dir, file);
  const size = statSync(path).size;
  if (size > MAX_CA_FILE_BYTES) throw new CaDirError(`${path}: ${size} bytes; a CA file is at most ${MAX_CA_FILE_BYTES}`);
  return readFileSync(path, 'utf8');
}

/**
 * Writes a new private file (mode 0600). Returns false if it exists already (another process made it first):
 * the caller then reads that one, so every process ends with the same key.
 */
export function createPrivateFile(dir: string, file: string, content: string): boolean {
  try {
    writeFileSync(join(dir, file), content, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
  // The mode given to open() is masked by the umask; 0600 is narrower than any umask leaves, but say it anyway.
  chmodSync(join(dir, file), 0o600);
  return true;
}

/** Writes a public file (a certificate), exclusively; false when it exists. */
export function createPublicFile(dir: string, file: string, content: string): boolean {
  try {
    writeFileSync(join(dir, file), content, { mode: 0o644, flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** True when a private file can be read by group or others (the caller warns: an operator's copy may be loose). */
export function looselyReadable(dir: string, file: string): boolean {
  return (statSync(join(dir, file)).mode & 0o077) !== 0;
}
