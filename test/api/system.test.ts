import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

describe.each(BACKENDS)("system routes on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    it("counts requests by route template and status and times them in a histogram", async () => {
      const { tenant } = await tenantWithToken(app);
      await app.inject({ url: `/v1/tenants/${tenant}`, headers: operator });
      await app.inject({ url: `/v1/tenants/no-such-${tenant}`, headers: operator });
      await app.inject("/no/such/route");
      const res = await app.inject("/metrics");
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/plain/);
      const text = res.body;
      const counter = (labels: string) =>
        Number(new RegExp(`^weft_http_requests_total\\{${labels}\\} (\\d+)$`, "m").exec(text)?.[1] ?? "NaN");
      expect(counter(`method="GET",route="/v1/tenants/:tenant",status="200"`)).toBeGreaterThanOrEqual(1);
      expect(counter(`method="GET",route="/v1/tenants/:tenant",status="404"`)).toBeGreaterThanOrEqual(1);
      expect(counter(`method="POST",route="/v1/tenants",status="201"`)).toBeGreaterThanOrEqual(1);
      // Raw paths never become labels: that would grow without bound.
      expect(text).not.toContain(tenant);
      expect(text).not.toContain("/no/such/route");
      expect(text).toMatch(/^weft_http_request_duration_seconds_bucket\{le="0\.005",method="GET",route="\/v1\/tenants\/:tenant"\} \d+$/m);
      expect(text).toMatch(/^weft_http_request_duration_seconds_bucket\{le="\+Inf",method="GET",route="\/v1\/tenants\/:tenant"\} \d+$/m);
      expect(text).toMatch(/^weft_http_request_duration_seconds_count\{method="GET",route="\/v1\/tenants\/:tenant"\} \d+$/m);
    });

    it("serves an OpenAPI 3.1 document naming every route", async () => {
      const res = await app.inject("/openapi.json");
      expect(res.statusCode).toBe(200);
      const doc = JSON.parse(res.body) as { openapi: string; paths: Record<string, Record<string, { operationId: string }>> };
      expect(doc.openapi).toBe("3.1.0");
      const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
      );
      const served = app.routeTable
        .filter((r) => r.url.startsWith("/v1/") || ["/healthz", "/readyz", "/metrics"].includes(r.url))
        .map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, "{$1}")}`);
      expect(documented.sort()).toEqual(expect.arrayContaining(served));
      expect(served.length).toBeGreaterThanOrEqual(12);
      const ids = Object.values(doc.paths).flatMap((ops) => Object.values(ops).map((o) => o.operationId));
      expect(new Set(ids).size).toBe(ids.length);
      expect((await app.inject("/docs")).statusCode).toBeLessThan(400);
    });
  });
});
