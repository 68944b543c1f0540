// Starts an operator-facing HTTP server (proxy admin, control admin) and gives back its port and a close()
// that never waits on idle keep-alive connections.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ListeningServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Once listening, a server's 'error' events are accept errors: EMFILE/ENFILE at the fd limit when libuv's
 * reserved-fd trick cannot shed the connection, ECONNABORTED. That connection is lost and the server carries on;
 * unhandled, the event would end the process.
 */
function onAcceptError(): void {}

export async function listenAdmin(server: Server, host: string, port: number): Promise<ListeningServer> {
  // Admin connections are operator traffic: never let an idle keep-alive one hold up close().
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      server.on('error', onAcceptError);
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
