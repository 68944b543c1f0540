// Starts an operator-facing HTTP server (proxy admin, control admin) and gives back its port and a close()
// that never waits on idle keep-alive connections.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AcceptPause } from '../listener/accept-pause.js';

export interface ListeningServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function listenAdmin(server: Server, host: string, port: number): Promise<ListeningServer> {
  // Admin connections are operator traffic: never let an idle keep-alive one hold up close().
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const boundPort = (server.address() as AddressInfo).port;
  // Once listening, a server's 'error' events are accept errors: EMFILE/ENFILE at the fd limit (see AcceptPause),
  // ECONNABORTED. That connection is lost and the server carries on; unhandled, the event would end the process.
  const pause = new AcceptPause(server, () => ({ host, port: boundPort }));
  server.on('error', (err: NodeJS.ErrnoException) => pause.onError(err));
  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        pause.stop();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
