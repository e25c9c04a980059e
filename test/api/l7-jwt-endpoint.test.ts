/**
 * JWT rules for a trust domain federated by a SPIFFE bundle endpoint (issue
 * 21): the refresher (mesh/bundle-refresher.ts) keeps the endpoint's last
 * good bundle in Postgres, and the node's L7 document carries its jwt-svid
 * keys, with no client reading the federation. A rotation at the endpoint
 * reaches the document; an endpoint that fails or serves garbage leaves the
 * stored keys alone; tenants never store into, or verify with, each other's;
 * an endpoint the operator no longer allows is neither fetched nor trusted;
 * replicas store a new bundle once.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { and, eq, sql } from "drizzle-orm";
import { jwtVerify, SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, type WeftApp } from "../../api/src/app.ts";
import { APP_ROLE, auditLog, changeLog, TENANT_SETTING } from "../../api/src/db/schema.ts";
import { refreshStep } from "../../api/src/mesh/bundle-refresher.ts";
import { sourceKey, type Jwks } from "../../api/src/mesh/bundle-endpoints.ts";
import type { L7Document } from "../../api/src/mesh/specs.ts";
import { BACKENDS, backendDatabase, bearer, skipBackend, startApi, tenantWithToken, testConfig, type Backend } from "../support/api.ts";
import { loopbackTls } from "../support/federation.ts";
import { freshAddress, freshVip, identity, mustPut, putResource } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";
import { untilHolds } from "../support/until.ts";

const TD = "partner.test";

/** A jwt-svid signing key of the endpoint's trust domain: the private half signs tokens, the public half is published. */
function signingKey(kid: string) {
  const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { kid, privateKey: pair.privateKey, jwk: { ...pair.publicKey.export({ format: "jwk" }), use: "jwt-svid", kid } };
}
type SigningKey = ReturnType<typeof signingKey>;

/** A bundle the endpoint serves, due again at once (spiffe_refresh_hint 0, within the tests' floor of 0). */
const bundleOf = (...keys: SigningKey[]) => ({ keys: keys.map((k) => k.jwk), spiffe_refresh_hint: 0 });

/** A loopback HTTPS bundle endpoint whose answer per path the test sets: a bundle, "down" (503), or a raw JSON text. */
async function bundleEndpoint(tls: { certPem: string; keyPem: string }) {
  const answers = new Map<string, object | "down" | { raw: string }>();
  const hits = new Map<string, number>();
  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    const path = req.url ?? "/";
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const answer = answers.get(path);
    if (answer === undefined) return res.writeHead(404).end();
    if (answer === "down") return res.writeHead(503).end();
    const body = "raw" in answer ? (answer as { raw: string }).raw : JSON.stringify(answer);
    res.writeHead(200, { "content-type": "application/json" }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    url: (path: string) => `https://127.0.0.1:${port}${path}`,
    answers,
    hits: (path: string) => hits.get(path) ?? 0,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A JWT-SVID of the endpoint's trust domain, signed with `key`. */
const tokenOf = (key: SigningKey, audience: string) =>
  new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: key.kid }).setSubject(`spiffe://${TD}/ns/x/sa/client`).setAudience(audience).setExpirationTime("5m").sign(key.privateKey as KeyObject);

/** A second replica over the same database (PGlite: the one in-memory instance), with its own allow-list and no refresh timer. */
const replicaOf = (app: WeftApp, backend: Backend, federationEndpoints: string[]) =>
  buildApp(testConfig(backend, { federationEndpoints, federationMinRefreshMs: 0, federationFetchTimeoutMs: 1000 }), backend === "pglite" ? { database: app.weft.database } : {});

