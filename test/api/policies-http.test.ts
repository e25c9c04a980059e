import { generateKeyPairSync } from "node:crypto";
import type { LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { identity, putResource, refusedUnwritten } from "../support/mesh.ts";

/** L7 authorization on policy rules (issue 21): a rule's `http` match, decided by the L7 proxy of the caller's node. */
describe.each(BACKENDS)("policy rules with http on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    beforeAll(async () => {
      // An endpoint the allow-list names (loopback, nothing listens): a JWT rule must refuse its trust domain.
      app = await startApi(backend, { federationEndpoints: ["127.0.0.1:9"], federationFetchTimeoutMs: 500 });
      a = await tenantWithToken(app, ["write"]);
      await identity(app, a.token, a.tenant, "api", { app: "api" });
      await identity(app, a.token, a.tenant, "client", { app: "client" });
    });
    afterAll(async () => app?.close());

    const put = (name: string, spec: unknown) => putResource(app, a.token, a.tenant, `policies/${name}`, spec);
    const ingress = (...rules: unknown[]) => ({ subject: { identity: "api" }, ingress: rules });

    /** Refused with 400 naming exactly `field`, and nothing written. */
    async function refused(res: Promise<LightMyRequestResponse>, field: string) {
      const body = await refusedUnwritten(app, [a.tenant], res, 400);
      expect(body.errors?.map((e) => e.field), JSON.stringify(body)).toEqual([field]);
      return body;
    }

    it("stores and shows ingress rules with http as written: allow and deny, tcp or any port, mtls or audit", async () => {
      const rules = [
        { peers: [{ identity: "client" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", http: { methods: ["GET", "HEAD"], pathPrefixes: ["/api", "/health"] } },
        { peers: [{ labels: { app: "client" } }], action: "deny", http: { methods: ["DELETE"] } },
        { ports: [{ port: 8080 }, { protocol: "any" }], action: "allow", transport: "mtls", http: { pathPrefixes: ["/"] } },
        { action: "allow", mode: "audit", http: {} },
      ];
      const created = await put("l7", ingress(...rules));
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json().ingress).toEqual(rules);
      const read = await app.inject({ url: `/v1/tenants/${a.tenant}/policies/l7`, headers: bearer(a.token) });
      expect(read.json().ingress).toEqual(rules);
    });

    it("refuses http on an egress rule: the proxy decides for a service's backends, by who calls them", async () => {
      const body = await refused(put("bad", { subject: { identity: "client" }, egress: [{ action: "allow", http: { methods: ["GET"] } }] }), "body.egress.0.http");
      expect(body.errors?.[0]?.message).toContain("only ingress rules take http");
      // The same rule on ingress is taken: the refusal is about the direction.
      expect((await put("ok", ingress({ action: "allow", http: { methods: ["GET"] } }))).statusCode).toBe(201);
    });

    it("refuses http with a CIDR peer: an address outside the mesh has no identity the proxy can check", async () => {
      const body = await refused(put("bad", ingress({ action: "allow" }, { peers: [{ identity: "client" }, { cidr: "192.0.2.0/24" }], action: "deny", http: { pathPrefixes: ["/admin"] } })), "body.ingress.1.http");
      expect(body.errors?.[0]?.message).toContain("peers.1");
    });

    it("refuses http with udp ports, or any protocol on a port: the proxy reads HTTP over tcp", async () => {
      await refused(put("bad", ingress({ ports: [{ port: 53, protocol: "udp" }], action: "allow", http: {} })), "body.ingress.0.http");
      const any = await refused(put("bad", ingress({ ports: [{ port: 80, protocol: "tcp" }, { port: 8080, protocol: "any" }], action: "allow", http: { methods: ["GET"] } })), "body.ingress.0.http");
      expect(any.errors?.[0]?.message).toContain("ports.1");
    });

    it("refuses path prefixes a client could spell another way past, or never reach", async () => {
      for (const prefix of ["/api/../admin", "/api/./x", "//api", "/api%2fadmin", "/api?x", "/api#x", "/api/.."]) {
        await refused(put("bad", ingress({ action: "allow", http: { pathPrefixes: ["/ok", prefix] } })), "body.ingress.0.http.pathPrefixes.1");
      }
    });

    it("stores a jwt requirement of the tenant's own trust domain or one it federates with by a pasted bundle", async () => {
      const jwk = { ...generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" }), use: "jwt-svid", kid: "p1" };
      expect((await putResource(app, a.token, a.tenant, "federations/partner", { trustDomain: "partner.test", bundle: { spiffeBundle: { keys: [jwk] } } })).statusCode).toBe(201);
      const jwt = { audiences: ["web"], claims: [{ name: "team", values: ['a "b" \\ c', "d e"] }] };
      const spec = ingress({ action: "allow", http: { methods: ["GET"], jwt } }, { action: "deny", http: { jwt: { trustDomain: "partner.test", audiences: ["x"] } } });
      const res = await put("jwt", spec);
      expect(res.statusCode, res.body).toBe(201);
      expect(res.json().ingress).toEqual(spec.ingress);
    });

    it("refuses a jwt trust domain the tenant does not trust (422 naming it), and takes every kind of federation's", async () => {
      const unknown = await refusedUnwritten(app, [a.tenant], put("bad", ingress({ action: "allow" }, { action: "allow", http: { jwt: { trustDomain: "nobody.test", audiences: ["web"] } } })), 422);
      expect(unknown.errors?.map((e) => e.field)).toEqual(["body.ingress.1.http.jwt.trustDomain"]);
      // A bundle endpoint's: accepted (its keys are those the refresher stored: test/api/l7-jwt-endpoint.test.ts).
      const endpoint = await app.inject({ method: "PUT", url: `/v1/tenants/${a.tenant}/federations/by-endpoint`, headers: bearer(a.token), payload: { trustDomain: "endpoint.test", bundle: { endpointUrl: "https://127.0.0.1:9/bundle" } } });
      expect(endpoint.statusCode, endpoint.body).toBe(201);
      expect((await put("by-endpoint", ingress({ action: "allow", http: { jwt: { trustDomain: "endpoint.test", audiences: ["web"] } } }))).statusCode).toBe(201);
      // Another tenant's: accepted (its keys count once it consents).
      expect((await putResource(app, a.token, a.tenant, "federations/other-tenant", { trustDomain: "other.test", bundle: { tenant: "someone" } })).statusCode).toBe(201);
      expect((await put("by-tenant", ingress({ action: "allow", http: { jwt: { trustDomain: "other.test", audiences: ["web"] } } }))).statusCode).toBe(201);
    });

    it("refuses a jwt claim name the proxy would read as a nested member, an empty claim value, and jwt on egress", async () => {
      await refused(put("bad", ingress({ action: "allow", http: { jwt: { audiences: ["web"], claims: [{ name: "a", values: ["x"] }, { name: "realm.role", values: ["x"] }] } } })), "body.ingress.0.http.jwt.claims.1.name");
      await refused(put("bad", ingress({ action: "allow", http: { jwt: { audiences: ["web"], claims: [{ name: "team", values: ["x", ""] }] } } })), "body.ingress.0.http.jwt.claims.0.values.1");
      await refused(put("bad", { subject: { identity: "client" }, egress: [{ action: "allow", http: { jwt: { audiences: ["web"] } } }] }), "body.egress.0.http");
    });

    it("refuses what the schema cannot take: unknown methods, repeated methods, empty lists, unknown fields", async () => {
      for (const http of [{ methods: ["BREW"] }, { methods: ["GET", "GET"] }, { methods: [] }, { pathPrefixes: [] }, { pathPrefixes: ["api"] }, { headers: [] }]) {
        const body = await refusedUnwritten(app, [a.tenant], put("bad", ingress({ action: "allow", http })), 400);
        expect(body.errors?.every((e) => e.field.startsWith("body.ingress.0.http")), JSON.stringify(body)).toBe(true);
      }
    });
  });
});
