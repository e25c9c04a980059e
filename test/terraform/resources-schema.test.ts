/**
 * The provider's schemas against openapi/openapi.json (expectations are read
 * from the document, not copied), and the pure parts: error paths,
 * validation, state upgrades. No API needed.
 */
import { describe, expect, it } from "vitest";
import { UNKNOWN, type TfAttribute, type TfObject, type TfValue } from "../../terraform/src/framework.ts";
import { deriveFields, snakeCase, syntheticField } from "../../terraform/src/weft/fields.ts";
import { DOCUMENT, requestBody, responseBody } from "../../terraform/src/weft/openapi.ts";
import { attributePathOf, problemDiagnostics } from "../../terraform/src/weft/problems.ts";
import { weftProvider } from "../../terraform/src/weft/provider.ts";

interface Schema {
  type?: string;
  description?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  anyOf?: Schema[];
}
// Read as the provider reads it: named schemas inlined.
const doc = DOCUMENT as unknown as {
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: Schema }> }; responses: Record<string, { content?: Record<string, { schema: Schema }> }> }>>;
};
const bodyOf = (path: string, method = "put") => doc.paths[path]![method]!.requestBody!.content["application/json"]!.schema;
const answerOf = (path: string, method = "get", status = "200") => doc.paths[path]![method]!.responses[status]!.content!["application/json"]!.schema;

const provider = weftProvider();
const resource = (name: string) => provider.resources.find((r) => r.typeName === name)!;
const attr = (attrs: TfAttribute[], name: string) => {
  const found = attrs.find((a) => a.name === name);
  if (!found) throw new Error(`no attribute ${name} among ${attrs.map((a) => a.name).join(", ")}`);
  return found;
};

const nonNull = (s: Schema): Schema => {
  const rest = s.anyOf?.filter((a) => a.type !== "null");
  return rest && rest.length === 1 && rest.length < s.anyOf!.length ? rest[0]! : s;
};
const nullable = (s: Schema) => s.anyOf?.some((a) => a.type === "null") ?? false;

/** The Terraform kind a JSON schema should become, written out from the translation rules. */
function expectedKind(raw: Schema): string {
  const s = nonNull(raw);
  if (s.anyOf) return s.anyOf.every((a) => a.type === "string") ? "string" : "nested:single";
  if (s.type === "integer" || s.type === "number") return "number";
  if (s.type === "boolean") return "bool";
  if (s.type === "string") return "string";
  if (s.type === "array") return expectedKind(s.items!).startsWith("nested") ? "nested:list" : `list:${expectedKind(s.items!)}`;
  if (s.properties) return "nested:single";
  if (typeof s.additionalProperties === "object") return `map:${expectedKind(s.additionalProperties)}`;
  throw new Error(`unexpected schema ${JSON.stringify(s)}`);
}
const kindOf = (a: TfAttribute): string =>
  a.nested ? `nested:${a.nested.nesting}` : Array.isArray(a.type) ? `${a.type[0]}:${String(a.type[1])}` : String(a.type);

/** Nested attributes: the same names and kinds as the schema's properties (the union of anyOf alternatives). */
function expectNested(a: TfAttribute, raw: Schema): void {
  const s = nonNull(raw);
  const object = s.type === "array" ? nonNull(s.items!) : s;
  const alternatives = object.anyOf ?? [object];
  const props: Record<string, Schema> = Object.assign({}, ...alternatives.map((x) => x.properties ?? {}));
  expect(a.nested!.attributes.map((c) => c.name).sort()).toEqual(Object.keys(props).map(snakeCase).sort());
  for (const [p, ps] of Object.entries(props)) {
    const child = attr(a.nested!.attributes, snakeCase(p));
    expect(kindOf(child), `${a.name}.${child.name}`).toBe(expectedKind(ps));
    const required = alternatives.length === 1 && (object.required ?? []).includes(p);
    expect(Boolean(child.required), `${a.name}.${child.name} required`).toBe(required);
    if (child.nested) expectNested(child, ps);
  }
}

const KINDS = [
  { typeName: "weft_tenant", path: "/v1/tenants/{tenant}", keys: ["name"] },
  { typeName: "weft_identity", path: "/v1/tenants/{tenant}/identities/{name}", keys: ["tenant", "name"] },
  { typeName: "weft_workload", path: "/v1/tenants/{tenant}/workloads/{name}", keys: ["tenant", "name"] },
  { typeName: "weft_service", path: "/v1/tenants/{tenant}/services/{name}", keys: ["tenant", "name"] },
  { typeName: "weft_policy", path: "/v1/tenants/{tenant}/policies/{name}", keys: ["tenant", "name"] },
  { typeName: "weft_http_route", path: "/v1/tenants/{tenant}/httpRoutes/{name}", keys: ["tenant", "name"] },
  { typeName: "weft_traffic_policy", path: "/v1/tenants/{tenant}/trafficPolicies/{name}", keys: ["tenant", "name"] },
];

