import { isDeepStrictEqual } from "node:util";
import type { FastifyInstance } from "fastify";

export const OPENAPI_PATH = new URL("../../openapi/openapi.json", import.meta.url).pathname;

/** The served document, serialized the one way both the file and the drift test use. */
export function openApiDocument(app: FastifyInstance): string {
  return `${JSON.stringify(app.swagger(), null, 2)}\n`;
}

// ---- operation ids --------------------------------------------------------

const pascal = (segment: string) =>
  segment
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join("");

/** identities -> Identity, x509-svids -> X509Svid, federated-bundles -> FederatedBundle. */
const singular = (segment: string) => pascal(segment.replace(/ies$/, "y").replace(/s$/, ""));
const isParam = (segment: string) => segment.startsWith(":") || segment.startsWith("{");
const isPlural = (segment: string) => segment.endsWith("s");

/**
 * An operation id a client generator turns into a good method name, derived
 * from the route so that new routes need no edit:
 *   GET    /v1/tenants/:tenant/identities        listIdentities
 *   POST   /v1/tenants/:tenant/tokens            createToken
 *   GET    /v1/tenants/:tenant/identities/:name  getIdentity     (put, delete alike)
 *   GET    /v1/nodes/:node/workloads             listNodeWorkloads
 *   PUT    /v1/nodes/:node/status                putNodeStatus
 *   POST   /v1/tenants/:tenant/ca/prepare        prepareCa       (a verb after a noun: an action)
 *   GET    /v1/tenants/:tenant/bundle.pem        getBundlePem
 * Every resource lives in a tenant unless it says otherwise, so the
 * `tenants/:tenant` prefix names nothing; any other parent is named in the
 * singular. A route that reads better otherwise sets schema.operationId.
 */
export function operationIdOf(method: string, url: string): string {
  const verb = method.toLowerCase();
  const segments = url.split("/").filter((s) => s && s !== "v1");
  if (segments[0] === "tenants" && segments.length > 2) segments.splice(0, 2);
  const last = segments[segments.length - 1]!;
  // Each static segment followed by a parameter names a resource, in the singular.
  const resources = (segs: string[]) => segs.filter((s, i) => !isParam(s) && isParam(segs[i + 1] ?? "")).map(singular);
  if (isParam(last)) return verb + resources(segments).join("");
  const parents = resources(segments.slice(0, -1));
  const before = segments[segments.length - 2];
  if (verb === "post" && !isPlural(last) && before !== undefined && !isParam(before)) {
    return last.replace(/[^A-Za-z0-9]/g, "") + segments.slice(0, -1).filter((s) => !isParam(s)).map(singular).join("");
  }
  if (verb === "post" && isPlural(last)) return `create${parents.join("")}${singular(last)}`;
  if (verb === "get" && isPlural(last)) return `list${parents.join("")}${pascal(last)}`;
  return verb + parents.join("") + pascal(last);
}

// ---- named schemas --------------------------------------------------------

type Json = Record<string, unknown>;
type MediaTypes = Record<string, { schema?: Json }>;
interface Operation {
  operationId?: string;
  requestBody?: { content?: MediaTypes };
  responses?: Record<string, { content?: MediaTypes }>;
}
interface Document {
  paths?: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Json> } & Json;
}

const BODILESS = ["204", "304"];
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const isJson = (mediaType: string) => /^application\/(.+\+)?json$/.test(mediaType);
/** Worth a name of its own: a body a client builds or reads, not a bare string or a ref. */
const isStructured = (s: Json) => s.$ref === undefined && (s.type === "object" || s.type === "array" || "anyOf" in s || "oneOf" in s);

/**
 * Moves the document's schemas into components/schemas, so client
 * generators name the types (Identity, ListIdentitiesResponse) instead of
 * inventing one per use. A schema with a title (the route schemas' TypeBox
 * `title`) goes there under its title, wherever it occurs; a JSON request or
 * response body without one under its operation's name plus Request or
 * Response. Two different schemas under one title are a mistake in the route
 * schemas, and generation fails naming it.
 */
export function withNamedSchemas<D extends Document>(input: D): D {
  const doc = structuredClone(input);
  const named: Record<string, Json> = { ...(doc.components?.schemas ?? {}) };

  const register = (name: string, schema: Json, where: string): Json => {
    const existing = named[name];
    if (existing !== undefined && !isDeepStrictEqual(existing, schema)) {
      throw new Error(`OpenAPI: two different schemas are named "${name}" (the second at ${where}); give one another title`);
    }
    named[name] = schema;
    return ref(name);
  };

  /** Replaces every titled schema inside `node` by a ref, innermost first. */
  const hoist = (node: unknown, where: string): unknown => {
    if (Array.isArray(node)) return node.map((n, i) => hoist(n, `${where}/${i}`));
    if (node === null || typeof node !== "object") return node;
    const out: Json = {};
    for (const [k, v] of Object.entries(node)) out[k] = hoist(v, `${where}/${k}`);
    if (typeof out.title !== "string" || out.type === undefined) return out;
    // A use may describe its schema in its own words: the words stay at the use, beside the ref.
    const { description, ...schema } = out;
    return description === undefined ? register(out.title, schema, where) : { ...register(out.title, schema, where), description };
  };

  const nameBody = (content: MediaTypes | undefined, name: string, where: string) => {
    for (const [mediaType, media] of Object.entries(content ?? {})) {
      if (!media.schema) continue;
      const schema = hoist(media.schema, `${where}/${mediaType}`) as Json;
      media.schema = isJson(mediaType) && isStructured(schema) ? register(name, schema, `${where}/${mediaType}`) : schema;
    }
  };

  for (const [path, ops] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(ops)) {
      // 204 and 304 carry no body (RFC 9110): a generated client must not expect JSON from them.
      for (const status of BODILESS) if (op.responses?.[status]) delete op.responses[status].content;
      const base = pascal(op.operationId ?? operationIdOf(method, path));
      const where = `${method.toUpperCase()} ${path}`;
      nameBody(op.requestBody?.content, `${base}Request`, `${where} request`);
      const statuses = Object.entries(op.responses ?? {});
      const success = statuses.filter(([status]) => status.startsWith("2"));
      for (const [status, response] of statuses) {
        // One success body keeps the plain name; several different ones are told apart by status.
        const name = success.length > 1 && !sameBodies(success.map(([, r]) => r.content)) ? `${base}Response${status}` : `${base}Response`;
        nameBody(response.content, status.startsWith("2") ? name : `${base}Response${status}`, `${where} ${status}`);
      }
    }
  }
  doc.components = { ...doc.components, schemas: Object.fromEntries(Object.entries(named).sort(([a], [b]) => a.localeCompare(b))) };
  return doc;
}

function sameBodies(contents: (MediaTypes | undefined)[]): boolean {
  const bodies = contents.filter((c) => c !== undefined && Object.keys(c).length > 0);
  return bodies.every((c) => isDeepStrictEqual(c, bodies[0]));
}

/** Fails generation when two operations end up with one id: generated clients would merge them. */
export function assertUniqueOperationIds(doc: Document): void {
  const seen = new Map<string, string>();
  for (const [path, ops] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(ops)) {
      const id = op.operationId;
      if (id === undefined) continue;
      const other = seen.get(id);
      if (other) throw new Error(`OpenAPI: operationId "${id}" names both ${other} and ${method.toUpperCase()} ${path}`);
      seen.set(id, `${method.toUpperCase()} ${path}`);
    }
  }
}