describe("the refresher's step for one federation (mesh/bundle-refresher.ts refreshStep)", () => {
  const source = { endpointUrl: "https://127.0.0.1:8443/b" };
  const key = signingKey("k");
  const fed = (stored: { source: string; bundle: unknown } | null) => ({ tenantId: 1, name: "p", source, stored });
  it("stores keys that differ, keeps the stored ones on a failure, and withdraws them from an endpoint no longer allowed", () => {
    const ok = { ok: true, jwks: bundleOf(key) };
    const allowed = ["127.0.0.1:8443"];
    expect(refreshStep(fed(null), ok, allowed)).toEqual({ op: "store", keys: { keys: [key.jwk] } });
    // Members reordered (as jsonb gives them back) and a new refresh hint: nothing to store.
    const reordered = { keys: [Object.fromEntries(Object.entries(key.jwk).reverse())] };
    expect(refreshStep(fed({ source: sourceKey(source), bundle: reordered }), { ok: true, jwks: { ...bundleOf(key), spiffe_refresh_hint: 60 } as Jwks }, allowed)).toBeNull();
    // The same keys from another endpoint (or CA) are stored anew, for this one.
    expect(refreshStep(fed({ source: sourceKey({ ...source, endpointCa: "x" }), bundle: { keys: [key.jwk] } }), ok, allowed)?.op).toBe("store");
    expect(refreshStep(fed({ source: sourceKey(source), bundle: { keys: [key.jwk] } }), { ok: false, jwks: null, reason: "down" }, allowed)).toBeNull();
    expect(refreshStep(fed({ source: sourceKey(source), bundle: { keys: [key.jwk] } }), ok, [])).toEqual({ op: "withdraw" });
    expect(refreshStep(fed(null), ok, [])).toBeNull();
  });
});

