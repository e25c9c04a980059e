/**
 * Resources as `weft apply` documents (`weft get -o manifest`), so that
 * get, edit, apply round-trips. A document's spec is the resource's fields
 * that its PUT body declares in openapi/openapi.json: what the API derives
 * (spiffeId, vipAllocated, status) or keeps (etag, timestamps) stays out.
 */
import { readFileSync } from "node:fs";
import { stringify } from "yaml";
import type { Kind } from "./kinds.ts";
import type { Route } from "./routes.ts";

interface Schema {
  $ref?: string;
  properties?: Record<string, unknown>;
}
interface Document {
  paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: Schema }> } }>>;
  components?: { schemas?: Record<string, Schema> };
}

let loaded: Document | undefined;
const openapi = (): Document =>
  (loaded ??= JSON.parse(readFileSync(new URL("../../openapi/openapi.json", import.meta.url), "utf8")) as Document);

/** The top-level fields of a route's JSON body, following a $ref into components. */
export function bodyFields(route: Route, doc: Document = openapi()): string[] {
  let schema = doc.paths[route.path]?.[route.method.toLowerCase()]?.requestBody?.content?.["application/json"]?.schema;
  if (schema?.$ref) schema = doc.components?.schemas?.[schema.$ref.replace("#/components/schemas/", "")];
  if (!schema?.properties) throw new Error(`${route.method} ${route.path} declares no JSON body fields in openapi.json`);
  return Object.keys(schema.properties);
}

/**
 * The document that declares `item` as it is. Null fields are left out
 * (absent and null read the same to a PUT), and so are those the API chose.
 */
export function toDocument(kind: Kind, item: Record<string, unknown>, tenant: string | undefined): Record<string, unknown> {
  const chosen = kind.chosenByApi?.(item) ?? [];
  const kept = bodyFields(kind.routes.put!).filter((f) => item[f] !== undefined && item[f] !== null && !chosen.includes(f));
  const spec = Object.fromEntries(kept.map((f) => [f, item[f]]));
  const name = item[kind.itemKey] as string;
  const metadata = kind.scope === "tenant" ? { name, tenant } : { name };
  return { kind: kind.kind, metadata, spec };
}

/** YAML documents separated by ---, as `weft apply -f` reads them. */
export const manifest = (docs: Record<string, unknown>[]): string => docs.map((d) => stringify(d)).join("---\n");
