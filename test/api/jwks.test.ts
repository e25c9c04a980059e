import { createLocalJWKSet, createRemoteJWKSet, jwtVerify, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

// GET /v1/tenants/{tenant}/jwks: the JWT-SVID keys for verifiers that speak
// JWKS (OIDC style) rather than SPIFFE bundles. Checked with jose, the
// verifier the README shows, over real HTTP.

describe.each(BACKENDS)("the JWKS endpoint on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`GET /v1/tenants/{tenant}/jwks on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let base: string;
    let acme: { tenant: string; token: string };
    let other: { tenant: string; token: string };

    const mint = async (t: { tenant: string; token: string }, audience: string) => {
      const res = await app.inject({
        method: "POST",
        url: `/v1/tenants/${t.tenant}/identities/api/jwt-svids`,
        headers: bearer(t.token),
        payload: { audience: [audience] },
      });
      expect(res.statusCode, res.body).toBe(201);
      return res.json().token as string;
    };

    beforeAll(async () => {
      app = await startApi(backend);
      base = await app.listen({ port: 0, host: "127.0.0.1" });
      acme = await tenantWithToken(app);
      other = await tenantWithToken(app);
      for (const t of [acme, other]) {
        const put = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/api`, headers: bearer(t.token), payload: { path: "/ns/prod/sa/api" } });
        expect(put.statusCode, put.body).toBe(201);
      }
    });
    afterAll(async () => app?.close());

    it("verifies a minted JWT-SVID with jose's createRemoteJWKSet, without a credential", async () => {
      const svid = await mint(acme, "billing");
      const jwks = createRemoteJWKSet(new URL(`${base}/v1/tenants/${acme.tenant}/jwks`));
      const { payload, protectedHeader } = await jwtVerify(svid, jwks, { audience: "billing", algorithms: ["ES256"] });
      expect(payload.sub).toMatch(new RegExp(`^spiffe://${acme.tenant}\\.[^/]+/ns/prod/sa/api$`));
      expect(protectedHeader.alg).toBe("ES256");
    });

    it("serves the bundle's jwt-svid keys exactly, relabelled use: sig, with an ETag, Cache-Control and 304", async () => {
      const res = await fetch(`${base}/v1/tenants/${acme.tenant}/jwks`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const etag = res.headers.get("etag")!;
      expect(etag).toMatch(/^"[A-Za-z0-9_-]+"$/);
      expect(res.headers.get("cache-control")).toBe("public, max-age=300");
      const body = (await res.json()) as { keys: JWK[] };
      const bundle = (await (await fetch(`${base}/v1/tenants/${acme.tenant}/bundle`)).json()) as { keys: (JWK & { use: string })[] };
      const bundleJwt = bundle.keys.filter((k) => k.use === "jwt-svid");
      expect(bundleJwt.length).toBeGreaterThan(0);
      expect(body.keys).toEqual(bundleJwt.map((k) => ({ ...k, use: "sig", alg: "ES256" })));
      // Nothing private, no X.509 keys.
      for (const k of body.keys) expect(Object.keys(k).sort()).toEqual(["alg", "crv", "kid", "kty", "use", "x", "y"]);

      const again = await fetch(`${base}/v1/tenants/${acme.tenant}/jwks`, { headers: { "if-none-match": etag } });
      expect(again.status).toBe(304);
      expect(await again.text()).toBe("");
    });

    it("changes its ETag when a CA is prepared, and the new key is served before it signs", async () => {
      const before = await fetch(`${base}/v1/tenants/${acme.tenant}/jwks`);
      const etag = before.headers.get("etag")!;
      const prepared = await app.inject({ method: "POST", url: `/v1/tenants/${acme.tenant}/ca/prepare`, headers: bearer(acme.token) });
      expect(prepared.statusCode, prepared.body).toBe(200);
      const after = await fetch(`${base}/v1/tenants/${acme.tenant}/jwks`, { headers: { "if-none-match": etag } });
      expect(after.status).toBe(200);
      expect(after.headers.get("etag")).not.toBe(etag);
      expect(((await after.json()) as { keys: JWK[] }).keys).toHaveLength(((await before.json()) as { keys: JWK[] }).keys.length + 1);
    });

    it("keeps trust domains apart: another tenant's key set refuses this tenant's SVID", async () => {
      const svid = await mint(other, "billing");
      const acmeKeys = createRemoteJWKSet(new URL(`${base}/v1/tenants/${acme.tenant}/jwks`));
      await expect(jwtVerify(svid, acmeKeys, { audience: "billing" })).rejects.toThrow();
      const otherKeys = createRemoteJWKSet(new URL(`${base}/v1/tenants/${other.tenant}/jwks`));
      await expect(jwtVerify(svid, otherKeys, { audience: "billing" })).resolves.toBeTruthy();
    });

    it("answers an unknown tenant and a malformed name with a problem, not keys", async () => {
      expectProblem(await app.inject({ url: "/v1/tenants/no-such-tenant-x/jwks" }), 404);
      expectProblem(await app.inject({ url: "/v1/tenants/Not_A..Name/jwks" }), 400);
    });

    it("the README's snippet verifies with the SPIFFE bundle itself (jwt-svid keys, use dropped)", async () => {
      const svid = await mint(acme, "billing");
      const api = base;
      const tenant = acme.tenant;
      // --- as in README.md, "JWT-SVIDs and JWKS"
      const bundle = (await (await fetch(`${api}/v1/tenants/${tenant}/bundle`)).json()) as { keys: JWK[] };
      const keys = createLocalJWKSet({ keys: bundle.keys.filter((k: JWK) => k.use === "jwt-svid").map(({ use, ...k }: JWK) => k) });
      const { payload } = await jwtVerify(svid, keys, { audience: "billing", algorithms: ["ES256"] });
      // ---
      expect(payload.sub).toMatch(/\/ns\/prod\/sa\/api$/);
      // jose refuses the bundle as it is: that is why the snippet (and /jwks) exist.
      await expect(jwtVerify(svid, createLocalJWKSet(bundle), { audience: "billing" })).rejects.toThrow(/no applicable key/i);
    });
  });
});
