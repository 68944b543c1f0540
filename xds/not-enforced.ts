// Settings the mesh config accepts and compiles into xDS that the data path does not enforce yet. Every load of
// a mesh file names them in warnings: an operator who relies on one for safety must hear that it is not there,
// not learn it from an outage. Remove a line here in the change that makes its setting real.
import type { MeshConfig } from './mesh-config.js';

interface Unenforced {
  /** The paths of the settings, e.g. services[0].policy.retries. */
  readonly paths: string[];
  readonly message: string;
}

/** One warning per kind of setting, naming every path where it is set; none when nothing unenforced is set. */
export function notEnforcedWarnings(mesh: MeshConfig, opts: { readonly workloadIdentity?: boolean } = {}): string[] {
  const kinds: Unenforced[] = [
    {
      paths: [],
      // mTLS is enforced by proxies with a workload identity (--cert/--key/--ca, or the mesh CA); a caller that
      // cannot say whether its proxies have one (the control server) keeps the warning.
      message: opts.workloadIdentity === true ? '' :
        'mtls STRICT and PERMISSIVE (STRICT is the default) are enforced only by proxies with a workload identity (--cert/--key/--ca, or certificates from the mesh CA): without one, traffic between sidecars is plaintext; write mtls: DISABLE to say so',
    },
    {
      paths: [],
      message: opts.workloadIdentity === true ? '' :
        'principals and namespaces match only peers that mTLS proved: on a proxy without a workload identity (plaintext) they match no caller, ' +
        'so an allow rule that names them admits nobody and a deny rule that names them refuses nobody (methods, paths, ports and requestPrincipals are enforced)',
    },
  ];
  const [mtls, authz] = kinds as [Unenforced, Unenforced];
  mesh.services.forEach((service, i) => {
    const at = `services[${i}]`;
    const policy = service.policy;
    if (policy.mtls !== 'DISABLE') mtls.paths.push(`${at}.policy.mtls`);
    const a = service.authorization;
    for (const key of ['allow', 'deny'] as const) {
      a?.[key]?.forEach((rule, j) => {
        if (rule.principals !== undefined) authz.paths.push(`${at}.authorization.${key}[${j}].principals`);
        if (rule.namespaces !== undefined) authz.paths.push(`${at}.authorization.${key}[${j}].namespaces`);
      });
    }
  });
  return kinds.filter((k) => k.paths.length > 0 && k.message !== '').map((k) => `${listPaths(k.paths)}: ${k.message}`);
}

/** Up to five paths, then how many more: a mesh of 500 services must not make a 30 KB log line. */
function listPaths(paths: string[]): string {
  const shown = paths.slice(0, 5).join(', ');
  return paths.length > 5 ? `${shown} and ${paths.length - 5} more` : shown;
}