describe.each(BACKENDS)("JWT rules for a bundle endpoint's trust domain on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    const tls = loopbackTls();
    let endpoint: Awaited<ReturnType<typeof bundleEndpoint>>;
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let b: { tenant: string; token: string };
    let node: { name: string; credential: string; podCidr: string };
    const keyA1 = signingKey("a-1");
    const keyA2 = signingKey("a-2");
    const keyB = signingKey("b-1");

    const documentOf = async () => {
      const res = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) });
      expect(res.statusCode, res.body).toBe(200);
      return { doc: res.json() as L7Document, etag: res.headers.etag as string };
    };
    const keysOf = async (tenant: string) => (await documentOf()).doc.jwks?.find((k) => k.tenant === tenant && k.trustDomain === TD)?.keys ?? [];
    const kidsOf = async (tenant: string) => (await keysOf(tenant)).map((k) => k.kid);
    const policy = (subject: string) => ({
      subject: { identity: subject },
      ingress: [{ action: "allow", http: { methods: ["GET"], jwt: { trustDomain: TD, audiences: ["web"] } } }],
    });
    /** A tenant with a service its node's proxy fronts, and a federation with TD by the endpoint's `path`. */
    const stage = async (t: { tenant: string; token: string }, svc: string, path: string) => {
      await identity(app, t.token, t.tenant, svc, { app: svc });
      await mustPut(app, t.token, t.tenant, `workloads/${svc}-1`, { identity: svc, node: node.name, addresses: [freshAddress(node.podCidr)] });
      await mustPut(app, t.token, t.tenant, `services/${svc}`, { vip: freshVip(), ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { labels: { app: svc } } } });
      await mustPut(app, t.token, t.tenant, `httpRoutes/${svc}`, { parentRefs: [{ name: svc }], rules: [{ backendRefs: [{}] }] });
      await mustPut(app, t.token, t.tenant, "federations/partner", { trustDomain: TD, bundle: { endpointUrl: endpoint.url(path), endpointCa: tls.caPem } });
    };
    /** A whole refresher pass after this point (after the timer's pass in flight, if any), which fetched `path` again. */
    const refreshedAgain = async (path: string) => {
      const before = endpoint.hits(path);
      await app.weft.bundleRefresher.refresh();
      expect(endpoint.hits(path)).toBeGreaterThan(before);
    };

    beforeAll(async () => {
      endpoint = await bundleEndpoint(tls);
      endpoint.answers.set("/a", bundleOf(keyA1));
      endpoint.answers.set("/b", bundleOf(keyB));
      // The refresher on its timer, as a deployment runs it (every 50 ms here, the floor 0).
      app = await startApi(backend, { federationEndpoints: [endpoint.host], federationFetchTimeoutMs: 1000, federationMinRefreshMs: 0, federationRefreshMs: 50 });
      a = await tenantWithToken(app, ["write", "admin"]);
      b = await tenantWithToken(app, ["write", "admin"]);
      node = await registeredNode(app);
      await stage(a, "api", "/a");
      await stage(b, "bapi", "/b");
    });
    afterAll(async () => {
      await app?.close();
      await endpoint?.close();
    });

    it("accepts a JWT rule naming the endpoint's trust domain; the node's document carries the endpoint's key, with no client reading the federation", async () => {
      const res = await putResource(app, a.token, a.tenant, "policies/api-in", policy("api"));
      expect(res.statusCode, res.body).toBe(201);
      const keys = await untilHolds("the endpoint's key in the document", () => keysOf(a.tenant), (k) => k.length > 0);
      expect(keys.map((k) => k.kid)).toEqual(["a-1"]);
      expect(keys[0]!.alg).toBe("ES256");
      const { payload } = await jwtVerify(await tokenOf(keyA1, "web"), createPublicKey(keys[0]!.publicKeyPem), { audience: "web", algorithms: ["ES256"] });
      expect(payload.sub).toBe(`spiffe://${TD}/ns/x/sa/client`);
      const entry = (await documentOf()).doc.frontends.find((f) => f.tenant === a.tenant)!.authorization.entries[0]!;
      expect(entry.jwt).toEqual({ trustDomain: TD, audiences: ["web"], claims: [] });
    });

    it("follows a key rotation at the endpoint: the new key replaces the old in the document, under a new ETag, by the refresher's audited write", async () => {
      await untilHolds("a-1 in the document", () => kidsOf(a.tenant), (k) => k.join() === "a-1");
      const before = await documentOf();
      endpoint.answers.set("/a", bundleOf(keyA2));
      const keys = await untilHolds("the rotated key in the document", () => keysOf(a.tenant), (k) => k.map((x) => x.kid).join() === "a-2");
      expect((await documentOf()).etag).not.toBe(before.etag);
      await jwtVerify(await tokenOf(keyA2, "web"), createPublicKey(keys[0]!.publicKeyPem), { audience: "web" });
      await expect(jwtVerify(await tokenOf(keyA1, "web"), createPublicKey(keys[0]!.publicKeyPem), { audience: "web" })).rejects.toThrow(/signature/);
      const audit = await app.inject({ url: `/v1/tenants/${a.tenant}/audit?limit=200`, headers: bearer(a.token) });
      expect(audit.statusCode, audit.body).toBe(200);
      const fetched = (audit.json().items as { actor: string; action: string; resource: string }[]).filter((e) => e.action === "federation.bundle-fetched");
      expect(fetched.length).toBeGreaterThanOrEqual(2);
      expect(fetched.every((e) => e.actor === "system:bundle-refresher" && e.resource === "federation/partner")).toBe(true);
    });

    it.each([
      ["down (503)", "down" as const],
      ["not JSON", { raw: "{not json" }],
      ["not a SPIFFE bundle", { raw: JSON.stringify({ keys: [] }) }],
      ["a private key", { raw: JSON.stringify({ keys: [{ ...keyA1.jwk, d: "AAAA" }] }) }],
      ["a key that is not one", { raw: JSON.stringify({ keys: [{ kty: "EC", crv: "P-256", x: "AAAA", y: "AAAA", use: "jwt-svid", kid: "junk" }] }) }],
    ])("keeps the stored keys while the endpoint answers %s", async (_what, answer) => {
      endpoint.answers.set("/a", bundleOf(keyA2));
      await untilHolds("a-2 in the document", () => kidsOf(a.tenant), (k) => k.join() === "a-2");
      const aId = (await app.weft.directory.byName(a.tenant))!.id;
      const changes = async () =>
        (await app.weft.db.select({ n: sql<number>`count(*)::int` }).from(changeLog).where(and(eq(changeLog.tenantId, aId), eq(changeLog.kind, "federation"))))[0]!.n;
      const before = await changes();
      endpoint.answers.set("/a", answer);
      await refreshedAgain("/a");
      await refreshedAgain("/a");
      expect(await kidsOf(a.tenant)).toEqual(["a-2"]);
      expect(await changes()).toBe(before);
      const shown = (await app.inject({ url: `/v1/tenants/${a.tenant}/federations/partner`, headers: bearer(a.token) })).json();
      expect(shown.status).toBe("unavailable");
      endpoint.answers.set("/a", bundleOf(keyA2));
    });

    it("keeps tenants apart: a federation of the same name and trust domain in another tenant stores and serves only its own endpoint's keys", async () => {
      endpoint.answers.set("/a", bundleOf(keyA2));
      expect((await putResource(app, b.token, b.tenant, "policies/bapi-in", policy("bapi"))).statusCode).toBe(201);
      await untilHolds("b's key in the document", () => kidsOf(b.tenant), (k) => k.join() === "b-1");
      expect(await kidsOf(a.tenant)).toEqual(["a-2"]);
      const aId = (await app.weft.directory.byName(a.tenant))!.id;
      const bId = (await app.weft.directory.byName(b.tenant))!.id;
      // Row-level security as the request role bound to b: a's stored bundle is invisible, and none can be written for a.
      const asB = (query: ReturnType<typeof sql>) =>
        app.weft.db
          .transaction(async (tx) => {
            await tx.execute(sql`SELECT set_config('role', ${APP_ROLE}, true), set_config(${TENANT_SETTING}, ${String(bId)}, true)`);
            const rows = ((await tx.execute(query)) as unknown as { rows: Record<string, unknown>[] }).rows;
            throw Object.assign(new Error("rollback"), { rows });
          })
          .catch((err: Error & { rows?: Record<string, unknown>[]; cause?: Error }) => {
            if (err.message === "rollback") return err.rows!;
            return err.cause ?? err;
          });
      expect(await asB(sql`SELECT tenant_id, name FROM federation_endpoint_bundles`)).toEqual([{ tenant_id: expect.anything(), name: "partner" }]);
      expect(Number(((await asB(sql`SELECT tenant_id FROM federation_endpoint_bundles`)) as { tenant_id: unknown }[])[0]!.tenant_id)).toBe(bId);
      const forged = JSON.stringify({ keys: [keyB.jwk] });
      const refused = await asB(sql`UPDATE federation_endpoint_bundles SET bundle = ${forged}::jsonb WHERE tenant_id = ${aId} RETURNING name`);
      expect(refused).toEqual([]);
      const inserted = await asB(sql`INSERT INTO federation_endpoint_bundles (tenant_id, name, source, bundle) VALUES (${aId}, 'partner', 'x', ${forged}::jsonb)`);
      expect(String((inserted as Error).message)).toMatch(/row-level security/);
      expect(await kidsOf(a.tenant)).toEqual(["a-2"]);
    });

    it("drops the old endpoint's keys at once when the federation is pointed at another endpoint, and takes the new one's at the next refresh", async () => {
      const c = await tenantWithToken(app, ["write", "admin"]);
      endpoint.answers.set("/c1", bundleOf(signingKey("c-1")));
      endpoint.answers.set("/c2", bundleOf(signingKey("c-2")));
      await stage(c, "capi", "/c1");
      await mustPut(app, c.token, c.tenant, "policies/capi-in", policy("capi"));
      await untilHolds("c-1 in the document", () => kidsOf(c.tenant), (k) => k.join() === "c-1");
      endpoint.answers.set("/c2", "down");
      await mustPut(app, c.token, c.tenant, "federations/partner", { trustDomain: TD, bundle: { endpointUrl: endpoint.url("/c2"), endpointCa: tls.caPem } });
      expect(await kidsOf(c.tenant)).toEqual([]);
      endpoint.answers.set("/c2", bundleOf(signingKey("c-2")));
      await untilHolds("c-2 in the document", () => kidsOf(c.tenant), (k) => k.join() === "c-2");
    });
  });

  describe.skipIf(skipBackend(backend))(`replicas and the allow-list, refreshed by hand, on ${backendDatabase(backend)}`, () => {
    const tls = loopbackTls();
    let endpoint: Awaited<ReturnType<typeof bundleEndpoint>>;
    let app: WeftApp;
    beforeAll(async () => {
      endpoint = await bundleEndpoint(tls);
      app = await startApi(backend, { federationEndpoints: [endpoint.host], federationFetchTimeoutMs: 1000, federationMinRefreshMs: 0 });
    });
    afterAll(async () => {
      await app?.close();
      await endpoint?.close();
    });

    it("stores a changed bundle once whichever replicas refresh, and nothing when it is unchanged", async () => {
      const t = await tenantWithToken(app, ["write"]);
      const tenantId = (await app.weft.directory.byName(t.tenant))!.id;
      const id = `${tenantId}/partner`;
      endpoint.answers.set("/r", bundleOf(signingKey("r-1")));
      await mustPut(app, t.token, t.tenant, "federations/partner", { trustDomain: TD, bundle: { endpointUrl: endpoint.url("/r"), endpointCa: tls.caPem } });
      const replica = await replicaOf(app, backend, [endpoint.host]);
      try {
        const fetchedBundles = async () =>
          (await app.weft.db.select({ n: sql<number>`count(*)::int` }).from(auditLog).where(and(eq(auditLog.tenantId, tenantId), eq(auditLog.action, "federation.bundle-fetched"))))[0]!.n;
        const both = async () => (await Promise.all([app.weft.bundleRefresher.refresh(), replica.weft.bundleRefresher.refresh()])).flatMap((o) => o.stored).filter((s) => s === id);
        expect(await both()).toEqual([id]);
        expect(await fetchedBundles()).toBe(1);
        // Fetched again, the same keys: nothing stored, no revision taken.
        expect(await both()).toEqual([]);
        expect(await fetchedBundles()).toBe(1);
        endpoint.answers.set("/r", bundleOf(signingKey("r-2")));
        expect(await both()).toEqual([id]);
        expect(await fetchedBundles()).toBe(2);
      } finally {
        await replica.close();
      }
    });

    it("serves the stored bundle to workloads from a replica that has not fetched it while the endpoint is down, never from one that does not allow it", async () => {
      const t = await tenantWithToken(app, ["write"]);
      endpoint.answers.set("/s", bundleOf(signingKey("s-1")));
      await mustPut(app, t.token, t.tenant, "federations/partner", { trustDomain: TD, bundle: { endpointUrl: endpoint.url("/s"), endpointCa: tls.caPem } });
      await app.weft.bundleRefresher.refresh();
      endpoint.answers.set("/s", "down");
      const bundlesOn = async (replica: WeftApp) => {
        const res = await replica.inject({ url: `/v1/tenants/${t.tenant}/federated-bundles`, headers: bearer(t.token) });
        expect(res.statusCode, res.body).toBe(200);
        return res.json().bundles as { trustDomain: string; jwtAuthorities: { keyId: string }[] }[];
      };
      const fresh = await replicaOf(app, backend, [endpoint.host]);
      const closed = await replicaOf(app, backend, []);
      try {
        expect(await bundlesOn(fresh)).toEqual([expect.objectContaining({ trustDomain: TD, jwtAuthorities: [expect.objectContaining({ keyId: "s-1" })] })]);
        expect((await fresh.inject({ url: `/v1/tenants/${t.tenant}/federations/partner`, headers: bearer(t.token) })).json().status).toBe("unavailable");
        expect(await bundlesOn(closed)).toEqual([]);
      } finally {
        await fresh.close();
        await closed.close();
      }
    });

    it("neither fetches nor keeps the bundle of an endpoint the operator no longer allows", async () => {
      const t = await tenantWithToken(app, ["write"]);
      const tenantId = (await app.weft.directory.byName(t.tenant))!.id;
      endpoint.answers.set("/gone", bundleOf(signingKey("g-1")));
      await mustPut(app, t.token, t.tenant, "federations/partner", { trustDomain: TD, bundle: { endpointUrl: endpoint.url("/gone"), endpointCa: tls.caPem } });
      expect((await app.weft.bundleRefresher.refresh()).stored).toContain(`${tenantId}/partner`);
      // A replica whose operator allows no endpoint (the same deployment, its allow-list since emptied).
      const replica = await replicaOf(app, backend, []);
      try {
        const hits = endpoint.hits("/gone");
        expect((await replica.weft.bundleRefresher.refresh()).withdrawn).toContain(`${tenantId}/partner`);
        expect(endpoint.hits("/gone")).toBe(hits);
        const stored = await app.weft.db.execute(sql`SELECT name FROM federation_endpoint_bundles WHERE tenant_id = ${tenantId}`);
        expect((stored as unknown as { rows: unknown[] }).rows).toEqual([]);
      } finally {
        await replica.close();
      }
    });
  });
});
