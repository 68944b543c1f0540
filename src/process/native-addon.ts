// Loads the native helper that `npm install` builds from src/native with node-gyp (malloc_trim, the GC hint,
// SO_ORIGINAL_DST), once per process. Its absence is normal (no compiler at install time, not Linux): every user
// checks for the function it needs and degrades with its own message.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ADDON = 'build/Release/pillion_native.node';

let loaded: { readonly exports: Record<string, unknown> | undefined; readonly problem: string } | undefined;

function load(): NonNullable<typeof loaded> {
  const here = dirname(fileURLToPath(import.meta.url));
  // From src/process (sources under vitest) or dist/src/process (the build).
  for (const root of [join(here, '../native'), join(here, '../../../src/native')]) {
    const file = join(root, ADDON);
    if (!existsSync(file)) continue;
    try {
      return { exports: createRequire(import.meta.url)(file) as Record<string, unknown>, problem: '' };
    } catch (err) {
      // Built for another Node ABI or architecture: a rebuild (npm rebuild) fixes it.
      return { exports: undefined, problem: `${file} does not load (${(err as Error).message.split('\n')[0]}); npm rebuild builds it again` };
    }
  }
  return { exports: undefined, problem: 'src/native was not built (npm install runs node-gyp, which needs python3, make and a C++ compiler)' };
}

/** The addon's exports, or undefined when it is missing or does not load. */
export function nativeAddon(): Record<string, unknown> | undefined {
  loaded ??= load();
  return loaded.exports;
}

/** Why nativeAddon() is undefined, for the one warning its users log; '' when it loaded. */
export function nativeAddonProblem(): string {
  loaded ??= load();
  return loaded.problem;
}
