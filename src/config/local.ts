// `pillion proxy --config mesh.yaml` without a control server: the same compiler and translators, in process.
import { compileForNode, type NodeInfo, type XdsResources } from '../../xds/compiler.js';
import { loadMeshConfigFile } from '../../xds/mesh-config.js';
import { notEnforcedWarnings } from '../../xds/not-enforced.js';
import type { ConfigSnapshot } from './model.js';
import { buildSnapshot, type ResourceError } from './snapshot.js';

/**
 * Read and validate the mesh file (throws MeshConfigError), compile this node's resources and translate them.
 * The snapshot version is "local": callers that reload the file should compare snapshots, not versions.
 */
export function loadLocalSnapshot(
  meshFile: string,
  node: NodeInfo,
): { snapshot: ConfigSnapshot; resources: XdsResources; errors: ResourceError[]; notEnforced: string[] } {
  const mesh = loadMeshConfigFile(meshFile);
  const resources = compileForNode(mesh, node);
  const { snapshot, errors } = buildSnapshot(resources, 'local');
  return { snapshot, resources, errors, notEnforced: notEnforcedWarnings(mesh, { workloadIdentity: node.workloadIdentity === true }) };
}
