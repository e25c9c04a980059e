/**
 * The Gateway API HTTPRoute <-> Weft httpRoute mapping (cli/src/gateway-api.ts),
 * pure: what maps, what is refused (by its path in the document), and that a
 * route shown as Gateway API reads back to the same route. The documents the
 * mapping emits are checked against the Weft route schema the API enforces.
 */
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { EXTENSIONS_ANNOTATION, fromGatewayHttpRoute, GatewayMappingError, NotExpressible, toGatewayHttpRoute } from "../../cli/src/gateway-api.ts";
import { HttpRouteSpec } from "../../api/src/mesh/specs.ts";
import { accepts } from "../support/schema-values.ts";

/** A mesh (GAMMA) HTTPRoute as the Gateway API's documentation writes one. */
const CANARY = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web-canary
  namespace: acme
  labels: {team: web}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: web
    port: 80
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers: [{name: x-canary, value: "1"}]
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-env, value: prod}], remove: [x-debug]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: cache-control, value: no-store}]}
    backendRefs:
    - {name: web-v1, port: 80, weight: 90}
    - {kind: Service, group: core, name: web-v2, port: 80, weight: 10}
    timeouts: {request: 2s, backendRequest: 500ms}
  - backendRefs:
    - {name: web, port: 80}
`;

const doc = (text: string) => parse(text) as Record<string, unknown>;
/** The path a refusal names, or null when the document maps. */
const refusal = (d: Record<string, unknown>, tenant?: string): string | null => {
  try {
    fromGatewayHttpRoute(d, tenant);
    return null;
  } catch (err) {
    if (err instanceof GatewayMappingError) return err.path;
    throw err;
  }
};
/** CANARY with one part replaced, given as a function of the parsed document. */
const edited = (edit: (d: any) => void) => {
  const d = doc(CANARY);
  edit(d);
  return d;
};

describe("a Gateway API HTTPRoute as a Weft httpRoute", () => {
  it("maps parents, matches, header filters, timeouts and backendRefs naming services; a ref to the parent is its own backends", () => {
    const mapped = fromGatewayHttpRoute(doc(CANARY));
    expect(mapped).toEqual({
      name: "web-canary",
      namespace: "acme",
      spec: {
        parentRefs: [{ name: "web", port: 80 }],
        rules: [
          {
            matches: [{ path: { type: "PathPrefix", value: "/api" }, headers: [{ name: "x-canary", value: "1" }], method: "GET" }],
            backendRefs: [
              { kind: "Service", name: "web-v1", port: 80, weight: 90 },
              { kind: "Service", name: "web-v2", port: 80, weight: 10 },
            ],
            filters: [
              { type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "x-env", value: "prod" }], remove: ["x-debug"] } },
              { type: "ResponseHeaderModifier", responseHeaderModifier: { add: [{ name: "cache-control", value: "no-store" }] } },
            ],
            timeouts: { request: "2s", backendRequest: "500ms" },
          },
          { backendRefs: [{}] },
        ],
      },
    });
    expect(accepts(HttpRouteSpec, mapped.spec)).toBe(true);
  });

  it("takes v1beta1 too, the path default (the prefix /), and no namespace (the tenant comes from --tenant or the login)", () => {
    const d = edited((x) => {
      x.apiVersion = "gateway.networking.k8s.io/v1beta1";
      delete x.metadata.namespace;
      x.spec.rules[0].matches = [{ path: { type: "Exact" } }];
    });
    const mapped = fromGatewayHttpRoute(d, "acme");
    expect(mapped.namespace).toBeUndefined();
    expect((mapped.spec.rules as any)[0].matches).toEqual([{ path: { type: "Exact", value: "/" } }]);
  });

  it("refuses what Weft does not do, naming the field by its path in the document", () => {
    const cases: [string, (d: any) => void][] = [
      ["apiVersion", (d) => (d.apiVersion = "gateway.networking.k8s.io/v1alpha2")],
      ["kind", (d) => (d.kind = "GRPCRoute")],
      ["spec.hostnames", (d) => (d.spec.hostnames = ["web.example"])],
      ["spec.parentRefs[0].kind", (d) => delete d.spec.parentRefs[0].kind],
      ["spec.parentRefs[0].kind", (d) => (d.spec.parentRefs[0].kind = "Gateway")],
      ["spec.parentRefs[0].group", (d) => (d.spec.parentRefs[0].group = "gateway.networking.k8s.io")],
      ["spec.parentRefs[0].sectionName", (d) => (d.spec.parentRefs[0].sectionName = "http")],
      ["spec.rules[0].filters[1].type", (d) => (d.spec.rules[0].filters[1] = { type: "RequestMirror", requestMirror: { backendRef: { name: "x" } } })],
      ["spec.rules[0].filters[0].type", (d) => (d.spec.rules[0].filters[0] = { type: "URLRewrite", urlRewrite: {} })],
      ["spec.rules[0].matches[0].queryParams", (d) => (d.spec.rules[0].matches[0].queryParams = [{ name: "a", value: "b" }])],
      ["spec.rules[0].matches[0].path.type", (d) => (d.spec.rules[0].matches[0].path.type = "RegularExpression")],
      ["spec.rules[0].matches[0].headers[0].type", (d) => (d.spec.rules[0].matches[0].headers[0].type = "RegularExpression")],
      ["spec.rules[0].backendRefs[1].kind", (d) => (d.spec.rules[0].backendRefs[1].kind = "ServiceImport")],
      ["spec.rules[0].backendRefs[0].filters", (d) => (d.spec.rules[0].backendRefs[0].filters = [])],
      ["spec.rules[0].retry", (d) => (d.spec.rules[0].retry = { attempts: 2, codes: [503] })],
      ["spec.rules[0].sessionPersistence", (d) => (d.spec.rules[0].sessionPersistence = {})],
      ["spec.rules[1].timeouts.idle", (d) => (d.spec.rules[1].timeouts = { idle: "1s" })],
      ["metadata.tenant", (d) => (d.metadata.tenant = "acme")],
      ["spec.rules[0].backendRefs[0].name", (d) => delete d.spec.rules[0].backendRefs[0].name],
    ];
    for (const [path, edit] of cases) expect(refusal(edited(edit)), path).toBe(path);
  });

  it("takes a namespace only where it is the tenant: metadata, parentRefs and backendRefs", () => {
    expect(refusal(doc(CANARY), "zeta")).toBe("metadata.namespace");
    expect(refusal(edited((d) => (d.spec.parentRefs[0].namespace = "zeta")))).toBe("spec.parentRefs[0].namespace");
    expect(refusal(edited((d) => (d.spec.rules[0].backendRefs[1].namespace = "zeta")))).toBe("spec.rules[0].backendRefs[1].namespace");
    // Without metadata.namespace, --tenant is the tenant references are checked against.
    expect(refusal(edited((d) => { delete d.metadata.namespace; d.spec.rules[0].backendRefs[1].namespace = "zeta"; }), "acme")).toBe("spec.rules[0].backendRefs[1].namespace");
    expect(refusal(edited((d) => (d.spec.rules[0].backendRefs[1].namespace = "acme")))).toBeNull();
    // With no tenant known at all, a namespace in a reference cannot be checked: refused, never dropped.
    expect(refusal(edited((d) => { delete d.metadata.namespace; d.spec.parentRefs[0].namespace = "acme"; }))).toBe("spec.parentRefs[0].namespace");
  });

  it("reads Weft's extensions from the weft.dev/rule-extensions annotation, and refuses a malformed one", () => {
    const ext = (value: unknown) => edited((d) => (d.metadata.annotations = { [EXTENSIONS_ANNOTATION]: JSON.stringify(value) }));
    const retry = { attempts: 2, on: ["connect-failure"], nonIdempotent: true };
    const mapped = fromGatewayHttpRoute(ext([null, { retry, backendLabels: [{ version: "v2" }] }]));
    expect((mapped.spec.rules as any)[1]).toEqual({ backendRefs: [{ labels: { version: "v2" } }], retry });
    const at = `metadata.annotations["${EXTENSIONS_ANNOTATION}"]`;
    expect(refusal(edited((d) => (d.metadata.annotations = { [EXTENSIONS_ANNOTATION]: "{not json" })))).toBe(at);
    expect(refusal(ext([{}, {}, {}]))).toBe(`${at}[2]`);
    expect(refusal(ext([{ mirror: true }]))).toBe(`${at}[0].mirror`);
    expect(refusal(ext([{ backendLabels: [null, null, { a: "b" }] }]))).toBe(at);
    // Other annotations are Kubernetes bookkeeping.
    expect(refusal(edited((d) => (d.metadata.annotations = { "kubectl.kubernetes.io/last-applied-configuration": "{}" })))).toBeNull();
  });
});

describe("a Weft httpRoute as a Gateway API HTTPRoute", () => {
  const route = {
    name: "web-canary",
    etag: '"7"',
    parentRefs: [{ name: "web", port: 80 }],
    rules: [
      {
        matches: [{ path: { type: "Exact", value: "/health" } }],
        backendRefs: [{ labels: { version: "v1" }, weight: 90 }, { kind: "Service", name: "web-v2", port: 80, weight: 10 }],
        retry: { attempts: 2, on: ["connect-failure", "gateway-error"] },
        timeouts: { request: "2s" },
      },
      { backendRefs: [{}], filters: [{ type: "ResponseHeaderModifier", responseHeaderModifier: { set: [{ name: "x-a", value: "1" }] } }] },
    ],
    createdAt: "2026-12-07T00:00:00Z",
  };

  it("names the parent service where a ref takes its backends, and carries labels and retry in the annotation", () => {
    const d = toGatewayHttpRoute(route, "acme");
    expect(d).toEqual({
      apiVersion: "gateway.networking.k8s.io/v1",
      kind: "HTTPRoute",
      metadata: {
        name: "web-canary",
        namespace: "acme",
        annotations: { [EXTENSIONS_ANNOTATION]: JSON.stringify([{ backendLabels: [{ version: "v1" }, null], retry: route.rules[0]!.retry }, null]) },
      },
      spec: {
        parentRefs: [{ group: "", kind: "Service", name: "web", port: 80 }],
        rules: [
          {
            matches: [{ path: { type: "Exact", value: "/health" } }],
            backendRefs: [
              { group: "", kind: "Service", name: "web", port: 80, weight: 90 },
              { group: "", kind: "Service", name: "web-v2", port: 80, weight: 10 },
            ],
            timeouts: { request: "2s" },
          },
          { filters: route.rules[1]!.filters, backendRefs: [{ group: "", kind: "Service", name: "web", port: 80 }] },
        ],
      },
    });
  });

  it("reads back to the same route (round trip), and a route without extensions has no annotation", () => {
    const back = fromGatewayHttpRoute(toGatewayHttpRoute(route, "acme"), "acme");
    expect(back.spec).toEqual({ parentRefs: route.parentRefs, rules: route.rules });
    const plain = toGatewayHttpRoute({ name: "p", parentRefs: [{ name: "web" }], rules: [{ backendRefs: [{ name: "web-v1" }] }] }, "acme");
    expect((plain.metadata as Record<string, unknown>).annotations).toBeUndefined();
  });

  it("cannot name the parents' backends of a route with several parent services", () => {
    expect(() => toGatewayHttpRoute({ name: "two", parentRefs: [{ name: "a" }, { name: "b" }], rules: [{ backendRefs: [{}] }] }, "acme")).toThrow(NotExpressible);
    // Named refs are fine with several parents.
    expect(() => toGatewayHttpRoute({ name: "two", parentRefs: [{ name: "a" }, { name: "b" }], rules: [{ backendRefs: [{ name: "c" }] }] }, "acme")).not.toThrow();
  });
});
