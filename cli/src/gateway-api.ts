/**
 * The Gateway API's HTTPRoute (gateway.networking.k8s.io/v1 or v1beta1) in
 * its mesh (GAMMA) form, mapped onto a Weft httpRoute and back. Pure: no
 * I/O, no API; `weft apply -f` and `weft get httpRoutes -o gateway` call it.
 *
 * What maps (everything else is refused, naming the field by its path in
 * the document, so nothing a user wrote is silently dropped):
 *   metadata.name -> the route's name; metadata.namespace -> the tenant (it
 *     must agree with --tenant, as metadata.tenant does in Weft's documents);
 *     metadata.labels and annotations other than Weft's are Kubernetes
 *     bookkeeping and are ignored, as is a status a cluster wrote.
 *   spec.parentRefs[]: group "" (or "core"), kind Service (required: an absent
 *     kind means Gateway in the Gateway API), name, port.
 *   spec.rules[]: matches (path Exact/PathPrefix, headers Exact, method),
 *     filters RequestHeaderModifier/ResponseHeaderModifier, timeouts
 *     (request, backendRequest), backendRefs (group ""/core or absent, kind
 *     Service or absent, name, port, weight). A backendRef naming the route's
 *     parent service on its own port (or none) is that service's own backends.
 *
 * Weft's extensions the Gateway API lacks (a backendRef's labels subset, and
 * retry, whose Gateway API form (GEP-1731, experimental) counts status codes
 * where Weft names failure classes) travel in one annotation,
 * `weft.dev/rule-extensions`: a JSON array, one entry per rule (null or {}
 * where a rule has none), each {retry?, backendLabels?} with backendLabels
 * one entry per backendRef (null where a ref has none).
 */

export const GATEWAY_API_VERSIONS = ["gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1"] as const;
export const EXTENSIONS_ANNOTATION = "weft.dev/rule-extensions";

type Obj = Record<string, unknown>;