describe("schemas derived from openapi/openapi.json", () => {
  it.each(KINDS)("$typeName: every body and answer property, named in snake_case, with its kind and flags", ({ typeName, path, keys }) => {
    const { schema } = resource(typeName);
    const body = bodyOf(path);
    const answer = answerOf(path);
    const bodyProps = Object.keys(body.properties!);
    const answerOnly = Object.keys(answer.properties!).filter((p) => !bodyProps.includes(p) && !["createdAt", "updatedAt", "name"].includes(p));
    expect(schema.version).toBe(1);
    expect(schema.attributes.map((a) => a.name).sort()).toEqual([...keys, "id", ...bodyProps.map(snakeCase), ...answerOnly.map(snakeCase)].sort());
    for (const k of keys) expect(attr(schema.attributes, k)).toMatchObject({ required: true });
    expect(attr(schema.attributes, "id")).toMatchObject({ computed: true });
    expect(attr(schema.attributes, "etag")).toMatchObject({ computed: true });
    for (const p of bodyProps) {
      const a = attr(schema.attributes, snakeCase(p));
      const required = body.required?.includes(p) ?? false;
      expect({ required: Boolean(a.required), optional: Boolean(a.optional) }, p).toEqual({ required, optional: !required });
      expect(kindOf(a), p).toBe(expectedKind(body.properties![p]!));
      // A default the API fills in (always answered, never null) is computed, so an unset attribute shows no diff;
      // an empty map stands for null instead, so that removing labels still clears them.
      const ans = answer.properties![p];
      const filled = !required && ans !== undefined && (answer.required ?? []).includes(p) && !nullable(ans);
      const collection = ["map", "list"].some((k) => kindOf(a).startsWith(k)) || kindOf(a) === "nested:list";
      expect(Boolean(a.computed), `${p} computed`).toBe(filled && !collection);
      const description = nonNull(body.properties![p]!).description ?? body.properties![p]!.description;
      if (description) expect(a.description, p).toContain(description);
      if (a.nested) expectNested(a, body.properties![p]!);
    }
    for (const p of answerOnly) {
      expect(attr(schema.attributes, snakeCase(p)), p).toMatchObject({ computed: true });
      expect(attr(schema.attributes, snakeCase(p)).optional, p).toBeUndefined();
    }
  });

  it("names the API's defaults and answers as the brief does", () => {
    const get = (t: string, a: string) => attr(resource(t).schema.attributes, a);
    for (const [t, a] of [["weft_service", "vip"], ["weft_service", "load_balancing"], ["weft_tenant", "trust_domain"], ["weft_tenant", "default_action"]] as const) {
      expect(get(t, a), `${t}.${a}`).toMatchObject({ optional: true, computed: true });
    }
    for (const [t, a] of [["weft_identity", "spiffe_id"], ["weft_identity", "security_identity"], ["weft_service", "vip_allocated"]] as const) {
      expect(get(t, a), `${t}.${a}`).toEqual(expect.objectContaining({ computed: true }));
    }
    expect(get("weft_identity", "x509_svid_ttl_seconds").type).toBe("number");
    expect(get("weft_service", "ports").nested!.attributes.map((a) => a.name)).toContain("target_port");
    expect(get("weft_service", "load_balancing").description).toMatch(/maglev, random/);
    expect(get("weft_tenant", "labels").type).toEqual(["map", "string"]);
  });

  it("weft_join_token and the data sources follow their routes", () => {
    const token = resource("weft_join_token").schema;
    const body = bodyOf("/v1/join-tokens", "post");
    const answer = answerOf("/v1/join-tokens", "post", "201");
    expect(token.attributes.map((a) => a.name).sort()).toEqual([...new Set([...Object.keys(body.properties!), ...Object.keys(answer.properties!)])].map(snakeCase).sort());
    for (const a of ["labels", "name", "zone"]) expect(attr(token.attributes, a), a).toMatchObject({ optional: true });
    expect(attr(token.attributes, "token")).toMatchObject({ computed: true, sensitive: true });
    expect(attr(token.attributes, "ttl_seconds")).toMatchObject({ optional: true });
    expect(token.description).toMatch(/destroy only removes the token from the state/);

    const node = provider.dataSources.find((d) => d.typeName === "weft_node")!.schema;
    const nodeAnswer = answerOf("/v1/nodes/{node}");
    expect(node.attributes.map((a) => a.name).sort()).toEqual(Object.keys(nodeAnswer.properties!).map(snakeCase).sort());
    expect(attr(node.attributes, "name")).toMatchObject({ required: true });
    for (const a of node.attributes.filter((x) => x.name !== "name")) expect(a, a.name).toMatchObject({ computed: true });
    expect(attr(node.attributes, "desired").nested!.attributes.map((a) => a.name).sort()).toEqual(["hash", "revision"]);

    const bundle = provider.dataSources.find((d) => d.typeName === "weft_bundle")!.schema;
    expect(bundle.attributes.map((a) => a.name)).toEqual(expect.arrayContaining(["tenant", "pem", "jwks", "sequence"]));
    expect(attr(bundle.attributes, "sequence").description).toBe(answerOf("/v1/tenants/{tenant}/bundle").properties!.spiffe_sequence!.description);
  });

  it("translates camelCase to snake_case", () => {
    expect(["displayName", "x509SvidTtlSeconds", "targetPort", "vip"].map(snakeCase)).toEqual(["display_name", "x509_svid_ttl_seconds", "target_port", "vip"]);
  });
});

