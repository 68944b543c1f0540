// `pillion proxy --xds` as a real process (built dist/) against a scripted ADS server: fails over past a dead
// server, /ready is 503 until the config is warm, logs `proxy ready`, ACKs, serves, and exits 0 on SIGTERM.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TYPE_URLS } from '../../src/config/protos.js';
import { parseProxyArgs, UsageError } from '../../src/bootstrap/args.js';
import { deadPort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { runPillion } from '../helpers/process.js';
import { compile, meshYaml, NODE } from './fixtures.js';
import { startScriptedAds, type ScriptedAds, type WireRequest } from './scripted-ads.js';

describe('parseProxyArgs --xds', () => {
  it('takes a list of HOST:PORT servers without --config', () => {
    const boot = parseProxyArgs(['--service', 'web', '--xds', 'a.example:15010, 127.0.0.1:15011,[::1]:15012']);
    expect(boot.xds).toEqual(['a.example:15010', '127.0.0.1:15011', '[::1]:15012']);
    expect(boot.configFile).toBeUndefined();
  });

  it.each([
    [['--xds', 'a.example'], /expected HOST:PORT, got "a.example"/],
    [['--xds', 'a:0'], /expected HOST:PORT/],
    [['--xds', ','], /expected HOST:PORT/],
    [['--xds', 'a:1', '--config', 'mesh.yaml'], /not both/],
    [['--config', 'mesh.yaml', '--xds-ca', 'ca.pem'], /--xds-ca needs --xds/],
    [['--xds', 'a:1', '--token', 'web.token'], /--token needs --xds-ca/],
  ])('rejects %j', (extra, message) => {
    expect(() => parseProxyArgs(['--service', 'web', ...extra])).toThrow(UsageError);
    expect(() => parseProxyArgs(['--service', 'web', ...extra])).toThrow(message);
  });

  it('takes --xds-ca and --token together', () => {
    const boot = parseProxyArgs(['--service', 'web', '--xds', 'cp:15012', '--xds-ca', 'root-cert.pem', '--token', 'web.token']);
    expect(boot).toMatchObject({ xdsCaFile: 'root-cert.pem', tokenFile: 'web.token' });
  });
});

describe('pillion proxy --xds (process)', () => {
  let server: ScriptedAds;
  let backend: Backend;

  beforeAll(async () => {
    server = await startScriptedAds();
    backend = await startHttpBackend('backend');
  });

  afterAll(async () => {
    await server.close();
    await backend.close();
  });

  it('connects past a dead server, warms, serves, and drains on SIGTERM', async () => {
    const dead = `127.0.0.1:${await deadPort()}`;
    const proc = runPillion([
      'proxy', '--xds', `${dead},${server.address}`, '--service', 'frontend', '--node-id', NODE.id,
      '--admin-port', '0', '--outbound-port', '0', '--inbound-port', '0', '--access-log', 'off',
    ]);
    try {
      const admin = Number((await proc.waitForLine((l) => l.msg === 'admin listening')).port);
      const is = (type: string, nonce?: string) => (r: WireRequest) => r.type_url === type && (nonce === undefined || r.response_nonce === nonce);
      const first = await server.waitFor(is(TYPE_URLS.Cluster), 10_000);
      expect(first.node?.id).toBe(NODE.id);
      expect((await fetch(`http://127.0.0.1:${admin}/ready`)).status).toBe(503);

      const res = compile(meshYaml(backend.port));
      server.send(TYPE_URLS.Cluster, 'cv1', 'c1', res.clusters);
      server.send(TYPE_URLS.Listener, 'lv1', 'l1', res.listeners);
      await server.waitFor(is(TYPE_URLS.ClusterLoadAssignment));
      await server.waitFor(is(TYPE_URLS.RouteConfiguration));
      server.send(TYPE_URLS.ClusterLoadAssignment, 'ev1', 'e1', res.endpoints);
      server.send(TYPE_URLS.RouteConfiguration, 'rv1', 'r1', res.routes);
      await proc.waitForLine((l) => l.msg === 'proxy ready');
      expect((await fetch(`http://127.0.0.1:${admin}/ready`)).status).toBe(200);

      const outbound = Number((await proc.waitForLine((l) => l.msg === 'listening' && l.listener === 'outbound')).port);
      const reply = await request(outbound, { host: 'backend', path: '/via-xds' });
      expect(reply.status).toBe(200);
      expect(JSON.parse(reply.body).url).toBe('/via-xds');

      expect(await proc.waitForLine((l) => l.msg === 'xds connected')).toMatchObject({ server: server.address });
      expect(await proc.waitForLine((l) => l.msg === 'xds ACK' && l.type === 'routes')).toMatchObject({ version: 'rv1' });
      // Each type shows its own last ACKed version, as Envoy's config_dump does.
      const dump = (await (await fetch(`http://127.0.0.1:${admin}/config_dump?format=pillion`)).json()) as { config: { versions: unknown } };
      expect(dump.config.versions).toEqual({ listeners: 'lv1', routes: 'rv1', clusters: 'cv1', endpoints: 'ev1' });
      expect(proc.lines.some((l) => l.msg === 'xds: cannot reach control server' && l.server === dead)).toBe(true);

      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    } finally {
      if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
    }
  });
});
