import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { OPENAPI_PATH, openApiDocument } from "../../api/src/openapi.ts";
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

  it("passes the Redocly linter with no errors and no warnings", () => {
    const out = execFileSync("npx", ["redocly", "lint", "--format", "json", OPENAPI_PATH], {
      encoding: "utf8",
      env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
    });
    const report = JSON.parse(out) as { totals: { errors: number; warnings: number } };
    expect(report.totals).toMatchObject({ errors: 0, warnings: 0 });
  });
});