/** A config with every attribute present, as the plugin layer hands it over. */
function fill(attributes: TfAttribute[], value: Record<string, unknown>): TfObject {
  const out: TfObject = {};
  for (const a of attributes) {
    const v = (value[a.name] ?? null) as TfValue;
    out[a.name] =
      a.nested && v !== null && v !== UNKNOWN
        ? a.nested.nesting === "single"
          ? fill(a.nested.attributes, v as Record<string, unknown>)
          : (v as Record<string, unknown>[]).map((x) => fill(a.nested!.attributes, x))
        : v;
  }
  return out;
}

describe("validate()", () => {
  const service = resource("weft_service");
  const good = { tenant: "acme", name: "web", ports: [{ port: 80, protocol: "tcp", target_port: 8080 }], backends: { selector: { identity: "web" } } };
  const check = (v: Record<string, unknown>) => service.validate(fill(service.schema.attributes, v));

  it("accepts a good config and skips unknown values", () => {
    expect(check(good)).toEqual([]);
    expect(check({ ...good, name: UNKNOWN, backends: { selector: UNKNOWN, explicit: UNKNOWN } })).toEqual([]);
  });

  it("points at the attribute: DNS labels, enums, bounds, exactly-one unions", () => {
    expect(check({ ...good, name: "Web_1" })).toEqual([expect.objectContaining({ severity: "error", attribute: [{ attribute: "name" }] })]);
    expect(check({ ...good, ports: [{ port: 80, protocol: "sctp", target_port: 8080 }] })).toEqual([
      expect.objectContaining({ attribute: [{ attribute: "ports" }, { index: 0 }, { attribute: "protocol" }], detail: expect.stringContaining("tcp, udp") }),
    ]);
    expect(check({ ...good, ports: [{ port: 80.5, protocol: "tcp", target_port: 8080 }] })).toEqual([
      expect.objectContaining({ attribute: [{ attribute: "ports" }, { index: 0 }, { attribute: "port" }] }),
    ]);
    expect(check({ ...good, backends: {} })).toEqual([expect.objectContaining({ attribute: [{ attribute: "backends" }], detail: expect.stringContaining("none is set") })]);
    expect(check({ ...good, backends: { selector: { identity: "Bad!" } } })).toEqual([
      expect.objectContaining({ attribute: [{ attribute: "backends" }, { attribute: "selector" }, { attribute: "identity" }] }),
    ]);
    const tenant = resource("weft_tenant");
    expect(tenant.validate(fill(tenant.schema.attributes, { name: "acme", default_action: "maybe" }))).toEqual([
      expect.objectContaining({ attribute: [{ attribute: "default_action" }] }),
    ]);
  });
});

