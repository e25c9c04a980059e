/**
 * The checked-in OpenAPI document, read once at module load: every
 * attribute schema of the provider is derived from it, so a field is
 * defined in one place (the API's route schemas that generate it).
 */
import { readFileSync } from "node:fs";

/** The subset of JSON Schema (2020-12, as OpenAPI 3.1 carries it) the API's documents use. */
export interface JsonSchema {
  type?: string;
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
}

interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  parameters?: { name: string; in: string; description?: string; schema?: JsonSchema }[];
  requestBody?: { content: Record<string, { schema: JsonSchema }> };
  responses: Record<string, { description?: string; content?: Record<string, { schema: JsonSchema }> }>;
}

interface Document {
  paths: Record<string, Record<string, Operation>>;
  tags?: { name: string; description?: string }[];
}

/**
 * The document with every `#/components/schemas/X` ref replaced by the
 * schema it names (a ref's own description kept over the schema's), so the
 * provider reads each body as one tree. The API's schemas are not recursive;
 * a cycle would be a bug there, and fails here rather than looping.
 */
export function inlineSchemaRefs<T>(doc: T & { components?: { schemas?: Record<string, unknown> } }): T {
  const named = doc.components?.schemas ?? {};
  const inline = (node: unknown, trail: string[]): unknown => {
    if (Array.isArray(node)) return node.map((n) => inline(n, trail));
    if (node === null || typeof node !== "object") return node;
    const { $ref, ...rest } = node as Record<string, unknown>;
    if (typeof $ref === "string" && $ref.startsWith("#/components/schemas/")) {
      const name = $ref.slice("#/components/schemas/".length);
      if (trail.includes(name)) throw new Error(`openapi/openapi.json: schema ${name} refers to itself`);
      if (!(name in named)) throw new Error(`openapi/openapi.json: no schema ${name} for ${$ref}`);
      return { ...(inline(named[name], [...trail, name]) as object), ...(inline(rest, trail) as object) };
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, inline(v, trail)]));
  };
  return inline(doc, []) as T;
}

export const DOCUMENT = inlineSchemaRefs(JSON.parse(readFileSync(new URL("../../../openapi/openapi.json", import.meta.url), "utf8")) as Document);

export function operation(path: string, method: "get" | "put" | "post" | "delete"): Operation {
  const op = DOCUMENT.paths[path]?.[method];
  if (!op) throw new Error(`openapi/openapi.json has no ${method.toUpperCase()} ${path}`);
  return op;
}

export function requestBody(path: string, method: "put" | "post"): JsonSchema {
  const schema = operation(path, method).requestBody?.content["application/json"]?.schema;
  if (!schema) throw new Error(`openapi/openapi.json: ${method.toUpperCase()} ${path} has no JSON body`);
  return schema;
}

export function responseBody(path: string, method: "get" | "put" | "post", status: string, mediaType = "application/json"): JsonSchema {
  const schema = operation(path, method).responses[status]?.content?.[mediaType]?.schema;
  if (!schema) throw new Error(`openapi/openapi.json: ${method.toUpperCase()} ${path} has no ${status} ${mediaType} response`);
  return schema;
}

export function responseDescription(path: string, method: "get", status: string): string | undefined {
  return operation(path, method).responses[status]?.description;
}

/** What the document says about a resource: its tag's description, then the PUT's notes. */
export function resourceDescription(path: string, method: "put" | "post"): string {
  const op = operation(path, method);
  const tag = DOCUMENT.tags?.find((t) => t.name === op.tags?.[0])?.description;
  return [tag && `${tag}.`, op.summary && `${op.summary}.`, op.description].filter(Boolean).join(" ");
}
