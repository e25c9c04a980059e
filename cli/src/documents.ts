/**
 * The files `weft apply -f` and `weft delete -f` read: YAML (documents
 * separated by `---`) or JSON (one object, or an array of them), each
 * document
 *
 *     kind: Service            # or "services"; any kind with a PUT
 *     metadata:
 *       name: web
 *       tenant: acme           # absent: --tenant, else the login's tenant
 *     spec: { ...the body of PUT /v1/tenants/{tenant}/services/{name} }
 *
 * Tenants themselves are `kind: Tenant` with `metadata.name` only. A
 * Gateway API HTTPRoute (it says `apiVersion: gateway.networking.k8s.io/v1`)
 * is an httpRoute, its metadata.namespace the tenant (gateway-api.ts).
 */
import { isMap, parseAllDocuments } from "yaml";
import { CommandError } from "./errors.ts";
import { fromGatewayHttpRoute, GatewayMappingError, isGatewayDocument } from "./gateway-api.ts";
import { findKind, kindNames, type Kind } from "./kinds.ts";

export interface ResourceDocument {
  kind: Kind;
  name: string;
  /** The tenant it belongs to; for a Tenant document, its own name. */
  tenant: string;
  spec: Record<string, unknown>;
  /** Where it came from, for messages: `file.yaml, document 2 (line 14)`. */
  where: string;
}

interface Raw {
  value: unknown;
  line: number | null;
}

/** The documents of a file's text, in order; empty documents are skipped. */
export function splitDocuments(text: string, file: string): Raw[] {
  const docs = parseAllDocuments(text, { prettyErrors: true, uniqueKeys: true });
  if (!Array.isArray(docs)) return []; // an empty stream
  const out: Raw[] = [];
  for (const doc of docs) {
    if (doc.errors.length) throw new CommandError(`${file}: not valid YAML or JSON: ${doc.errors[0]!.message.split("\n")[0]}`);
    const line = doc.contents ? lineOf(text, doc.contents.range?.[0] ?? 0) : null;
    const value = doc.toJS() as unknown;
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) {
      // A JSON array (or a YAML sequence) of documents.
      const seq = doc.contents as { items?: { range?: [number, number, number] }[] } | null;
      value.forEach((v, i) => out.push({ value: v, line: lineOf(text, seq?.items?.[i]?.range?.[0] ?? 0) }));
    } else {
      if (!isMap(doc.contents)) throw new CommandError(`${file} (line ${line}): a document must be an object with kind, metadata and spec`);
      out.push({ value, line });
    }
  }
  return out;
}

const lineOf = (text: string, offset: number): number => text.slice(0, offset).split("\n").length;

const TOP_KEYS = ["kind", "metadata", "spec"];

/**
 * Reads each document's kind, name and tenant. `tenantFlag` is --tenant (a
 * document naming another tenant is refused, as kubectl refuses another
 * namespace); `defaultTenant` fills in where neither says.
 */
export function readDocuments(
  text: string,
  file: string,
  opts: { tenantFlag?: string; defaultTenant?: string; needs: "put" | "delete" },
): ResourceDocument[] {
  return splitDocuments(text, file).map((raw, i) => {
    const where = `${file}, document ${i + 1}${raw.line ? ` (line ${raw.line})` : ""}`;
    const fail = (why: string) => new CommandError(`${where}: ${why}`);
    if (!raw.value || typeof raw.value !== "object" || Array.isArray(raw.value)) throw fail("a document must be an object with kind, metadata and spec");
    const doc = raw.value as Record<string, unknown>;
    if (isGatewayDocument(doc)) return gatewayDocument(doc, where, opts);
    const extra = Object.keys(doc).filter((k) => !TOP_KEYS.includes(k));
    if (extra.length) throw fail(`unknown top-level field ${extra.map((k) => `"${k}"`).join(", ")} (a document has ${TOP_KEYS.join(", ")})`);
    if (typeof doc.kind !== "string") throw fail("kind is missing");
    const kind = findKind(doc.kind);
    const usable = (k: Kind) => Boolean(opts.needs === "put" ? k.routes.put : k.routes.delete) && k.itemKey === "name";
    if (!kind) throw fail(`unknown kind "${doc.kind}" (kinds: ${kindNames(usable)})`);
    if (!usable(kind)) throw fail(`${kind.plural} cannot be ${opts.needs === "put" ? "applied" : "deleted from a file"} (kinds: ${kindNames(usable)})`);
    const meta = doc.metadata;
    if (!meta || typeof meta !== "object" || Array.isArray(meta)) throw fail("metadata is missing (metadata: {name: ..., tenant: ...})");
    const { name, tenant, ...otherMeta } = meta as Record<string, unknown>;
    if (Object.keys(otherMeta).length) throw fail(`unknown metadata field ${Object.keys(otherMeta).map((k) => `"${k}"`).join(", ")} (metadata has name and tenant)`);
    if (typeof name !== "string" || name === "") throw fail("metadata.name is missing");
    if (tenant !== undefined && typeof tenant !== "string") throw fail("metadata.tenant must be a string");
    const spec = doc.spec ?? {};
    if (typeof spec !== "object" || Array.isArray(spec) || spec === null) throw fail("spec must be an object");
    if (kind.scope === "platform") {
      if (tenant !== undefined) throw fail(`a ${kind.kind} belongs to no tenant: remove metadata.tenant`);
      return { kind, name, tenant: name, spec: spec as Record<string, unknown>, where };
    }
    if (tenant !== undefined && opts.tenantFlag !== undefined && tenant !== opts.tenantFlag)
      throw fail(`metadata.tenant is "${tenant}" but --tenant is "${opts.tenantFlag}"`);
    const owner = (tenant as string | undefined) ?? opts.tenantFlag ?? opts.defaultTenant;
    if (!owner) throw fail("no tenant: set metadata.tenant, pass --tenant, or log in with --tenant");
    return { kind, name, tenant: owner, spec: spec as Record<string, unknown>, where };
  });
}

/** A Gateway API HTTPRoute as the httpRoute it maps to; what does not map is refused by its path in the document. */
function gatewayDocument(doc: Record<string, unknown>, where: string, opts: { tenantFlag?: string; defaultTenant?: string }): ResourceDocument {
  let mapped: ReturnType<typeof fromGatewayHttpRoute>;
  try {
    // --tenant must agree with metadata.namespace; the login's tenant only stands in where the document names none.
    const meta = doc.metadata as Record<string, unknown> | undefined;
    const stated = typeof meta === "object" && meta !== null && meta.namespace !== undefined;
    mapped = fromGatewayHttpRoute(doc, opts.tenantFlag ?? (stated ? undefined : opts.defaultTenant));
  } catch (err) {
    if (err instanceof GatewayMappingError) throw new CommandError(`${where}: ${err.message}`);
    throw err;
  }
  const tenant = mapped.namespace ?? opts.tenantFlag ?? opts.defaultTenant;
  if (!tenant) throw new CommandError(`${where}: no tenant: set metadata.namespace, pass --tenant, or log in with --tenant`);
  return { kind: findKind("HttpRoute")!, name: mapped.name, tenant, spec: mapped.spec, where };
}