describe("validate() of weft_http_route", () => {
  const route = resource("weft_http_route");
  const check = (v: Record<string, unknown>) => route.validate(fill(route.schema.attributes, v));
  const rule = {
    backend_refs: [{ kind: "Service", name: "web-v1", weight: 90 }, { name: "web-v2", port: 80, weight: 10 }],
    filters: [
      { type: "RequestHeaderModifier", request_header_modifier: { set: [{ name: "x-env", value: "prod" }] } },
      { type: "ResponseHeaderModifier", response_header_modifier: { remove: ["server"] } },
    ],
    retry: { attempts: 2, on: ["connect-failure", "gateway-error"] },
    timeouts: { request: "2s", backend_request: "500ms" },
  };
  const good = { tenant: "acme", name: "web-canary", parent_refs: [{ name: "web" }], rules: [rule] };

  it("accepts a canary between services with both header filters, a retry and timeouts", () => {
    expect(check(good)).toEqual([]);
  });

  it("points at the attribute: a filter with the other kind's modifier, an unknown retry condition, a bad duration", () => {
    const mixed = { ...rule, filters: [{ type: "RequestHeaderModifier", response_header_modifier: { remove: ["server"] } }] };
    expect(check({ ...good, rules: [mixed] })).toEqual([expect.objectContaining({ severity: "error", attribute: [{ attribute: "rules" }, { index: 0 }, { attribute: "filters" }, { index: 0 }] })]);
    expect(check({ ...good, rules: [{ ...rule, retry: { attempts: 2, on: ["always"] } }] })).toEqual([
      expect.objectContaining({ attribute: [{ attribute: "rules" }, { index: 0 }, { attribute: "retry" }, { attribute: "on" }, { index: 0 }] }),
    ]);
    expect(check({ ...good, rules: [{ ...rule, timeouts: { request: "soon" } }] })).toEqual([
      expect.objectContaining({ attribute: [{ attribute: "rules" }, { index: 0 }, { attribute: "timeouts" }, { attribute: "request" }] }),
    ]);
  });
});

describe("problem documents → diagnostics", () => {
  it("maps a field (dotted or a JSON pointer) onto the attribute path, camelCase → snake_case, map keys kept", () => {
    const path = "/v1/tenants/{tenant}/services/{name}";
    const scope = {
      fields: [syntheticField("tenant", "required", ""), syntheticField("name", "required", ""), ...deriveFields(requestBody(path, "put"), responseBody(path, "get", "200"))],
      pathParameters: { tenant: "tenant", name: "name" },
    };
    expect(attributePathOf("body.ports.0.targetPort", scope)).toEqual([{ attribute: "ports" }, { index: 0 }, { attribute: "target_port" }]);
    expect(attributePathOf("/body/ports/0/port", scope)).toEqual([{ attribute: "ports" }, { index: 0 }, { attribute: "port" }]);
    expect(attributePathOf("body.backends.selector.labels.appTier", scope)).toEqual([
      { attribute: "backends" },
      { attribute: "selector" },
      { attribute: "labels" },
      { key: "appTier" },
    ]);
    expect(attributePathOf("body.backends.explicit.3", scope)).toEqual([{ attribute: "backends" }, { attribute: "explicit" }, { index: 3 }]);
    expect(attributePathOf("body.loadBalancing", scope)).toEqual([{ attribute: "load_balancing" }]);
    expect(attributePathOf("path.name", scope)).toEqual([{ attribute: "name" }]);
    expect(attributePathOf("maps.policy", scope)).toBeUndefined();
    expect(attributePathOf("query.dryRun", scope)).toBeUndefined();

    const [one] = problemDiagnostics({ title: "Conflict", status: 409, detail: "VIP 10.0.0.1 is already in use", errors: [{ field: "body.vip", message: "is taken" }] }, scope, "x");
    expect(one).toEqual({ severity: "error", summary: "Conflict", detail: "x: VIP 10.0.0.1 is already in use\nvip: is taken", attribute: [{ attribute: "vip" }] });
    const [deep] = problemDiagnostics({ title: "Bad Request", errors: [{ field: "body.ports.1.targetPort", message: "must be >= 1" }, { field: "maps.policy", message: "full" }] }, scope, "z");
    expect(deep!.detail).toBe("z: Bad Request\nports[1].target_port: must be >= 1");
    expect(problemDiagnostics({ title: "Forbidden", detail: "needs the operator token" }, scope, "y")).toEqual([
      { severity: "error", summary: "Forbidden", detail: "y: needs the operator token" },
    ]);
  });
});

describe("upgrade()", () => {
  it("takes version 0 and 1 state as is (unset attributes null) and refuses a version it does not know", () => {
    const h = resource("weft_identity");
    const stored = { tenant: "acme", name: "web", path: "/web", spiffe_id: "spiffe://acme.example/web", etag: '"7"', id: "acme/web" };
    for (const version of [0, 1]) {
      const { state, diagnostics } = h.upgrade(version, stored);
      expect(diagnostics).toEqual([]);
      expect(state).toMatchObject(stored);
      expect(Object.keys(state).sort()).toEqual(h.schema.attributes.map((a) => a.name).sort());
      expect(state.selectors).toBeNull();
    }
    expect(h.upgrade(2, stored).diagnostics).toEqual([expect.objectContaining({ severity: "error", summary: "Unsupported state version" })]);
  });
});
