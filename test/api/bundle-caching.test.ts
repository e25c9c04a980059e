// The public bundle endpoints as a SPIFFE bundle endpoint client or a cache
// in front of one uses them (issue #19 item 1): a strong ETag of the bytes,
// 304 for If-None-Match, Cache-Control max-age of the refresh hint, and a new
// ETag once the bundle changes (a prepared CA joins it).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

describe.each(BACKENDS)("bundle endpoints' caching headers on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend, { caRotation: "off" });
    });
    afterAll(async () => app?.close());

    for (const path of ["bundle", "bundle.pem"]) {
      it(`GET /v1/tenants/{t}/${path}: ETag, Cache-Control from the refresh hint, 304 on If-None-Match, a new ETag after a change`, async () => {
        const { tenant, token } = await tenantWithToken(app);
        const url = `/v1/tenants/${tenant}/${path}`;
        const first = await app.inject({ method: "GET", url });
        expect(first.statusCode).toBe(200);
        const hint = (await app.inject({ method: "GET", url: `/v1/tenants/${tenant}/bundle` })).json().spiffe_refresh_hint as number;
        expect(hint).toBeGreaterThan(0);
        expect(first.headers["cache-control"]).toBe(`public, max-age=${hint}`);
        const etag = first.headers.etag as string;
        expect(etag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
        if (path === "bundle") expect(first.json().keys.length).toBeGreaterThan(0);
        else expect(first.body).toMatch(/^-----BEGIN CERTIFICATE-----/);

        // Same bytes, same tag; weak, listed and wildcard forms match too (RFC 9110 13.1.2).
        const again = await app.inject({ method: "GET", url });
        expect(again.headers.etag).toBe(etag);
        expect(again.body).toBe(first.body);
        for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
          const cached = await app.inject({ method: "GET", url, headers: { "if-none-match": ifNoneMatch } });
          expect(cached.statusCode, ifNoneMatch).toBe(304);
          expect(cached.body).toBe("");
          expect(cached.headers.etag).toBe(etag);
          expect(cached.headers["cache-control"]).toBe(`public, max-age=${hint}`);
        }
        expect((await app.inject({ method: "GET", url, headers: { "if-none-match": '"stale"' } })).statusCode).toBe(200);

        // A prepared CA joins the bundle: the old tag no longer matches.
        const prepared = await app.inject({ method: "POST", url: `/v1/tenants/${tenant}/ca/prepare`, headers: bearer(token) });
        expect(prepared.statusCode).toBe(200);
        const changed = await app.inject({ method: "GET", url, headers: { "if-none-match": etag } });
        expect(changed.statusCode).toBe(200);
        expect(changed.headers.etag).not.toBe(etag);
      });
    }

    it("a missing tenant's bundle is a 404 problem, with no ETag", async () => {
      const res = await app.inject({ method: "GET", url: "/v1/tenants/no-such-tenant/bundle", headers: { "if-none-match": "*" } });
      expect(res.statusCode).toBe(404);
      expect(res.headers["content-type"]).toMatch(/application\/problem\+json/);
      expect(res.headers.etag).toBeUndefined();
    });
  });
});
