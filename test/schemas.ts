import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ErrorObject } from 'ajv';
import Ajv2019 from 'ajv/dist/2019';
import Ajv2020 from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import { errorRatesFacetSchema } from '../sink/catalog/lineage';
import { ROOT } from './helpers';

/** Copies of the official ODCS, ODPS and OpenLineage schemas, next to the repository. */
export const SCHEMAS_DIR = path.resolve(ROOT, '../shared/schemas');
export const HAS_SCHEMAS = existsSync(SCHEMAS_DIR);

export interface Validators {
  contract(doc: unknown): string[];
  product(doc: unknown): string[];
  runEvent(doc: unknown): string[];
}

type Json = Record<string, unknown>;

const readJson = (file: string): Json => JSON.parse(readFileSync(file, 'utf8')) as Json;

function message(e: ErrorObject, prefix = ''): string {
  const p = e.params as Record<string, unknown>;
  const detail = p['additionalProperty'] ?? p['unevaluatedProperty'] ?? p['missingProperty'] ?? (p['allowedValues'] ? JSON.stringify(p['allowedValues']) : undefined);
  return `${prefix}${e.instancePath || '/'} ${e.message ?? e.keyword}${detail === undefined ? '' : `: ${String(detail)}`}`;
}

const messages = (errors: ErrorObject[] | null | undefined, prefix?: string): string[] => (errors ?? []).map((e) => message(e, prefix));

/** Every facet of an event, with its JSON pointer and its key. */
function facetsOf(event: Json): Array<{ at: string; key: string; facet: Json }> {
  const found: Array<{ at: string; key: string; facet: Json }> = [];
  const collect = (owner: unknown, at: string, containers: string[]) => {
    if (typeof owner !== 'object' || owner === null) return;
    for (const container of containers) {
      const facets = (owner as Json)[container];
      if (typeof facets !== 'object' || facets === null) continue;
      for (const [key, facet] of Object.entries(facets)) found.push({ at: `${at}/${container}/${key}`, key, facet: facet as Json });
    }
  };
  collect(event['run'], '/run', ['facets']);
  collect(event['job'], '/job', ['facets']);
  for (const side of ['inputs', 'outputs'] as const) {
    const datasets = Array.isArray(event[side]) ? (event[side] as unknown[]) : [];
    datasets.forEach((d, i) => collect(d, `/${side}/${i}`, ['facets', side === 'inputs' ? 'inputFacets' : 'outputFacets']));
  }
  return found;
}

/**
 * Validators of the official schemas, or null when the copies are not there. A RunEvent is
 * checked against OpenLineage.json, and then each facet against the schema its
 * `_schemaURL` names, under the key that schema defines: the core schema alone checks
 * only a facet's `_producer` and `_schemaURL`.
 */
export function loadValidators(): Validators | null {
  if (!HAS_SCHEMAS) return null;

  const ajv2019 = new Ajv2019({ allErrors: true });
  addFormats(ajv2019);
  const contract = ajv2019.compile(readJson(path.join(SCHEMAS_DIR, 'odcs/odcs-json-schema-v3.1.0.json')));
  const product = ajv2019.compile(readJson(path.join(SCHEMAS_DIR, 'odps/odps-json-schema-v1.0.0.json')));

  // Union types are in our own facet schema (a count or null); the official ones use
  // `example` and `documentation`, which are annotations, not JSON Schema keywords.
  const ajv2020 = new Ajv2020({ allErrors: true, allowUnionTypes: true });
  addFormats(ajv2020);
  ajv2020.addKeyword('example').addKeyword('documentation');
  const facetDir = path.join(SCHEMAS_DIR, 'openlineage/facets');
  const roots = new Map<string, Json>();
  for (const schema of [...readdirSync(facetDir).map((f) => readJson(path.join(facetDir, f))), errorRatesFacetSchema as Json]) {
    roots.set(schema['$id'] as string, schema);
    ajv2020.addSchema(schema);
  }
  const core = readJson(path.join(SCHEMAS_DIR, 'openlineage/OpenLineage.json'));
  ajv2020.addSchema(core);
  const event = ajv2020.getSchema(core['$id'] as string)!;

  function facetErrors({ at, key, facet }: { at: string; key: string; facet: Json }): string[] {
    const url = facet['_schemaURL'];
    if (typeof url !== 'string') return [`${at} has no _schemaURL`];
    const [id = '', fragment = ''] = url.split('#');
    const root = roots.get(id);
    if (!root) return [`${at}: _schemaURL ${url} names no known facet schema`];
    const keyed = (root['properties'] as Record<string, { $ref?: string }> | undefined)?.[key];
    if (keyed?.$ref !== `#${fragment}`) return [`${at}: ${id} defines no facet '${key}' at #${fragment}`];
    const validate = ajv2020.getSchema(url);
    if (!validate) return [`${at}: cannot resolve ${url}`];
    return validate(facet) ? [] : messages(validate.errors, at);
  }

  return {
    contract: (doc) => (contract(doc) ? [] : messages(contract.errors)),
    product: (doc) => (product(doc) ? [] : messages(product.errors)),
    runEvent(doc) {
      if (!event(doc)) return messages(event.errors);
      return facetsOf(doc as Json).flatMap(facetErrors);
    },
  };
}
