// A worker of `pillion proxy --concurrency N` (N > 1): the data path only. It listens on the sockets the primary
// shares with every worker, applies exactly the config and secrets the primary accepted and forwards, and answers
// the primary's questions (metrics, cluster state). No admin server, no config source, no signal handling of its
// own: the primary drives drain and stop, and if the primary goes away the IPC channel closes and Node's cluster
// module ends this process (no orphan keeps the ports).
import type { ApplyResult, Proxy } from '../proxy.js';
import type { ToWorker } from './ipc.js';

type Send = (msg: object) => void;

/** Wires `proxy` to the primary over process IPC; returns once 'up' is sent. */
export function serveAsWorker(proxy: Proxy, index: number): void {
  const send: Send = (msg) => {
    if (process.connected !== true) return;
    process.send!(msg, undefined, undefined, (err: Error | null) => {
      if (err !== null) proxy.logger.debug({ err: err.message }, 'could not send to the primary');
    });
  };
  // Configs apply one at a time, in the order the primary sent them.
  let applying: Promise<void> = Promise.resolve();
  process.on('message', (raw: unknown) => {
    const msg = raw as ToWorker;
    switch (msg?.t) {
      case 'secret':
        proxy.secrets.set(msg.name, msg.secret ?? undefined);
        return;
      case 'config':
        applying = applying.then(() => apply(proxy, msg.gen, msg.version, msg.resources, send));
        return;
      case 'drain':
        proxy.drain({ inboundOnly: msg.inboundOnly }).then(
          () => msg.id !== 0 && send({ t: 'drained', id: msg.id }),
          (err: unknown) => {
            proxy.logger.warn({ err }, 'drain failed');
            if (msg.id !== 0) send({ t: 'drained', id: msg.id });
          },
        );
        return;
      case 'query':
        answer(proxy, msg.what).then(
          (body) => send({ t: 'answer', id: msg.id, body }),
          (err: unknown) => proxy.logger.warn({ err, what: msg.what }, 'could not answer the primary'),
        );
        return;
      case 'log-level':
        proxy.setLogLevel(msg.level);
        return;
      case 'stop':
        proxy.stop().then(
          () => process.exit(0),
          (err: unknown) => {
            proxy.logger.error({ err }, 'worker stop failed');
            process.exit(1);
          },
        );
        return;
      default:
        proxy.logger.debug({ type: (msg as { t?: unknown } | null)?.t }, 'ignored a message from the primary');
    }
  });
  // Ctrl-C reaches every process of the terminal's group: the primary decides, drains and stops the workers.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  proxy.logger.info(`worker ${index} started`);
  send({ t: 'up' });
}

async function apply(proxy: Proxy, gen: number, version: string, resources: Parameters<Proxy['apply']>[0], send: Send): Promise<void> {
  let result: ApplyResult | null = null;
  let error: string | null = null;
  try {
    result = await proxy.apply(resources, version);
    if (!result.applied) error = result.errors.map((e) => `${e.typeUrl} ${e.name}: ${e.message}`).join('; ');
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
  }
  send({ t: 'applied', gen, ok: error === null, body: JSON.stringify({ error, listeners: proxy.listeners() }) });
}

async function answer(proxy: Proxy, what: 'metrics' | 'clusters'): Promise<string> {
  if (what === 'metrics') return JSON.stringify(await proxy.registry.getMetricsAsJSON());
  return JSON.stringify(proxy.clusters());
}
