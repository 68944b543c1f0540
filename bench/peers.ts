// The targets the benchmark compares: the backend itself (direct), Pillion, nginx, HAProxy and http-proxy,
// each started as a child process with an equivalent single-upstream config on 127.0.0.1.
import { NODE_FLAGS } from '../src/cli/node-flags.js';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChildGroup, freePorts, resolveFromHere, waitForHttp, waitForPort, type ManagedChild } from '../src/cli/children.js';

export interface BackendPorts {
  http: number;
  h2: number;
  tcp: number;
}

export interface Target {
  name: string;
  /** HTTP/1.1 port and Host header to use, when the target serves HTTP/1.1. */
  httpPort?: number;
  host?: string;
  /** h2c port and :authority, when it serves HTTP/2. */
  h2Port?: number;
  authority?: string;
  /** Raw TCP port forwarding to the sink. */
  tcpPort?: number;
  /** Process whose RSS we report. */
  pid?: number;
  /** Pillion's admin port (/clusters, /metrics). */
  adminPort?: number;
  child?: ManagedChild;
}

const NODE = process.execPath;
export const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export async function startBackend(group: ChildGroup): Promise<{ ports: BackendPorts; child: ManagedChild }> {
  const child = group.spawn({
    name: 'backend',
    command: NODE,
    args: [resolveFromHere(import.meta.url, './backend-server.js')],
  });
  const line = await child.waitForJson({ msg: 'backend listening' }, 10_000);
  return { ports: { http: line.http as number, h2: line.h2 as number, tcp: line.tcp as number }, child };
}

export interface PillionOptions {
  name: string;
  accessLog: 'off' | string;
  cpuProf?: string;
  /** HTTP endpoints of the `backend` service (default: the one bench backend's HTTP port). */
  backendEndpoints?: readonly number[];
  /**
   * More policy of the `backend` service, as YAML flow-map entries (`retries: {...}, outlierDetection: {...}`):
   * the resilient shape the paired and fault cases measure.
   */
  backendPolicy?: string;
  /** More node flags for the proxy process (`--trace-gc`, for a profile). */
  nodeArgs?: readonly string[];
  /** Another build's dist/src/cli/main.js, for an A/B of two builds side by side (default: this build's). */
  mainJs?: string;
  /** More `pillion proxy` arguments (`--idle-memory-release off`). */
  proxyArgs?: readonly string[];
}

/** Retries and outlier detection as a user would turn them on (README's example): what the paired case prices. */
export const RESILIENT_POLICY =
  'retries: { attempts: 2, retryOn: [5xx, reset, connect-failure] }, ' +
  'outlierDetection: { consecutive5xx: 5, consecutiveGatewayFailure: 5, interval: 1s, baseEjectionTime: 3s, maxEjectionPercent: 34 }';

/** Pillion as a client-side sidecar: outbound listener (Host-routed) and an explicit TCP egress port. */
export async function startPillion(
  group: ChildGroup,
  dir: string,
  backend: BackendPorts,
  opts: PillionOptions,
): Promise<Target> {
  const [egressPort, unusedPort] = await freePorts(2);
  const config = `trustDomain: cluster.local
services:
  - name: bench-client
    namespace: default
    ports: [{ port: 8000, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${unusedPort}, weight: 1 }]
    policy: { mtls: DISABLE }
    egress: [{ localPort: ${egressPort}, service: sink, port: 9000 }]
  - name: backend
    namespace: default
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${(opts.backendEndpoints ?? [backend.http]).map((p) => `{ address: 127.0.0.1, port: ${p}, weight: 1 }`).join(', ')}]
    policy: { loadBalancer: { policy: least_request }, connectTimeout: 1s, timeout: 30s, mtls: DISABLE${opts.backendPolicy ? `, ${opts.backendPolicy}` : ''} }
  - name: backendh2
    namespace: default
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.h2}, weight: 1 }]
    policy: { loadBalancer: { policy: least_request }, connectTimeout: 1s, timeout: 30s, mtls: DISABLE }
  - name: sink
    namespace: default
    ports: [{ port: 9000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.tcp}, weight: 1 }]
    policy: { connectTimeout: 1s, mtls: DISABLE }
`;
  const configPath = join(dir, `${opts.name}.mesh.yaml`);
  writeFileSync(configPath, config);
  const nodeArgs = [...NODE_FLAGS, ...(opts.nodeArgs ?? []), ...(opts.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProf] : [])];
  const child = group.spawn({
    name: opts.name,
    command: NODE,
    args: [
      ...nodeArgs,
      opts.mainJs ?? resolveFromHere(import.meta.url, '../src/cli/main.js'),
      'proxy',
      '--config',
      configPath,
      '--service',
      'bench-client',
      '--node-id',
      `${opts.name}-1`,
      '--namespace',
      'default',
      '--app-port',
      String(unusedPort),
      '--admin-port',
      '0',
      '--inbound-port',
      '0',
      '--outbound-port',
      '0',
      '--log-level',
      'info',
      '--access-log',
      opts.accessLog,
      ...(opts.proxyArgs ?? []),
    ],
    keepLines: 400,
  });
  const outbound = await child.waitForJson({ msg: 'listening', listener: 'outbound' }, 20_000);
  const admin = await child.waitForJson({ msg: 'admin listening' }, 20_000);
  await waitForHttp(admin.port as number, '/ready', 20_000, { child });
  const port = outbound.port as number;
  const target: Target = {
    name: opts.name,
    httpPort: port,
    host: 'backend:8080',
    h2Port: port,
    authority: 'backendh2:8080',
    tcpPort: egressPort,
    adminPort: admin.port as number,
    child,
  };
  if (child.pid !== undefined) target.pid = child.pid;
  return target;
}

