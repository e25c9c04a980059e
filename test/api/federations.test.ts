import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { pastedBundle } from "../support/federation.ts";
import { registeredNode, uniqueAddress } from "../support/nodes.ts";

describe.each(BACKENDS)("federations on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    const put = (tenant: string, token: string, name: string, payload: unknown, headers: Record<string, string> = {}, query = "") =>
      app.inject({ method: "PUT", url: `/v1/tenants/${tenant}/federations/${name}${query}`, headers: { ...bearer(token), ...headers }, payload: payload as object });
    const get = (tenant: string, token: string, path: string, headers: Record<string, string> = {}) =>
      app.inject({ method: "GET", url: `/v1/tenants/${tenant}/${path}`, headers: { ...bearer(token), ...headers } });
    const trustDomainOf = async (tenant: string) => (await app.weft.directory.byName(tenant))!.trustDomain;

    it("follows the conventions: 201/200 with ETag, If-Match, If-None-Match: *, dry run, list, delete 204, audit and change log", async () => {
      const a = await tenantWithToken(app, ["write"]);
      const { jwks } = pastedBundle("example.org");
      const dry = await put(a.tenant, a.token, "ext", { trustDomain: "example.org", bundle: { spiffeBundle: jwks } }, {}, "?dryRun=true");
      expect(dry.statusCode, dry.body).toBe(201);
      expect((await get(a.tenant, a.token, "federations/ext")).statusCode).toBe(404);
      const created = await put(a.tenant, a.token, "ext", { trustDomain: "example.org", bundle: { spiffeBundle: jwks } });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ name: "ext", trustDomain: "example.org", status: "active" });
      const etag = created.headers.etag as string;
      expect(created.json().etag).toBe(etag);
      expectProblem(await put(a.tenant, a.token, "ext", { trustDomain: "example.org", bundle: { spiffeBundle: jwks } }, { "if-none-match": "*" }), 412);
      expectProblem(await put(a.tenant, a.token, "ext", { trustDomain: "example.org", bundle: { spiffeBundle: jwks } }, { "if-match": '"1"' }), 412);
      const replaced = await put(a.tenant, a.token, "ext", { trustDomain: "example.com", bundle: { spiffeBundle: jwks } }, { "if-match": etag });
      expect(replaced.statusCode).toBe(200);
      expect((await get(a.tenant, a.token, "federations/ext", { "if-none-match": replaced.headers.etag as string })).statusCode).toBe(304);
      const list = await get(a.tenant, a.token, "federations?limit=1");
      expect(list.json()).toMatchObject({ items: [{ name: "ext", trustDomain: "example.com" }] });
      const audit = (await app.inject({ method: "GET", url: `/v1/tenants/${a.tenant}/audit`, headers: operator })).json().items.map((e: { action: string }) => e.action);
      expect(audit).toEqual(expect.arrayContaining(["federation.create", "federation.replace"]));
      const changes = (await app.inject({ method: "GET", url: `/v1/tenants/${a.tenant}/changes?since=0`, headers: operator })).json();
      expect(JSON.stringify(changes)).toContain("federation");
      const del = await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/federations/ext`, headers: bearer(a.token) });
      expect(del.statusCode).toBe(204);
      expect((await get(a.tenant, a.token, "federations/ext")).statusCode).toBe(404);
    });

    it("needs the write scope to write, read to read", async () => {
      const r = await tenantWithToken(app, ["read"]);
      expectProblem(await put(r.tenant, r.token, "x", { trustDomain: "example.org", bundle: { tenant: "whoever" } }), 403);
      expect((await get(r.tenant, r.token, "federations")).statusCode).toBe(200);
    });

    it("refuses bad input with problem+json naming the field", async () => {
      const a = await tenantWithToken(app, ["write"]);
      const { jwks, cert } = pastedBundle("example.org");
      const bad = async (payload: unknown, status: number, field: string) => {
        const p = expectProblem(await put(a.tenant, a.token, "bad", payload), status);
        expect(JSON.stringify(p.errors), JSON.stringify(p)).toContain(field);
      };
      await bad({ trustDomain: "Example.ORG", bundle: { tenant: "b" } }, 400, "trustDomain");
      await bad({ trustDomain: "example.org", bundle: {} }, 400, "bundle");
      await bad({ trustDomain: await trustDomainOf(a.tenant), bundle: { tenant: "b" } }, 422, "body.trustDomain");
      const withPrivate = { keys: [{ ...generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" }), use: "jwt-svid", kid: "x" }] };
      await bad({ trustDomain: "example.org", bundle: { spiffeBundle: withPrivate } }, 422, "body.bundle.spiffeBundle.keys.0.d");
      const garbage = { keys: [{ ...jwks.keys[0], x5c: [Buffer.from("not a cert").toString("base64")] }] };
      await bad({ trustDomain: "example.org", bundle: { spiffeBundle: garbage } }, 422, "body.bundle.spiffeBundle.keys.0.x5c.0");
      const noKid = { keys: [{ ...jwks.keys[1], kid: undefined }] };
      await bad({ trustDomain: "example.org", bundle: { spiffeBundle: JSON.parse(JSON.stringify(noKid)) } }, 422, "body.bundle.spiffeBundle.keys.0.kid");
      const otherKey = { keys: [{ ...jwks.keys[1], use: "x509-svid", kid: undefined, x5c: [cert.raw.toString("base64")] }] };
      await bad({ trustDomain: "example.org", bundle: { spiffeBundle: JSON.parse(JSON.stringify(otherKey)) } }, 422, "body.bundle.spiffeBundle.keys.0");
      expect((await put(a.tenant, a.token, "one", { trustDomain: "example.org", bundle: { spiffeBundle: jwks } })).statusCode).toBe(201);
      await bad({ trustDomain: "example.org", bundle: { spiffeBundle: jwks } }, 409, "body.trustDomain");
    });

    it("serves another tenant's bundle only under mutual consent; a missing tenant reads the same as a silent one", async () => {
      const a = await tenantWithToken(app, ["write"]);
      const b = await tenantWithToken(app, ["write"]);
      const tdA = await trustDomainOf(a.tenant);
      const tdB = await trustDomainOf(b.tenant);
      const toB = await put(a.tenant, a.token, "to-b", { trustDomain: tdB, bundle: { tenant: b.tenant } });
      const toNobody = await put(a.tenant, a.token, "to-nobody", { trustDomain: "nobody.example", bundle: { tenant: "no-such-tenant-xyz" } });
      expect(toB.statusCode).toBe(201);
      expect(toNobody.statusCode).toBe(201);
      expect(toB.json().status).toBe("pending");
      expect(toNobody.json().status).toBe("pending");
      const strip = (x: Record<string, unknown>) => ({ ...x, name: undefined, trustDomain: undefined, bundle: undefined, etag: undefined, createdAt: undefined, updatedAt: undefined });
      expect(strip(toB.json())).toEqual(strip(toNobody.json()));
      expect((await get(a.tenant, a.token, "federated-bundles")).json()).toEqual({ bundles: [] });

      // B names A but with the wrong trust domain: still nothing.
      expect((await put(b.tenant, b.token, "to-a", { trustDomain: "wrong.example", bundle: { tenant: a.tenant } })).statusCode).toBe(201);
      expect((await get(a.tenant, a.token, "federations/to-b")).json().status).toBe("pending");
      // B consents.
      expect((await put(b.tenant, b.token, "to-a", { trustDomain: tdA, bundle: { tenant: a.tenant } })).statusCode).toBe(200);
      expect((await get(a.tenant, a.token, "federations/to-b")).json().status).toBe("active");
      expect((await get(b.tenant, b.token, "federations/to-a")).json().status).toBe("active");
      const served = await get(a.tenant, a.token, "federated-bundles");
      expect(served.statusCode).toBe(200);
      const [bundle] = served.json().bundles;
      const caOfB = (await app.weft.ca.bundle(String((await app.weft.directory.byName(b.tenant))!.id)))!.json;
      expect(bundle.trustDomain).toBe(tdB);
      expect(bundle.x509Authorities).toEqual(caOfB.keys.filter((k) => k.use === "x509-svid").map((k) => (k as { x5c: string[] }).x5c[0]));
      expect(bundle.jwtAuthorities.length).toBeGreaterThan(0);
      expect((await get(a.tenant, a.token, "federated-bundles", { "if-none-match": served.headers.etag as string })).statusCode).toBe(304);
      // B withdraws: A gets nothing again.
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${b.tenant}/federations/to-a`, headers: bearer(b.token) })).statusCode).toBe(204);
      expect((await get(a.tenant, a.token, "federated-bundles")).json()).toEqual({ bundles: [] });
    });

    it("keeps a tenant's federations from other tenants and from nodes that run none of its workloads", async () => {
      const a = await tenantWithToken(app, ["admin"]);
      const other = await tenantWithToken(app, ["admin"]);
      const { jwks, cert } = pastedBundle("partner.example");
      expect((await put(a.tenant, a.token, "partner", { trustDomain: "partner.example", bundle: { spiffeBundle: jwks } })).statusCode).toBe(201);
      expectProblem(await get(a.tenant, other.token, "federations"), 404);
      expectProblem(await get(a.tenant, other.token, "federations/partner"), 404);
      expectProblem(await get(a.tenant, other.token, "federated-bundles"), 404);
      expectProblem(await put(a.tenant, other.token, "partner", { trustDomain: "partner.example", bundle: { spiffeBundle: jwks } }), 404);

      const host = await registeredNode(app);
      const stranger = await registeredNode(app);
      expect((await put(a.tenant, a.token, "x", { trustDomain: "x.example", bundle: { tenant: other.tenant } }, bearer(host.credential))).statusCode).toBe(403);
      expectProblem(await get(a.tenant, host.credential, "federated-bundles"), 404);
      expectProblem(await get(a.tenant, host.credential, "federations"), 403);
      await app.inject({ method: "PUT", url: `/v1/tenants/${a.tenant}/identities/web`, headers: bearer(a.token), payload: { path: "/web" } });
      const placed = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${a.tenant}/workloads/web`,
        headers: bearer(a.token),
        payload: { identity: "web", node: host.name, addresses: [uniqueAddress(host.name)] },
      });
      expect(placed.statusCode, placed.body).toBe(201);
      const served = await get(a.tenant, host.credential, "federated-bundles");
      expect(served.statusCode, served.body).toBe(200);
      expect(served.json().bundles).toEqual([
        {
          trustDomain: "partner.example",
          x509Authorities: [cert.raw.toString("base64")],
          jwtAuthorities: [{ keyId: "k1", publicKey: createPublicKey({ key: jwks.keys[1] as never, format: "jwk" }).export({ type: "spki", format: "der" }).toString("base64") }],
        },
      ]);
      expectProblem(await get(a.tenant, stranger.credential, "federated-bundles"), 404);
      expectProblem(await get("no-such-tenant-q", stranger.credential, "federated-bundles"), 404);
    });
  });
});
