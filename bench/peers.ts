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
  const nodeArgs = [...NODE_FLAGS, ...(opts.cpuProf ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProf] : [])];
  const child = group.spawn({
    name: opts.name,
    command: NODE,
    args: [
      ...nodeArgs,
      resolveFromHere(import.meta.url, '../src/cli/main.js'),
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

export async function startHaproxy(group: ChildGroup, dir: string, backend: BackendPorts): Promise<Target> {
  const [port, tcpPort] = await freePorts(2);
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
  default_backend be_http

backend be_http
  mode http
  http-reuse always
  server s1 127.0.0.1:${backend.http}

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
  const target: Target = { name: 'haproxy', httpPort: port, tcpPort, child };
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
