// Resources for the xDS client tests: a mesh compiled by the real compiler, plus hand-made broken resources.
import { compileForNode, type NodeInfo, type XdsResources } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import type { XdsResponse } from '../../src/xds/subscriptions.js';

export const NODE: NodeInfo = {
  id: 'test~frontend',
  service: 'frontend',
  namespace: 'default',
  serviceAccount: 'frontend',
  inboundPort: 0,
  outboundPort: 0,
};

/** A mesh where `frontend` calls `backend` (and optionally `extra`), each an HTTP service on port 8080. */
export function meshYaml(backendPort: number, opts: { extraPort?: number; pathPrefix?: string } = {}): string {
  let yaml = `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendPort} }]
`;
  if (opts.extraPort !== undefined) {
    yaml += `  - name: extra
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${opts.extraPort} }]
`;
  }
  return yaml;
}

export function compile(yaml: string, node: NodeInfo = NODE): XdsResources {
  return compileForNode(parseMeshConfig(yaml), node);
}

/** A DiscoveryResponse (as the client sees it) carrying `list`. */
export function response(
  typeUrl: string,
  version: string,
  nonce: string,
  list: readonly { typeUrl: string; value: Uint8Array }[],
): XdsResponse {
  return { typeUrl, versionInfo: version, nonce, resources: list.map((r) => ({ typeUrl: r.typeUrl, value: r.value })) };
}

/** A Cluster the translator rejects: lb_policy CLUSTER_PROVIDED without type ORIGINAL_DST (Envoy refuses it too). */
export function badCluster(name = 'bad.default:8080'): { name: string; typeUrl: string; value: Uint8Array } {
  return {
    name,
    typeUrl: TYPE_URLS.Cluster,
    value: encodeMessage(MESSAGE_NAMES.Cluster, {
      name,
      type: 'STATIC',
      connect_timeout: { seconds: 1 },
      lb_policy: 'CLUSTER_PROVIDED',
      load_assignment: { cluster_name: name, endpoints: [] },
    }),
  };
}

/** A Listener without an address: every xDS data plane rejects it (it cannot bind). */
export function listenerWithoutAddress(name = 'broken'): { name: string; typeUrl: string; value: Uint8Array } {
  return { name, typeUrl: TYPE_URLS.Listener, value: encodeMessage(MESSAGE_NAMES.Listener, { name }) };
}
