// A real @grpc/grpc-js Echo server and client for tests (unary + bidirectional streaming).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url));

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loaded = any;

function echoPackage(): Loaded {
  const def = protoLoader.loadSync(PROTO, { keepCase: true });
  return (grpc.loadPackageDefinition(def) as Loaded).pillion.test;
}

export interface EchoServer {
  port: number;
  /**
   * grpc-js's tryShutdown, then forceShutdown after `graceMs` (1 s): resolves within the grace whatever the
   * peers do. tryShutdown alone waits for every session's 'close', which never comes for a stream nobody ends
   * (a proxy's upstream stream still open) or for a session destroyed before grpc-js saw it close (Node's
   * session.close() then neither closes nor calls back): a teardown that hung the suite.
   */
  close(graceMs?: number): Promise<void>;
}

/** Unary replies `name:text`; a text of "fail" answers NOT_FOUND with a message. Chat echoes each message. */
export function startEchoServer(name: string): Promise<EchoServer> {
  return startEchoServerWith({
    Unary(call: Loaded, cb: Loaded) {
      if (call.request.text === 'fail') {
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' });
        return;
      }
      const md = new grpc.Metadata();
      md.set('x-served-by', name);
      call.sendMetadata(md);
      cb(null, { text: `${name}:${call.request.text}` });
    },
    Chat(call: Loaded) {
      call.on('data', (msg: { text: string }) => call.write({ text: `${name}:${msg.text}` }));
      call.on('end', () => call.end());
    },
  });
}

/** An Echo server with handlers of the test's own (Unary, Chat). */
export async function startEchoServerWith(handlers: Record<string, Loaded>): Promise<EchoServer> {
  const pkg = echoPackage();
  const server = new grpc.Server();
  server.addService(pkg.Echo.service, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    close: (graceMs = 1000) =>
      new Promise((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

/** A client that reaches `authority` through a proxy listening on `proxyPort`. */
export function echoClient(proxyPort: number, authority: string): Loaded {
  const pkg = echoPackage();
  return new pkg.Echo(`127.0.0.1:${proxyPort}`, grpc.credentials.createInsecure(), {
    'grpc.default_authority': authority,
  });
}

export { grpc };