export async function startNginx(group: ChildGroup, dir: string, backend: BackendPorts): Promise<Target> {
  const [port, tcpPort] = await freePorts(2);
  const streamModule = NGINX_STREAM_MODULE;
  const hasStream = existsSync(streamModule);
  // Buffers hold a whole 1 MiB response in memory and never spill to a temp file (no disk in the path).
  const conf = `user root;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log warn;
${hasStream ? `load_module ${streamModule};` : ''}
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx-body;
  proxy_temp_path ${dir}/nginx-proxy;
  fastcgi_temp_path ${dir}/nginx-fastcgi;
  uwsgi_temp_path ${dir}/nginx-uwsgi;
  scgi_temp_path ${dir}/nginx-scgi;
  # The headers Pillion adds (see SAME_HEADERS): x-forwarded-for, a request id, a new traceparent.
  map $request_id $span_id { "~^(?<s>.{16})" $s; }
  upstream backend {
    server 127.0.0.1:${backend.http};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header traceparent 00-$request_id-$span_id-01;
      proxy_buffer_size 64k;
      proxy_buffers 16 64k;
      proxy_max_temp_file_size 0;
    }
  }
}
${hasStream ? `stream { server { listen 127.0.0.1:${tcpPort}; proxy_half_close on; proxy_pass 127.0.0.1:${backend.tcp}; } }` : ''}
`;
  const confPath = join(dir, 'nginx.conf');
  writeFileSync(confPath, conf);
  const child = group.spawn({
    name: 'nginx',
    command: 'nginx',
    args: ['-p', dir, '-c', confPath, '-e', `${dir}/nginx-error.log`, '-g', 'daemon off;'],
  });
  await waitForPort(port, 10_000, child);
  const target: Target = { name: 'nginx', httpPort: port, child };
  if (hasStream) target.tcpPort = tcpPort;
  if (child.pid !== undefined) target.pid = child.pid;
  return target;
}

/**
 * The headers Pillion adds to every proxied request (x-forwarded-for, a generated x-request-id, a new W3C
 * traceparent), added by HAProxy too: the backend then decodes the same head behind both, and each proxy does
 * the same work per request.
 */
const SAME_HEADERS = `  option forwardfor
  unique-id-format %[uuid(4)]
  unique-id-header x-request-id
  http-request set-header traceparent 00-%[uuid(4),regsub(-,,g)]-%[uuid(4),regsub(-,,g),bytes(0,16)]-01
`;

export async function startHaproxy(group: ChildGroup, dir: string, backend: BackendPorts): Promise<Target> {
  const [port, tcpPort, h2Port] = await freePorts(3);
  const cfg = `global
  nbthread 1
  maxconn 4096

defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s

frontend fe_http
  mode http
  bind 127.0.0.1:${port}
${SAME_HEADERS}  default_backend be_http

backend be_http
  mode http
  http-reuse always
  server s1 127.0.0.1:${backend.http}

# HTTP/2 on both sides (h2c with prior knowledge), multiplexed onto reused backend connections.
frontend fe_h2
  mode http
  bind 127.0.0.1:${h2Port} proto h2
${SAME_HEADERS}  default_backend be_h2

backend be_h2
  mode http
  http-reuse always
  server s1 127.0.0.1:${backend.h2} proto h2

listen tcp_sink
  mode tcp
  bind 127.0.0.1:${tcpPort}
  server s1 127.0.0.1:${backend.tcp}
`;
  const cfgPath = join(dir, 'haproxy.cfg');
  writeFileSync(cfgPath, cfg);
  const child = group.spawn({ name: 'haproxy', command: 'haproxy', args: ['-f', cfgPath, '-db'] });
  await waitForPort(port, 10_000, child);
  await waitForPort(tcpPort, 10_000, child);
  await waitForPort(h2Port, 10_000, child);
  const target: Target = { name: 'haproxy', httpPort: port, tcpPort, h2Port, child };
  if (child.pid !== undefined) target.pid = child.pid;
  return target;
}

