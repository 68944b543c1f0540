// `pillion wait-ready` and `pillion drain`: the sidecar's Kubernetes hooks (postStart, preStop),
// talking to its admin server on 127.0.0.1. In the image already, so pods need no curl.
import * as http from 'node:http';
import { parseArgs } from 'node:util';
import { UsageError } from '../bootstrap/args.js';

export const WAIT_READY_USAGE = `usage: pillion wait-ready [--admin-port 15000] [--timeout 60s]
  Exits 0 as soon as the sidecar's /ready answers 200 (LIVE: config applied, listeners up), 1 if it has not by
  --timeout. A postStart hook with it holds the pod's next containers until the sidecar is ready.`;

export const DRAIN_USAGE = `usage: pillion drain [--admin-port 15000] [--delay 5s]
  Waits --delay (the endpoints controller takes the pod out of Services meanwhile), then asks the sidecar to drain
  its inbound listeners (POST /drain?inboundonly: no new connections from other pods, HTTP/1 responses say
  connection: close, HTTP/2 gets GOAWAY, requests in flight finish). Outbound keeps serving the app, which may still
  call out while it shuts down. The SIGTERM that follows a preStop hook drains the rest and exits (at most 20 s).`;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** `250ms`, `5s`, `2m`: this runs in the pod's hooks, so it loads nothing it can do without. */
function duration(text: string): number | undefined {
  const m = /^(\d{1,7})(ms|s|m)$/.exec(text);
  return m === null ? undefined : Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Bounded: a probe that hangs would hold the hook for the kubelet's whole timeout. */
const REQUEST_TIMEOUT_MS = 1_000;
const POLL_MS = 200;

function request(method: 'GET' | 'POST', port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, timeout: REQUEST_TIMEOUT_MS, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 1024) body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

function parse(argv: string[], usage: string, durationFlag: 'timeout' | 'delay', fallback: string): { port: number; ms: number } {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { 'admin-port': { type: 'string' }, [durationFlag]: { type: 'string' } }, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${usage}`);
  }
  const port = Number(values['admin-port'] ?? 15000);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--admin-port: expected a port 1-65535, got "${String(values['admin-port'])}"`);
  const text = (values[durationFlag] as string | undefined) ?? fallback;
  const ms = duration(text);
  if (ms === undefined || ms > 3_600_000) throw new UsageError(`--${durationFlag}: expected a duration up to 1h like "60s", "500ms" or "2m", got "${text}"`);
  return { port, ms };
}

export async function runWaitReadyCommand(argv: string[]): Promise<void> {
  const { port, ms } = parse(argv, WAIT_READY_USAGE, 'timeout', '60s');
  const deadline = Date.now() + ms;
  let last = 'no answer yet';
  for (;;) {
    try {
      const r = await request('GET', port, '/ready');
      if (r.status === 200) return;
      last = `${r.status} ${r.body}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() + POLL_MS > deadline) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  process.stderr.write(`pillion wait-ready: the sidecar on 127.0.0.1:${port} is not ready after ${ms} ms (last: ${last})\n`);
  process.exitCode = 1;
}

export async function runDrainCommand(argv: string[]): Promise<void> {
  const { port, ms } = parse(argv, DRAIN_USAGE, 'delay', '5s');
  await new Promise((r) => setTimeout(r, ms));
  try {
    const r = await request('POST', port, '/drain?inboundonly');
    if (r.status !== 202) throw new Error(`POST /drain?inboundonly answered ${r.status} ${r.body}`);
  } catch (err) {
    // Not fatal to the pod: SIGTERM drains the sidecar anyway.
    process.stderr.write(`pillion drain: could not start the drain on 127.0.0.1:${port}: ${(err as Error).message}; SIGTERM will drain\n`);
    process.exitCode = 1;
  }
}
