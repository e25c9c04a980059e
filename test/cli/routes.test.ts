// The weft command cannot drift from the API: every request it makes is a
// Route in cli/src/routes.ts, and each is checked here against the checked-in
// openapi/openapi.json (which test/api/openapi-document.test.ts keeps current).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { KINDS } from "../../cli/src/kinds.ts";
import { bodyFields } from "../../cli/src/manifest.ts";
import { allRoutes, type Route } from "../../cli/src/routes.ts";

interface Operation {
  parameters?: { in: string; name: string }[];
  responses: Record<string, { content?: Record<string, { schema?: { properties?: Record<string, unknown> } }> }>;
}
type Schema = { $ref?: string; properties?: Record<string, unknown> };
type Spec = { paths: Record<string, Record<string, Operation>>; components?: { schemas?: Record<string, Schema> } };

const spec = JSON.parse(readFileSync(new URL("../../openapi/openapi.json", import.meta.url), "utf8")) as Spec;

/** The properties of a JSON answer's schema, through a $ref into components (named schemas). */
function answerProperties(op: Operation | undefined): Record<string, unknown> {
  let schema = op?.responses["200"]?.content?.["application/json"]?.schema as Schema | undefined;
  while (schema?.$ref) schema = spec.components?.schemas?.[schema.$ref.replace("#/components/schemas/", "")];
  return schema?.properties ?? {};
}

/** What is wrong with a route as the document sees it; empty when nothing. */
function routeProblems(document: Spec, route: Route): string[] {
  const op = document.paths[route.path]?.[route.method.toLowerCase()];
  if (!op) return [`${route.method} ${route.path} is not in openapi.json`];
  const declared = new Set((op.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name));
  return (route.query ?? []).filter((q) => !declared.has(q)).map((q) => `${route.method} ${route.path} has no query parameter "${q}"`);
}

/** PUTs that write no resource a person declares: the agent's own status report. */
const NOT_RESOURCES = ["/v1/nodes/{node}/status"];

const label = (r: Route) => `${r.method} ${r.path}`;

describe("the CLI's routes against openapi/openapi.json", () => {
  const routes = allRoutes();

  it.each(routes.filter((r) => !r.pendingSpec).map((r) => [label(r), r] as const))("%s is in the document, with each query parameter the CLI sends", (_l, route) => {
    expect(routeProblems(spec, route)).toEqual([]);
  });

  // A contract another branch is building: once the API lands, the route is in
  // the document and this fails until the mark is removed (and then it is checked above).
  it.each(routes.filter((r) => r.pendingSpec).map((r) => [label(r), r] as const))("%s is still awaited (pendingSpec)", (_l, route) => {
    expect(spec.paths[route.path]?.[route.method.toLowerCase()], `${label(route)} is in openapi.json now: remove its pendingSpec mark`).toBeUndefined();
  });

  it("would catch a route, or a query parameter, the API does not have", () => {
    expect(routeProblems(spec, { method: "PUT", path: "/v1/tenants/{tenant}/gadgets/{name}" })).toHaveLength(1);
    expect(routeProblems(spec, { method: "POST", path: "/v1/tenants/{tenant}" })).toHaveLength(1);
    expect(routeProblems(spec, { method: "GET", path: "/v1/nodes", query: ["limit", "color"] })).toEqual(['GET /v1/nodes has no query parameter "color"']);
  });

  it("knows every resource kind the document has a PUT for", () => {
    const puts = Object.entries(spec.paths)
      .filter(([path, ops]) => ops.put && !NOT_RESOURCES.includes(path))
      .map(([path]) => path)
      .sort();
    const known = KINDS.flatMap((k) => (k.routes.put ? [k.routes.put.path] : [])).sort();
    expect(known).toEqual(puts);
  });

  it("can write a manifest of every kind it applies: each PUT body field is a field of the resource the GET answers", () => {
    for (const kind of KINDS.filter((k) => k.routes.put)) {
      const answered = answerProperties(spec.paths[kind.routes.get!.path]?.get);
      const fields = bodyFields(kind.routes.put!, spec as unknown as Parameters<typeof bodyFields>[1]);
      expect(fields.length, kind.plural).toBeGreaterThan(0);
      expect(fields.filter((f) => !(f in answered)), kind.plural).toEqual([]);
    }
  });

  it("reads a PUT body's fields through a $ref into components, as named schemas will be", () => {
    const named = {
      paths: { "/v1/x/{name}": { put: { requestBody: { content: { "application/json": { schema: { $ref: "#/components/schemas/XSpec" } } } } } } },
      components: { schemas: { XSpec: { properties: { a: {}, b: {} } } } },
    };
    expect(bodyFields({ method: "PUT", path: "/v1/x/{name}" }, named)).toEqual(["a", "b"]);
  });

  it("pages every list it reads: each answers {items, nextCursor}", () => {
    for (const kind of KINDS) {
      expect(Object.keys(answerProperties(spec.paths[kind.routes.list.path]?.get)), kind.plural).toEqual(expect.arrayContaining(["items", "nextCursor"]));
    }
  });
});
