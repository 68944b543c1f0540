// `pillion inject`: Kubernetes manifests in (-f FILE or stdin), the same manifests with the sidecar, its iptables
// init container and its bootstrap volume out (stdout), as `istioctl kube-inject`. What it did to each document
// goes to stderr.
import { closeSync, openSync, readSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../bootstrap/args.js';
import { InterceptOptionsError, validateOptions } from '../intercept/iptables-rules.js';
import { INBOUND_PORT, OUTBOUND_PORT, type SidecarSettings } from '../inject/pod-spec.js';
import { InjectError, injectManifests } from '../inject/manifests.js';

export const DEFAULT_CONTROL = 'pillion-control.pillion-system.svc:15012';
export const DEFAULT_IMAGE = 'pillion:0.1.0';

export const INJECT_USAGE = `usage: pillion inject [-f FILE] [--image ${DEFAULT_IMAGE}] [--control ${DEFAULT_CONTROL}] [--proxy-uid 1337]
                      [--exclude-inbound-ports P,..] [--exclude-outbound-ports P,..] [--exclude-cidrs C,..] [--quiet]
  Reads manifests (several YAML documents; stdin without -f) and writes them to stdout with, in each Deployment,
  StatefulSet, DaemonSet, ReplicaSet, Job, CronJob and Pod: an init container that installs the interception
  rules (pillion iptables --apply), the sidecar (pillion proxy --interception redirect) first among the
  containers, held until ready, and a volume from the Secret pillion-token-<serviceAccount> (keys token and
  root-cert.pem). The app's httpGet/tcpSocket/grpc probes are rewritten to the sidecar's status port (15020; annotation
  pillion.io/rewrite-app-probes: "false" keeps them). Other kinds, workloads annotated pillion.io/inject: "false"
  and injected ones pass unchanged. Warnings go to stderr even with --quiet.
  --control    the control servers' xDS-over-TLS addresses (HOST:PORT[,HOST:PORT]), tried in order
  --proxy-uid  the sidecar's uid, exempt from the rules; no app container may run as it
  --exclude-*  passed to pillion iptables for every workload (annotations pillion.io/exclude-* add to them)`;

export function parseInjectArgs(argv: string[]): { file?: string; quiet: boolean; settings: SidecarSettings } {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        filename: { type: 'string', short: 'f' },
        image: { type: 'string' },
        control: { type: 'string' },
        'proxy-uid': { type: 'string' },
        'exclude-inbound-ports': { type: 'string' },
        'exclude-outbound-ports': { type: 'string' },
        'exclude-cidrs': { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${INJECT_USAGE}`);
  }
  const uid = values['proxy-uid'] ?? '1337';
  if (!/^\d+$/.test(uid) || Number(uid) === 0 || Number(uid) > 2147483647) throw new UsageError(`--proxy-uid: expected a numeric uid other than 0, got "${uid}"`);
  const control = (values.control ?? DEFAULT_CONTROL).split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const addr of control) {
    if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):\d{1,5}$/.test(addr)) throw new UsageError(`--control: expected HOST:PORT[,HOST:PORT], got "${addr}"`);
  }
  if (control.length === 0) throw new UsageError('--control: expected HOST:PORT[,HOST:PORT]');
  const image = values.image ?? DEFAULT_IMAGE;
  if (image.trim() === '' || /\s/.test(image)) throw new UsageError(`--image: expected an image reference, got "${image}"`);
  const ports = (flag: string, v: string | undefined): number[] =>
    (v ?? '').split(',').filter((s) => s.trim() !== '').map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`--${flag}: expected ports 1-65535 separated by commas, got "${s}"`);
      return n;
    });
  const settings: SidecarSettings = {
    image,
    control,
    proxyUid: Number(uid),
    excludeInboundPorts: ports('exclude-inbound-ports', values['exclude-inbound-ports']),
    excludeOutboundPorts: ports('exclude-outbound-ports', values['exclude-outbound-ports']),
    excludeCidrs: (values['exclude-cidrs'] ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''),
  };
  // The same checks pillion iptables makes, now rather than in a crash-looping init container.
  try {
    validateOptions({ ...settings, inboundPort: INBOUND_PORT, outboundPort: OUTBOUND_PORT, excludeInboundPorts: [...settings.excludeInboundPorts], excludeOutboundPorts: [...settings.excludeOutboundPorts], excludeCidrs: [...settings.excludeCidrs] });
  } catch (err) {
    if (err instanceof InterceptOptionsError) throw new UsageError(err.message);
    throw err;
  }
  return { ...(values.filename === undefined ? {} : { file: values.filename }), quiet: values.quiet ?? false, settings };
}

/** Far more than any set of manifests; a stream that never ends (or a wrong file) is refused, not buffered. */
export const MAX_INPUT_BYTES = 64 << 20;

/** Something for Atomics.wait to sleep on between reads of a non-blocking stdin. */
const WAIT_CELL = new Int32Array(new SharedArrayBuffer(4));

/** The manifests from FILE or stdin, refused past MAX_INPUT_BYTES. */
function readInput(file: string | undefined): string {
  const fd = file === undefined || file === '-' ? 0 : openSync(file, 'r');
  const chunks: Buffer[] = [];
  let total = 0;
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (err) {
        // A non-blocking stdin with nothing yet: wait a little and read again.
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        Atomics.wait(WAIT_CELL, 0, 0, 10);
        continue;
      }
      if (n === 0) break;
      total += n;
      if (total > MAX_INPUT_BYTES) throw new UsageError(`${file ?? 'stdin'}: more than ${MAX_INPUT_BYTES >> 20} MiB of input; not read further`);
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    if (fd !== 0) closeSync(fd);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function runInjectCommand(argv: string[]): void {
  const { file, quiet, settings } = parseInjectArgs(argv);
  const text = readInput(file);
  let result;
  try {
    result = injectManifests(text, settings, file ?? 'stdin');
  } catch (err) {
    if (err instanceof InjectError) throw new UsageError(err.message);
    throw err;
  }
  process.stdout.write(result.output);
  if (!quiet) for (const note of result.notes) process.stderr.write(`pillion inject: ${note}\n`);
  for (const warning of result.warnings) process.stderr.write(`pillion inject: ${warning}\n`);
}
