import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { OPENAPI_PATH, openApiDocument, operationIdOf } from "../../api/src/openapi.ts";
import { startApi } from "../support/api.ts";

describe("openapi/openapi.json", () => {
  let app: WeftApp;
  beforeAll(async () => {
    app = await startApi("pglite");
  });
  afterAll(async () => app?.close());

  it("is what the app serves (run `npm run openapi` after changing a route)", async () => {
    const served = await app.inject("/openapi.json");
    expect(served.statusCode).toBe(200);
    expect(readFileSync(OPENAPI_PATH, "utf8")).toBe(openApiDocument(app));
    expect(JSON.parse(readFileSync(OPENAPI_PATH, "utf8"))).toEqual(served.json());
  });

  it("documents every route of the route table", () => {
    const doc = JSON.parse(readFileSync(OPENAPI_PATH, "utf8")) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    const routes = app.routeTable
      .filter((r) => r.url.startsWith("/v1/") || ["/healthz", "/readyz", "/metrics"].includes(r.url))
      .map((r) => `${r.method.toLowerCase()} ${r.url.replace(/:(\w+)/g, "{$1}")}`);
    expect(new Set(documented)).toEqual(new Set(routes));
  });

  it("names its operations for client generators: unique camelCase ids from the route (listIdentities, putIdentity, mintX509Svid)", () => {
    const doc = JSON.parse(readFileSync(OPENAPI_PATH, "utf8")) as { paths: Record<string, Record<string, { operationId?: string }>> };
    const ids = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([m, op]) => [`${m} ${path}`, op.operationId] as const));
    for (const [route, id] of ids) expect(id, route).toMatch(/^[a-z]+[A-Z][A-Za-z0-9]*$/);
    expect(new Set(ids.map(([, id]) => id)).size).toBe(ids.length);
    const idOf = Object.fromEntries(ids);
    expect(idOf).toMatchObject({
      "get /v1/tenants/{tenant}/identities": "listIdentities",
      "get /v1/tenants/{tenant}/identities/{name}": "getIdentity",
      "put /v1/tenants/{tenant}/identities/{name}": "putIdentity",
      "delete /v1/tenants/{tenant}/identities/{name}": "deleteIdentity",
      "post /v1/tenants/{tenant}/identities/{name}/x509-svids": "mintX509Svid",
      "post /v1/tenants": "createTenant",
      "get /v1/nodes/{node}/workloads": "listNodeWorkloads",
      "post /v1/tenants/{tenant}/ca/prepare": "prepareCa",
    });
  });

  it("derives ids for routes other branches add, without edits", () => {
    expect(operationIdOf("GET", "/v1/tenants/:tenant/flows")).toBe("listFlows");
    expect(operationIdOf("GET", "/v1/tenants/:tenant/flows/:id")).toBe("getFlow");
    expect(operationIdOf("POST", "/v1/nodes/:node/flows")).toBe("createNodeFlow");
    expect(operationIdOf("POST", "/v1/tenants/:tenant/ca/rotate")).toBe("rotateCa");
    expect(operationIdOf("GET", "/v1/tenants/:tenant/policies/:name/preview")).toBe("getPolicyPreview");
  });

  it("names every structured JSON body in components/schemas instead of repeating it inline", () => {
    type Media = Record<string, { schema?: Record<string, unknown> }>;
    const doc = JSON.parse(readFileSync(OPENAPI_PATH, "utf8")) as {
      paths: Record<string, Record<string, { requestBody?: { content?: Media }; responses?: Record<string, { content?: Media }> }>>;
      components: { schemas: Record<string, unknown> };
    };
    const inline: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const bodies = [op.requestBody?.content, ...Object.values(op.responses ?? {}).map((r) => r.content)];
        for (const content of bodies) {
          for (const [type, media] of Object.entries(content ?? {})) {
            if (type.includes("json") && media.schema && !("$ref" in media.schema)) inline.push(`${method} ${path} ${type}`);
          }
        }
      }
    }
    expect(inline).toEqual([]);
    // Titled schemas are found wherever they are nested, once.
    expect(JSON.stringify(doc.paths)).not.toMatch(/"title":/);
    expect(Object.keys(doc.components.schemas)).toEqual(expect.arrayContaining(["Identity", "PutIdentityRequest", "HealthCheck", "Problem"]));
  });

  it("passes the Redocly linter with no errors and no warnings", () => {
    const out = execFileSync("npx", ["redocly", "lint", "--format", "json", OPENAPI_PATH], {
      encoding: "utf8",
      env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
    });
    const report = JSON.parse(out) as { totals: { errors: number; warnings: number } };
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });
});
