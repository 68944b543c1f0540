// Validates Kubernetes objects against the API's OpenAPI schema (kubernetes-models, offline), as
// `kubectl apply --dry-run=client` would: types, required fields, enums and formats. Unknown fields are not
// caught by the schema; what inject writes is typed with the same package's interfaces at compile time instead.
import yaml from 'js-yaml';
import * as apps from 'kubernetes-models/apps/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as core from 'kubernetes-models/v1';

type Model = new (data: object) => { validate(): void };
const GROUPS: Record<string, Record<string, unknown>> = { v1: core, 'apps/v1': apps, 'batch/v1': batch };

/** Each document's problem, or an empty list when every one validates. */
export function schemaProblems(text: string): string[] {
  const problems: string[] = [];
  yaml.loadAll(text, (doc) => {
    if (doc == null) return;
    const o = doc as { apiVersion?: string; kind?: string; metadata?: { name?: string } };
    const where = `${o.kind ?? '?'} ${o.metadata?.name ?? '?'}`;
    const Ctor = GROUPS[o.apiVersion ?? '']?.[o.kind ?? ''] as Model | undefined;
    if (Ctor === undefined) {
      problems.push(`${where}: no schema for apiVersion ${String(o.apiVersion)} kind ${String(o.kind)}`);
      return;
    }
    if (o.metadata?.name === undefined) problems.push(`${where}: metadata.name is required`);
    try {
      new Ctor(o).validate();
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`);
    }
  });
  return problems;
}
