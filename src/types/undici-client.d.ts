// The proxy loads undici's HTTP/1.1 Client module alone: the package index also loads fetch, WebSocket,
// caches and mocks, which cost a sidecar ~8 MiB of resident memory for nothing it uses.
declare module 'undici/lib/dispatcher/client.js' {
  import { Client } from 'undici';
  export default Client;
}