export async function startHttpProxy(group: ChildGroup, backend: BackendPorts): Promise<Target> {
  const child = group.spawn({
    name: 'http-proxy',
    command: NODE,
    args: [resolveFromHere(import.meta.url, './http-proxy-server.js'), '--target', `http://127.0.0.1:${backend.http}`],
  });
  const line = await child.waitForJson({ msg: 'http-proxy listening' }, 10_000);
  const target: Target = { name: 'http-proxy', httpPort: line.port as number, child };
  if (child.pid !== undefined) target.pid = child.pid;
  return target;
}

/** A workload identity as files (PEM), as `pillion proxy --cert --key --ca` and nginx read them. */
export interface IdentityFiles {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** Two sidecars in a row for the mTLS case: the client's outbound, then the server's inbound, then the backend. */
export interface SidecarChain {
  /** The client side's plaintext entry (its outbound listener, Host `backend:8080`), as a load target. */
  client: Target;
  /** The server side's inbound port: TLS with a client certificate when `tls`, else plaintext HTTP/1.1. */
  serverPort: number;
  /** Pillion's server sidecar admin port, for its handshake counters (nginx has none). */
  serverAdminPort?: number;
  /** Pillion's two processes (client sidecar, server sidecar), for their CPU time; nginx's are not tracked. */
  pids?: number[];
  tls: boolean;
}

/**
 * Two `pillion proxy --config` processes (`frontend`'s sidecar calling `backend`'s), as a user runs them: with
 * identities the hop between them is mTLS STRICT; without, the mesh file says `mtls: DISABLE` and it is plaintext.
 * Everything else (balancer, timeouts, no access log) is the same, so the pair differs only in the transport.
 */
export async function startPillionChain(
  group: ChildGroup,
  dir: string,
  backend: BackendPorts,
  name: string,
  identities?: { client: IdentityFiles; server: IdentityFiles },
  cpuProf?: string,
): Promise<SidecarChain> {
  const [serverInbound, unusedPort] = await freePorts(2);
  const mode = identities ? 'STRICT' : 'DISABLE';
  const configPath = join(dir, `${name}.mesh.yaml`);
  writeFileSync(
    configPath,
    `trustDomain: cluster.local
services:
  - name: frontend
    namespace: default
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${unusedPort}, weight: 1 }]
    policy: { mtls: ${mode} }
  - name: backend
    namespace: default
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${serverInbound}, weight: 1 }]
    policy: { loadBalancer: { policy: least_request }, connectTimeout: 1s, timeout: 30s, mtls: ${mode} }
`,
  );
  const identityArgs = (id: IdentityFiles | undefined): string[] => (id ? ['--cert', id.certFile, '--key', id.keyFile, '--ca', id.caFile] : []);
  const spawnSidecar = (role: 'client' | 'server', extra: string[]): ManagedChild =>
    group.spawn({
      name: `${name}-${role}`,
      command: NODE,
      args: [
        ...NODE_FLAGS,
        ...(cpuProf ? ['--cpu-prof', '--cpu-prof-dir', cpuProf, '--cpu-prof-name', `${name}-${role}.cpuprofile`] : []),
        resolveFromHere(import.meta.url, '../src/cli/main.js'),
        'proxy',
        '--config',
        configPath,
        '--node-id',
        `${name}-${role}`,
        '--namespace',
        'default',
        '--admin-port',
        '0',
        '--outbound-port',
        '0',
        '--log-level',
        'info',
        '--access-log',
        'off',
        ...extra,
        ...identityArgs(identities?.[role]),
      ],
      keepLines: 400,
    });
  const server = spawnSidecar('server', ['--service', 'backend', '--app-port', String(backend.http), '--inbound-port', String(serverInbound)]);
  // The client sidecar has no app of its own here: no --app-port, so no inbound listener to start.
  const client = spawnSidecar('client', ['--service', 'frontend', '--inbound-port', '0']);
  const ready = async (child: ManagedChild): Promise<number> => {
    const admin = await child.waitForJson({ msg: 'admin listening' }, 20_000);
    await waitForHttp(admin.port as number, '/ready', 20_000, { child });
    return admin.port as number;
  };
  const outbound = await client.waitForJson({ msg: 'listening', listener: 'outbound' }, 20_000);
  const [serverAdmin, clientAdmin] = await Promise.all([ready(server), ready(client)]);
  const target: Target = { name, httpPort: outbound.port as number, host: 'backend:8080', adminPort: clientAdmin, child: client };
  if (client.pid !== undefined) target.pid = client.pid;
  const chain: SidecarChain = { client: target, serverPort: serverInbound, serverAdminPort: serverAdmin, tls: identities !== undefined };
  if (client.pid !== undefined && server.pid !== undefined) chain.pids = [client.pid, server.pid];
  return chain;
}

/**
 * The same two hops with nginx (one worker each, upstream keep-alive 64 as in `startNginx`): a client-side nginx
 * that originates mTLS (`proxy_ssl_certificate`, `proxy_ssl_trusted_certificate`, `proxy_ssl_verify`) to a
 * server-side nginx that requires a client certificate (`ssl_verify_client on`) and proxies to the backend. Each
 * nginx also has a plaintext pair of ports, so the plaintext chain runs on the very same two processes.
 */
export async function startNginxChains(
  group: ChildGroup,
  dir: string,
  backend: BackendPorts,
  identities: { client: IdentityFiles; server: IdentityFiles },
): Promise<{ tls: SidecarChain; plain: SidecarChain }> {
  const [clientTls, clientPlain, serverTls, serverPlain] = await freePorts(4);
  const proxyBlock = (upstream: string, extra: string): string => `location / {
      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffer_size 64k;
      proxy_buffers 16 64k;
      proxy_max_temp_file_size 0;${extra}
    }`;
  const conf = (role: string, upstreams: string, servers: string): string => {
    const p = join(dir, `nginx-${role}`);
    return `user root;
worker_processes 1;
pid ${p}.pid;
error_log ${p}-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${p}-body;
  proxy_temp_path ${p}-proxy;
  fastcgi_temp_path ${p}-fastcgi;
  uwsgi_temp_path ${p}-uwsgi;
  scgi_temp_path ${p}-scgi;
  keepalive_requests 1000000;
${upstreams}
${servers}
}
`;
  };
  const upstream = (name: string, port: number): string =>
    `  upstream ${name} { server 127.0.0.1:${port}; keepalive 64; keepalive_requests 1000000; }`;
  // The server certificate's only SAN is its SPIFFE URI, which nginx cannot match; with no DNS SAN, OpenSSL's
  // host check falls back to the subject CN, issued as `backend`, so proxy_ssl_verify still checks a name.
  const clientConf = conf(
    'client',
    [upstream('server_tls', serverTls), upstream('server_plain', serverPlain)].join('\n'),
    `  server {
    listen 127.0.0.1:${clientTls};
    ${proxyBlock(
      'https://server_tls',
      `
      proxy_ssl_certificate ${identities.client.certFile};
      proxy_ssl_certificate_key ${identities.client.keyFile};
      proxy_ssl_trusted_certificate ${identities.client.caFile};
      proxy_ssl_verify on;
      proxy_ssl_name backend;
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_session_reuse on;`,
    )}
  }
  server {
    listen 127.0.0.1:${clientPlain};
    ${proxyBlock('http://server_plain', '')}
  }`,
  );
  const serverConf = conf(
    'server',
    upstream('app', backend.http),
    `  server {
    listen 127.0.0.1:${serverTls} ssl;
    ssl_certificate ${identities.server.certFile};
    ssl_certificate_key ${identities.server.keyFile};
    ssl_client_certificate ${identities.server.caFile};
    ssl_verify_client on;
    ssl_protocols TLSv1.2 TLSv1.3;
    ${proxyBlock('http://app', '')}
  }
  server {
    listen 127.0.0.1:${serverPlain};
    ${proxyBlock('http://app', '')}
  }`,
  );
  const start = async (role: string, text: string, ports: number[]): Promise<ManagedChild> => {
    const confPath = join(dir, `nginx-${role}.conf`);
    writeFileSync(confPath, text);
    const child = group.spawn({
      name: `nginx-${role}`,
      command: 'nginx',
      args: ['-p', dir, '-c', confPath, '-e', join(dir, `nginx-${role}-error.log`), '-g', 'daemon off;'],
    });
    for (const port of ports) await waitForPort(port, 10_000, child);
    return child;
  };
  await start('server', serverConf, [serverTls, serverPlain]);
  const client = await start('client', clientConf, [clientTls, clientPlain]);
  const target = (name: string, port: number): Target => {
    const t: Target = { name, httpPort: port, child: client };
    if (client.pid !== undefined) t.pid = client.pid;
    return t;
  };
  return {
    tls: { client: target('nginx mTLS', clientTls), serverPort: serverTls, tls: true },
    plain: { client: target('nginx plaintext', clientPlain), serverPort: serverPlain, tls: false },
  };
}