/** A part of the document Weft cannot take, by its path in the document (spec.rules[0].filters[1].type). */
export class GatewayMappingError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}`);
  }
}

/** Whether a document is a Gateway API object (it says apiVersion), not one of Weft's own (kind, metadata, spec). */
export const isGatewayDocument = (doc: Obj): boolean => "apiVersion" in doc;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

const at = (path: string, key: string | number): string => (typeof key === "number" ? `${path}[${key}]` : path ? `${path}.${key}` : key);

function object(v: unknown, path: string): Obj {
  if (!isObj(v)) throw new GatewayMappingError(path, "must be an object");
  return v;
}

function array(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new GatewayMappingError(path, "must be a list");
  return v;
}

function str(v: unknown, path: string): string {
  if (typeof v !== "string") throw new GatewayMappingError(path, "must be a string");
  return v;
}

/** Refuses every key of `o` that Weft does not map, with why when a known Gateway API field is not supported. */
function onlyKeys(o: Obj, path: string, known: readonly string[], unsupported: Record<string, string> = {}): void {
  for (const key of Object.keys(o)) {
    if (known.includes(key)) continue;
    throw new GatewayMappingError(at(path, key), unsupported[key] ?? `unknown field (this object takes ${known.join(", ")})`);
  }
}

/** Copies the keys of `o` that are present, in `keys` order. */
const present = (o: Obj, keys: readonly string[]): Obj => Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));

/** The Service group: "" (the core group) or "core"; absent is the core group too for backendRefs, and for parentRefs with kind Service. */
function requireCoreService(ref: Obj, path: string, kindRequired: boolean): void {
  if (ref.group !== undefined && ref.group !== "" && ref.group !== "core") {
    throw new GatewayMappingError(at(path, "group"), `"${String(ref.group)}" is not supported: Weft routes name services of the core group ("")`);
  }
  if (ref.kind === undefined && kindRequired) {
    throw new GatewayMappingError(at(path, "kind"), 'absent means Gateway in the Gateway API; Weft routes attach to services (the mesh form, GAMMA): kind: Service, group: ""');
  }
  if (ref.kind !== undefined && ref.kind !== "Service") throw new GatewayMappingError(at(path, "kind"), `${String(ref.kind)} is not supported: only Service`);
}

function requireNamespace(ref: Obj, path: string, tenant: string | undefined): void {
  if (ref.namespace === undefined) return;
  const namespace = str(ref.namespace, at(path, "namespace"));
  // Unchecked, a namespace would be dropped and the name read in whatever tenant the route lands in.
  if (tenant === undefined) throw new GatewayMappingError(at(path, "namespace"), "the route's tenant is not known here: set metadata.namespace or --tenant");
  if (namespace !== tenant) {
    throw new GatewayMappingError(at(path, "namespace"), `"${namespace}" is another tenant: a route names services of its own tenant ("${tenant}") only`);
  }
}

const PARENT_KEYS = ["group", "kind", "namespace", "name", "port"] as const;

function parentRefOf(raw: unknown, path: string, tenant: string | undefined): Obj {
  const ref = object(raw, path);
  onlyKeys(ref, path, PARENT_KEYS, { sectionName: "is not supported: a parent is a service, and port picks one of its ports" });
  requireCoreService(ref, path, true);
  requireNamespace(ref, path, tenant);
  return { name: str(ref.name, at(path, "name")), ...present(ref, ["port"]) };
}

function matchOf(raw: unknown, path: string): Obj {
  const m = object(raw, path);
  onlyKeys(m, path, ["path", "headers", "method"], { queryParams: "is not supported: Weft matches paths, headers and methods" });
  const out: Obj = {};
  if (m.path !== undefined) {
    const p = object(m.path, at(path, "path"));
    onlyKeys(p, at(path, "path"), ["type", "value"]);
    if (p.type !== undefined && p.type !== "Exact" && p.type !== "PathPrefix") {
      throw new GatewayMappingError(at(at(path, "path"), "type"), `${String(p.type)} is not supported: Exact or PathPrefix`);
    }
    // The Gateway API's default path is the prefix "/".
    out.path = { ...present(p, ["type"]), value: p.value ?? "/" };
  }
  if (m.headers !== undefined) {
    out.headers = array(m.headers, at(path, "headers")).map((raw, i) => {
      const hp = at(at(path, "headers"), i);
      const h = object(raw, hp);
      onlyKeys(h, hp, ["type", "name", "value"]);
      if (h.type !== undefined && h.type !== "Exact") throw new GatewayMappingError(at(hp, "type"), `${String(h.type)} is not supported: Exact only`);
      return present(h, ["type", "name", "value"]);
    });
  }
  if (m.method !== undefined) out.method = m.method;
  return out;
}

const FILTER_FIELDS = { RequestHeaderModifier: "requestHeaderModifier", ResponseHeaderModifier: "responseHeaderModifier" } as const;

function filterOf(raw: unknown, path: string): Obj {
  const f = object(raw, path);
  const type = str(f.type, at(path, "type"));
  if (!(type in FILTER_FIELDS)) {
    throw new GatewayMappingError(at(path, "type"), `${type} is not supported (Weft takes ${Object.keys(FILTER_FIELDS).join(" and ")})`);
  }
  const field = FILTER_FIELDS[type as keyof typeof FILTER_FIELDS];
  onlyKeys(f, path, ["type", field]);
  const modifier = object(f[field], at(path, field));
  onlyKeys(modifier, at(path, field), ["set", "add", "remove"]);
  return { type, [field]: present(modifier, ["set", "add", "remove"]) };
}

/** A backendRef naming a parent on the parent's own port (or none) is the parent's own backends: Weft's ref without a name. */
function backendRefOf(raw: unknown, path: string, tenant: string | undefined, parents: readonly Obj[]): Obj {
  const ref = object(raw, path);
  onlyKeys(ref, path, ["group", "kind", "namespace", "name", "port", "weight"], { filters: "is not supported: filters go on the rule" });
  requireCoreService(ref, path, false);
  requireNamespace(ref, path, tenant);
  const name = str(ref.name, at(path, "name"));
  const weight = present(ref, ["weight"]);
  const own = parents.length > 0 && parents.every((p) => p.name === name && (ref.port === undefined || p.port === undefined || p.port === ref.port));
  if (own) return weight;
  return { kind: "Service", name, ...present(ref, ["port"]), ...weight };
}

interface RuleExtensions {
  retry?: unknown;
  backendLabels?: (Record<string, string> | null)[];
}

function extensionsOf(annotations: Obj | undefined, rules: number): (RuleExtensions | null)[] {
  const path = `metadata.annotations["${EXTENSIONS_ANNOTATION}"]`;
  const text = annotations?.[EXTENSIONS_ANNOTATION];
  if (text === undefined) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(str(text, path));
  } catch (err) {
    if (err instanceof GatewayMappingError) throw err;
    throw new GatewayMappingError(path, "must be a JSON array, one entry per rule");
  }
  const list = array(parsed, path);
  if (list.length > rules) throw new GatewayMappingError(at(path, rules), `there are ${rules} rules`);
  return list.map((raw, i) => {
    if (raw === null) return null;
    const e = object(raw, at(path, i));
    onlyKeys(e, at(path, i), ["retry", "backendLabels"]);
    if (e.backendLabels !== undefined) array(e.backendLabels, at(at(path, i), "backendLabels"));
    return e as RuleExtensions;
  });
}

function ruleOf(raw: unknown, path: string, tenant: string | undefined, parents: readonly Obj[], ext: RuleExtensions | null): Obj {
  const rule = object(raw, path);
  onlyKeys(rule, path, ["matches", "filters", "backendRefs", "timeouts"], {
    retry: `is not supported in the Gateway API's form (status codes): Weft's retry (attempts, on: failure classes, nonIdempotent) goes in the ${EXTENSIONS_ANNOTATION} annotation`,
    sessionPersistence: "is not supported",
    name: "is not supported: Weft names rules by their index",
  });
  const out: Obj = {};
  if (rule.matches !== undefined) out.matches = array(rule.matches, at(path, "matches")).map((m, i) => matchOf(m, at(at(path, "matches"), i)));
  const refsPath = at(path, "backendRefs");
  const refs = array(rule.backendRefs ?? [], refsPath).map((r, i) => backendRefOf(r, at(refsPath, i), tenant, parents));
  const labels = ext?.backendLabels ?? [];
  if (labels.length > refs.length) throw new GatewayMappingError(`metadata.annotations["${EXTENSIONS_ANNOTATION}"]`, `${path} has ${refs.length} backendRefs, the annotation names labels for ${labels.length}`);
  out.backendRefs = refs.map((r, i) => (labels[i] ? { ...r, labels: labels[i] } : r));
  if (rule.filters !== undefined) out.filters = array(rule.filters, at(path, "filters")).map((f, i) => filterOf(f, at(at(path, "filters"), i)));
  if (rule.timeouts !== undefined) {
    const t = object(rule.timeouts, at(path, "timeouts"));
    onlyKeys(t, at(path, "timeouts"), ["request", "backendRequest"]);
    out.timeouts = present(t, ["request", "backendRequest"]);
  }
  if (ext?.retry !== undefined) out.retry = ext.retry;
  return out;
}

export interface MappedRoute {
  name: string;
  /** metadata.namespace, when the document says one: the tenant it belongs to. */
  namespace?: string;
  /** The body of PUT /v1/tenants/{tenant}/httpRoutes/{name}. */
  spec: Obj;
}

/**
 * A Gateway API HTTPRoute document as a Weft httpRoute. `tenant` is the
 * tenant the caller means (--tenant), if known: a namespace naming another
 * one, anywhere in the document, is refused.
 */
export function fromGatewayHttpRoute(doc: Obj, tenant?: string): MappedRoute {
  const apiVersion = str(doc.apiVersion, "apiVersion");
  if (!(GATEWAY_API_VERSIONS as readonly string[]).includes(apiVersion)) {
    throw new GatewayMappingError("apiVersion", `${apiVersion} is not supported (${GATEWAY_API_VERSIONS.join(" or ")})`);
  }
  const kind = str(doc.kind, "kind");
  if (kind !== "HTTPRoute") throw new GatewayMappingError("kind", `${kind} is not supported: Weft takes HTTPRoute (in its mesh form, attached to services)`);
  onlyKeys(doc, "", ["apiVersion", "kind", "metadata", "spec", "status"]);
  const meta = object(doc.metadata, "metadata");
  // What a cluster writes into metadata is bookkeeping: read back from kubectl, it is ignored, never refused.
  onlyKeys(meta, "metadata", ["name", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"], {
    tenant: "is Weft's own documents' field: a Gateway API document names its tenant by metadata.namespace",
  });
  const name = str(meta.name, "metadata.name");
  const namespace = meta.namespace === undefined ? undefined : str(meta.namespace, "metadata.namespace");
  if (namespace !== undefined && tenant !== undefined && namespace !== tenant) {
    throw new GatewayMappingError("metadata.namespace", `is "${namespace}" but the tenant is "${tenant}"`);
  }
  const owner = namespace ?? tenant;
  const annotations = meta.annotations === undefined ? undefined : object(meta.annotations, "metadata.annotations");
  const spec = object(doc.spec, "spec");
  onlyKeys(spec, "spec", ["parentRefs", "rules"], { hostnames: "is not supported: a mesh route takes every request to its parent services" });
  const parents = array(spec.parentRefs, "spec.parentRefs").map((p, i) => parentRefOf(p, `spec.parentRefs[${i}]`, owner));
  const rawRules = array(spec.rules ?? [{}], "spec.rules");
  const extensions = extensionsOf(annotations, rawRules.length);
  const rules = rawRules.map((r, i) => ruleOf(r, `spec.rules[${i}]`, owner, parents, extensions[i] ?? null));
  return { name, ...(namespace === undefined ? {} : { namespace }), spec: { parentRefs: parents, rules } };
}

/** Why a route cannot be written as Gateway API (a ref to its parents' backends when it has several parent services). */
export class NotExpressible extends Error {}

/**
 * A Weft httpRoute (as the API answers it) as a Gateway API HTTPRoute
 * document, which fromGatewayHttpRoute reads back to the same route.
 */
export function toGatewayHttpRoute(item: Obj, tenant: string | undefined): Obj {
  const name = item.name as string;
  const parents = (item.parentRefs as Obj[]).map((p) => ({ group: "", kind: "Service", name: p.name, ...present(p, ["port"]) }));
  const parentNames = [...new Set(parents.map((p) => p.name as string))];
  const extensions: (RuleExtensions | null)[] = [];
  const rules = (item.rules as Obj[]).map((rule, r) => {
    const refs = rule.backendRefs as Obj[];
    const backendRefs = refs.map((ref, b) => {
      if (ref.name === undefined) {
        // The parent's own backends: the Gateway API names a backend, so this is the parent by name.
        if (parentNames.length !== 1) {
          throw new NotExpressible(`rules[${r}].backendRefs[${b}] takes the backends of its parent services, and the route has ${parentNames.length}: the Gateway API has no name for that`);
        }
        const port = parents.length === 1 ? present(parents[0]!, ["port"]) : {};
        return { group: "", kind: "Service", name: parentNames[0], ...port, ...present(ref, ["weight"]) };
      }
      return { group: "", kind: "Service", ...present(ref, ["name", "port", "weight"]) };
    });
    const ext: RuleExtensions = {};
    if (refs.some((ref) => ref.labels !== undefined)) ext.backendLabels = refs.map((ref) => (ref.labels as Record<string, string> | undefined) ?? null);
    if (rule.retry !== undefined) ext.retry = rule.retry;
    extensions.push(Object.keys(ext).length ? ext : null);
    return { ...present(rule, ["matches", "filters"]), backendRefs, ...present(rule, ["timeouts"]) };
  });
  const annotations = extensions.some((e) => e !== null) ? { annotations: { [EXTENSIONS_ANNOTATION]: JSON.stringify(extensions) } } : {};
  const metadata = { name, ...(tenant === undefined ? {} : { namespace: tenant }), ...annotations };
  return { apiVersion: GATEWAY_API_VERSIONS[0], kind: "HTTPRoute", metadata, spec: { parentRefs: parents, rules } };
}
