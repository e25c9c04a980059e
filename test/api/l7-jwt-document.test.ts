/**
 * A JWT rule through the API (issue 21): a policy rule's http.jwt reaches
 * the node's L7 document with the keys that verify the tenant's own
 * JWT-SVIDs (the ones the API mints), and the document follows the keys:
 * a CA prepared adds its key, a pasted federation's keys come and go with
 * it (a trust domain left without keys is listed with none: no token
 * verifies). Another tenant never sees them.
 */
import { createPublicKey, generateKeyPairSync } from "node:crypto";
import { jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { caSlots } from "../../api/src/db/schema.ts";
import { platformRead } from "../../api/src/db/platform-read.ts";
import { jwtKeyOf } from "../../api/src/follower/jwt-keys.ts";
import type { L7Document } from "../../api/src/mesh/specs.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, freshVip, identity, mustPut } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

describe("a JWT key as the proxy takes it (follower/jwt-keys.ts)", () => {
  const spki = (k: ReturnType<typeof generateKeyPairSync>) => k.publicKey.export({ type: "spki", format: "der" });
  it("names its alg by its type, and leaves out what the proxy cannot verify with or name safely", () => {
    expect(jwtKeyOf("a", spki(generateKeyPairSync("ec", { namedCurve: "P-256" })))?.alg).toBe("ES256");
    expect(jwtKeyOf("a", spki(generateKeyPairSync("ec", { namedCurve: "P-384" })))?.alg).toBe("ES384");
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    expect(jwtKeyOf("a", rsa.publicKey.export({ format: "jwk" }))).toEqual({ kid: "a", alg: "RS256", publicKeyPem: rsa.publicKey.export({ type: "spki", format: "pem" }) });
    expect(jwtKeyOf("a", spki(generateKeyPairSync("ec", { namedCurve: "P-521" })))).toBeNull();
    expect(jwtKeyOf("a\nacl x always_true", spki(generateKeyPairSync("ec", { namedCurve: "P-256" })))).toBeNull();
    expect(jwtKeyOf("a", Buffer.from("not a key"))).toBeNull();
    expect(jwtKeyOf("a", { kty: "EC", crv: "P-256", x: "AAAA", y: "AAAA" })).toBeNull();
  });
});

describe.each(BACKENDS)("JWT rules in the L7 document on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let b: { tenant: string; token: string };
    let node: { name: string; credential: string; podCidr: string };
    let td: string;

    const documentOf = async () => {
      const res = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) });
      expect(res.statusCode, res.body).toBe(200);
      return { doc: res.json() as L7Document, etag: res.headers.etag as string };
    };
    const mint = async (audience: string[]) => {
      const res = await app.inject({ method: "POST", url: `/v1/tenants/${a.tenant}/identities/web/jwt-svids`, headers: bearer(a.token), payload: { audience } });
      expect(res.statusCode, res.body).toBe(201);
      return res.json().token as string;
    };
    const policy = (trustDomain?: string) => ({
      subject: { identity: "api" },
      ingress: [{ peers: [{ identity: "web" }], action: "allow", http: { methods: ["GET"], pathPrefixes: ["/api"], jwt: { ...(trustDomain ? { trustDomain } : {}), audiences: ["web"] } } }],
    });

    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["write", "admin"]);
      b = await tenantWithToken(app, ["write"]);
      td = (await app.inject({ url: `/v1/tenants/${a.tenant}`, headers: operator })).json().trustDomain;
      node = await registeredNode(app);
      await identity(app, a.token, a.tenant, "web", { app: "web" });
      await identity(app, a.token, a.tenant, "api", { app: "api" });
      await identity(app, b.token, b.tenant, "bapi", { app: "bapi" });
      await mustPut(app, a.token, a.tenant, "workloads/web-1", { identity: "web", node: node.name, addresses: [freshAddress(node.podCidr)] });
      await mustPut(app, a.token, a.tenant, "workloads/api-1", { identity: "api", node: node.name, addresses: [freshAddress(node.podCidr)] });
      await mustPut(app, b.token, b.tenant, "workloads/bapi-1", { identity: "bapi", node: node.name, addresses: [freshAddress(node.podCidr)] });
      await mustPut(app, a.token, a.tenant, "services/api", { vip: freshVip(), ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { labels: { app: "api" } } } });
      await mustPut(app, b.token, b.tenant, "services/bapi", { vip: freshVip(), ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { labels: { app: "bapi" } } } });
      await mustPut(app, a.token, a.tenant, "httpRoutes/api", { parentRefs: [{ name: "api" }], rules: [{ backendRefs: [{}] }] });
      await mustPut(app, b.token, b.tenant, "httpRoutes/bapi", { parentRefs: [{ name: "bapi" }], rules: [{ backendRefs: [{}] }] });
      await mustPut(app, a.token, a.tenant, "policies/api-in", policy());
    });
    afterAll(async () => app?.close());

    it("carries the rule's jwt and the keys that verify the JWT-SVIDs the API mints for the tenant", async () => {
      const token = await mint(["web"]);
      const { doc } = await documentOf();
      const entry = doc.frontends.find((f) => f.tenant === a.tenant)!.authorization.entries[0]!;
      expect(entry.jwt).toEqual({ trustDomain: td, audiences: ["web"], claims: [] });
      const own = doc.jwks?.find((k) => k.tenant === a.tenant && k.trustDomain === td);
      expect(own?.keys.length).toBeGreaterThan(0);
      const kid = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()).kid as string;
      const key = own!.keys.find((k) => k.kid === kid)!;
      expect(key.alg).toBe("ES256");
      const { payload } = await jwtVerify(token, createPublicKey(key.publicKeyPem), { audience: "web", algorithms: ["ES256"] });
      expect(payload.sub).toBe(`spiffe://${td}/ns/test/sa/web`);
      // Only the trust domains a JWT entry names: tenant b names none.
      expect(doc.jwks?.every((k) => k.tenant === a.tenant)).toBe(true);
    });

    it("adds a prepared CA's key before it signs, and a new ETag says so", async () => {
      const before = await documentOf();
      const prepared = await app.inject({ method: "POST", url: `/v1/tenants/${a.tenant}/ca/prepare`, headers: bearer(a.token) });
      expect(prepared.statusCode, prepared.body).toBe(200);
      const after = await documentOf();
      expect(after.etag).not.toBe(before.etag);
      const keys = (d: L7Document) => d.jwks!.find((k) => k.trustDomain === td)!.keys.map((k) => k.kid);
      expect(keys(after.doc)).toHaveLength(keys(before.doc).length + 1);
      const jwks = (await app.inject({ url: `/v1/tenants/${a.tenant}/jwks` })).json() as { keys: { kid: string }[] };
      expect(keys(after.doc).sort()).toEqual(jwks.keys.map((k) => k.kid).sort());
    });

    it("follows a pasted federation's keys in and out; a trust domain without keys is listed with none", async () => {
      const jwk = { ...generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" }), use: "jwt-svid", kid: "partner-1" };
      await mustPut(app, a.token, a.tenant, "federations/partner", { trustDomain: "partner.test", bundle: { spiffeBundle: { keys: [jwk] } } });
      await mustPut(app, a.token, a.tenant, "policies/partner-in", policy("partner.test"));
      const partnerKeys = async () => (await documentOf()).doc.jwks?.find((k) => k.tenant === a.tenant && k.trustDomain === "partner.test")?.keys;
      const held = await partnerKeys();
      expect(held?.map((k) => k.kid)).toEqual(["partner-1"]);
      expect(createPublicKey(held![0]!.publicKeyPem).export({ format: "jwk" })).toMatchObject({ x: jwk.x, y: jwk.y });
      const gone = await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/federations/partner`, headers: bearer(a.token) });
      expect(gone.statusCode, gone.body).toBeLessThan(300);
      expect(await partnerKeys()).toEqual([]);
    });

    it("lets the compiler's platform role read the CA's public JWT keys, never a sealed private key", async () => {
      const kids = await platformRead(app.weft.db, (tx) => tx.select({ kid: caSlots.jwtKid }).from(caSlots));
      expect(kids.length).toBeGreaterThan(0);
      for (const column of [caSlots.jwtKeySealed, caSlots.caKeySealed]) {
        const err = (await platformRead(app.weft.db, (tx) => tx.select({ sealed: column }).from(caSlots)).then(
          () => null,
          (e: Error) => e,
        )) as (Error & { cause?: Error }) | null;
        expect(err?.cause?.message ?? err?.message).toMatch(/permission denied/);
      }
    });

    it("takes another tenant's CA keys once it consents to the federation, and follows its CA", async () => {
      const c = await tenantWithToken(app, ["write", "admin"]);
      const tdC = (await app.inject({ url: `/v1/tenants/${c.tenant}`, headers: operator })).json().trustDomain as string;
      await identity(app, c.token, c.tenant, "svc", {});
      const minted = await app.inject({ method: "POST", url: `/v1/tenants/${c.tenant}/identities/svc/jwt-svids`, headers: bearer(c.token), payload: { audience: ["web"] } });
      expect(minted.statusCode, minted.body).toBe(201);
      const kidsOfC = async () => ((await app.inject({ url: `/v1/tenants/${c.tenant}/jwks` })).json() as { keys: { kid: string }[] }).keys.map((k) => k.kid).sort();
      const heldForC = async () => (await documentOf()).doc.jwks?.find((k) => k.tenant === a.tenant && k.trustDomain === tdC)?.keys.map((k) => k.kid).sort();
      await mustPut(app, a.token, a.tenant, "federations/c", { trustDomain: tdC, bundle: { tenant: c.tenant } });
      await mustPut(app, a.token, a.tenant, "policies/c-in", policy(tdC));
      // Pending: c has not named a, so none of c's keys verify anything here.
      expect(await heldForC()).toEqual([]);
      await mustPut(app, c.token, c.tenant, "federations/a", { trustDomain: td, bundle: { tenant: a.tenant } });
      expect(await heldForC()).toEqual(await kidsOfC());
      const prepared = await app.inject({ method: "POST", url: `/v1/tenants/${c.tenant}/ca/prepare`, headers: bearer(c.token) });
      expect(prepared.statusCode, prepared.body).toBe(200);
      const after = await heldForC();
      expect(after).toEqual(await kidsOfC());
      expect(after).toHaveLength(2);
      // Consent withdrawn: the keys go.
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${c.tenant}/federations/a`, headers: bearer(c.token) })).statusCode).toBeLessThan(300);
      expect(await heldForC()).toEqual([]);
    });

    it("keeps one tenant's pasted keys for a trust domain out of another's entries", async () => {
      // b claims a's trust domain with a key of its own: a's entries still verify with a's keys only.
      const jwk = { ...generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" }), use: "jwt-svid", kid: "b-forged" };
      await mustPut(app, b.token, b.tenant, "federations/fake-a", { trustDomain: td, bundle: { spiffeBundle: { keys: [jwk] } } });
      await mustPut(app, b.token, b.tenant, "policies/bapi-in", { subject: { identity: "bapi" }, ingress: [{ action: "allow", http: { jwt: { trustDomain: td, audiences: ["x"] } } }] });
      const { doc } = await documentOf();
      const ofA = doc.jwks!.find((k) => k.tenant === a.tenant && k.trustDomain === td)!;
      const ofB = doc.jwks!.find((k) => k.tenant === b.tenant && k.trustDomain === td)!;
      expect(ofA.keys.map((k) => k.kid)).not.toContain("b-forged");
      expect(ofB.keys.map((k) => k.kid)).toEqual(["b-forged"]);
    });
  });
});
