// Envoy's own .proto files, as @grpc/grpc-js-xds ships them: an independent reader of what we encode, so a test
// can check our subset against the real field numbers.
import { accessSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import protobuf from 'protobufjs';
// Registers google/protobuf/descriptor.proto, which Envoy's validate annotations import.
import '@grpc/proto-loader';

/** A protobufjs Root with `files` (paths inside Envoy's API tree) and what they import. */
export function envoyRoot(files: readonly string[]): protobuf.Root {
  const require = createRequire(import.meta.url);
  const deps = join(require.resolve('@grpc/grpc-js-xds/package.json'), '..', 'deps');
  const dirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const d of dirs) {
      try {
        accessSync(join(d, target));
        return join(d, target);
      } catch {
        /* the next include directory */
      }
    }
    return target;
  };
  root.loadSync([...files], { keepCase: true });
  return root;
}

/** The field number of each top-level field in encoded bytes, in order: what a peer decoding them by number sees. */
export function fieldNumbers(bytes: Uint8Array): number[] {
  const r = protobuf.Reader.create(bytes);
  const out: number[] = [];
  while (r.pos < r.len) {
    const t = r.uint32();
    out.push(t >>> 3);
    r.skipType(t & 7);
  }
  return out;
}
