// Issue 3 through HTTP: identities, X.509- and JWT-SVIDs, the public bundle
// and CA rotation, each checked by a real validator (openssl, Node tls, jose).
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify, type JWK } from "jose";
import { sql } from "drizzle-orm";
import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { fromPem, toPem } from "@weft/pki/der";
import { caSlots, svidIssuances } from "../../api/src/db/schema.ts";
import { read } from "../../api/src/db/transactions.ts";
import { extension, makeCsr, mtlsServer, openssl, opensslStatus, tempDir, type KeySpec } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

// Each backend twice: CSRs verified and leaves signed on the request's thread,
// and in a pool of two worker threads (ca/signing-pool.ts); every check below
// holds for both.
const VARIANTS = BACKENDS.flatMap((backend) => [0, 2].map((signingWorkers) => [backend, signingWorkers] as const));

describe.each(VARIANTS)("SPIFFE through the API on %s, %i signing workers", (backend, signingWorkers) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    /** Every response body of this suite, searched at the end for key material. */
    const bodies: string[] = [];
    const call = async (opts: InjectOptions) => {
      const res = await app.inject(opts);
      bodies.push(res.body);
      return res;
    };

    let acme: { tenant: string; token: string };
    let trustDomain: string;
    const path = "/ns/prod/sa/web";

    const putIdentity = (t: { tenant: string; token: string }, name: string, payload: object) =>
      call({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/${name}`, headers: bearer(t.token), payload });
    const issue = (t: { tenant: string; token: string }, name: string, csr: string) =>
      call({ method: "POST", url: `/v1/tenants/${t.tenant}/identities/${name}/x509-svids`, headers: bearer(t.token), payload: { csr } });
    const bundlePem = async (tenant: string) => (await call({ url: `/v1/tenants/${tenant}/bundle.pem` })).body;
    const audit = async (t: { tenant: string; token: string }) =>
      ((await call({ url: `/v1/tenants/${t.tenant}/audit?limit=1000`, headers: bearer(t.token) })).json().items as { action: string }[]).map(
        (e) => e.action,
      );
    /** An SVID for a new identity at `idPath`: the key file and the leaf plus chain. */
    const svidFor = async (t: { tenant: string; token: string }, name: string, idPath: string, key: KeySpec = "ec-p256") => {
      expect((await putIdentity(t, name, { path: idPath })).statusCode).toBe(201);
      const csr = makeCsr(tmp.dir, { key });
      const res = await issue(t, name, csr.csrPem);
      expect(res.statusCode).toBe(201);
      const body = res.json() as { certificate: string; chain: string[]; expiresAt: string; serial: string };
      return { ...body, key: readFileSync(csr.keyPath), cert: body.certificate + body.chain.join("") };
    };

    beforeAll(async () => {
      app = await startApi(backend, { signingWorkers });
      acme = await tenantWithToken(app, ["admin"]);
      trustDomain = (await call({ url: `/v1/tenants/${acme.tenant}`, headers: bearer(acme.token) })).json().trustDomain;
    });
    afterAll(async () => app?.close());

    describe("identities", () => {
      it("PUT creates with spiffeId and a numeric identity, replaces keeping it, GET, list, DELETE", async () => {
        const created = await putIdentity(acme, "web", { path, selectors: { app: "web" }, x509SvidTtlSeconds: 600 });
        expect(created.statusCode).toBe(201);
        const web = created.json();
        expect(web).toMatchObject({ name: "web", path, spiffeId: `spiffe://${trustDomain}${path}`, selectors: { app: "web" }, x509SvidTtlSeconds: 600, jwtSvidTtlSeconds: null });
        expect(created.headers.etag).toBe(web.etag);
        expect(web.securityIdentity).toBeGreaterThanOrEqual(256);
        expect(web.securityIdentity).toBeLessThanOrEqual(0xffff_ffff);

        const replaced = await call({
          method: "PUT",
          url: `/v1/tenants/${acme.tenant}/identities/web`,
          headers: { ...bearer(acme.token), "if-match": web.etag },
          payload: { path, selectors: { app: "web", tier: "front" } },
        });
        expect(replaced.statusCode).toBe(200);
        expect(replaced.json()).toMatchObject({ securityIdentity: web.securityIdentity, x509SvidTtlSeconds: null });
        const stale = await call({
          method: "PUT",
          url: `/v1/tenants/${acme.tenant}/identities/web`,
          headers: { ...bearer(acme.token), "if-match": web.etag },
          payload: { path },
        });
        expect(stale.statusCode).toBe(412);
        const createOnly = await call({
          method: "PUT",
          url: `/v1/tenants/${acme.tenant}/identities/web`,
          headers: { ...bearer(acme.token), "if-none-match": "*" },
          payload: { path },
        });
        expect(createOnly.statusCode).toBe(412);

        const got = await call({ url: `/v1/tenants/${acme.tenant}/identities/web`, headers: bearer(acme.token) });
        expect(got.json()).toEqual(replaced.json());

        const other = await putIdentity(acme, "api", { path: "/ns/prod/sa/api" });
        expect(other.json().securityIdentity).not.toBe(web.securityIdentity);
        const sameId = await putIdentity(acme, "web2", { path });
        expect(sameId.statusCode).toBe(409);
        expect(sameId.json().errors).toEqual([{ field: "body.path", message: 'is used by identity "web"' }]);

        const list = await call({ url: `/v1/tenants/${acme.tenant}/identities?limit=1`, headers: bearer(acme.token) });
        expect(list.json().items.map((i: { name: string }) => i.name)).toEqual(["api"]);
        const rest = await call({
          url: `/v1/tenants/${acme.tenant}/identities?limit=1&cursor=${list.json().nextCursor}`,
          headers: bearer(acme.token),
        });
        expect(rest.json()).toMatchObject({ items: [{ name: "web" }], nextCursor: null });

        const del = await call({ method: "DELETE", url: `/v1/tenants/${acme.tenant}/identities/api`, headers: bearer(acme.token) });
        expect(del.statusCode).toBe(204);
        expect((await call({ url: `/v1/tenants/${acme.tenant}/identities/api`, headers: bearer(acme.token) })).statusCode).toBe(404);
        // A recreated identity gets a fresh number: the deleted one is never handed out again.
        const again = await putIdentity(acme, "api", { path: "/ns/prod/sa/api" });
        expect(again.json().securityIdentity).not.toBe(other.json().securityIdentity);
        expect(await audit(acme)).toEqual(expect.arrayContaining(["identity.create", "identity.replace", "identity.delete"]));
      });

      it("numeric identities are unique across tenants", async () => {
        const other = await tenantWithToken(app, ["write"]);
        const a = (await putIdentity(other, "web", { path })).json().securityIdentity;
        const b = (await call({ url: `/v1/tenants/${acme.tenant}/identities/web`, headers: bearer(acme.token) })).json().securityIdentity;
        expect(a).not.toBe(b);
      });

      it("another tenant's token gets 404 on identities and SVIDs, as if they did not exist", async () => {
        const evil = await tenantWithToken(app, ["admin"]);
        const url = `/v1/tenants/${acme.tenant}/identities/web`;
        expect((await call({ url, headers: bearer(evil.token) })).statusCode).toBe(404);
        expect((await call({ url: `/v1/tenants/${acme.tenant}/identities`, headers: bearer(evil.token) })).statusCode).toBe(404);
        expect((await call({ method: "PUT", url, headers: bearer(evil.token), payload: { path } })).statusCode).toBe(404);
        const csr = makeCsr(tmp.dir).csrPem;
        expect((await call({ method: "POST", url: `${url}/x509-svids`, headers: bearer(evil.token), payload: { csr } })).statusCode).toBe(404);
      });

      it("a read token may not obtain an SVID (403), a write token may", async () => {
        const minted = await call({
          method: "POST",
          url: `/v1/tenants/${acme.tenant}/tokens`,
          headers: bearer(acme.token),
          payload: { name: "reader", scopes: ["read"] },
        });
        const reader = { tenant: acme.tenant, token: minted.json().token as string };
        const csr = makeCsr(tmp.dir).csrPem;
        const refused = await issue(reader, "web", csr);
        expect(refused.statusCode).toBe(403);
        expect(refused.headers["content-type"]).toMatch(/^application\/problem\+json/);
      });
    });

    describe("X.509-SVIDs", () => {
      let leafText = "";
      let caText = "";
      let svid: Awaited<ReturnType<typeof svidFor>>;

      beforeAll(async () => {
        svid = await svidFor(acme, "x509", "/ns/prod/sa/x509");
        tmp.file(`${backend}-leaf.pem`, svid.certificate);
        tmp.file(`${backend}-bundle.pem`, await bundlePem(acme.tenant));
        leafText = openssl(["x509", "-in", tmp.file(`${backend}-leaf.pem`), "-text", "-noout"]);
        caText = openssl(["x509", "-in", tmp.file(`${backend}-bundle.pem`), "-text", "-noout"]);
      });

      it("passes openssl verify -x509_strict against bundle.pem", () => {
        const r = opensslStatus(["verify", "-x509_strict", "-CAfile", tmp.file(`${backend}-bundle.pem`), tmp.file(`${backend}-leaf.pem`)]);
        expect(r.out).toContain(": OK");
        expect(r.ok).toBe(true);
      });

      it("has the X509-SVID profile, as openssl x509 -text shows it", () => {
        expect(extension(leafText, "X509v3 Subject Alternative Name")!.value).toBe(`URI:spiffe://${trustDomain}/ns/prod/sa/x509`);
        expect(leafText.match(/URI:/g)).toHaveLength(1);
        expect(extension(leafText, "X509v3 Basic Constraints")).toEqual({ header: "X509v3 Basic Constraints: critical", value: "CA:FALSE" });
        expect(extension(leafText, "X509v3 Key Usage")).toEqual({ header: "X509v3 Key Usage: critical", value: "Digital Signature" });
        expect(extension(leafText, "X509v3 Extended Key Usage")!.value).toBe("TLS Web Server Authentication, TLS Web Client Authentication");
        const aki = extension(leafText, "X509v3 Authority Key Identifier")!.value.replace(/^keyid:/, "");
        expect(aki).toBe(extension(caText, "X509v3 Subject Key Identifier")!.value);
        expect(extension(caText, "X509v3 Basic Constraints")!.value).toMatch(/^CA:TRUE/);
        expect(extension(caText, "X509v3 Key Usage")).toEqual({ header: "X509v3 Key Usage: critical", value: "Certificate Sign, CRL Sign" });
        expect(extension(caText, "X509v3 Subject Alternative Name")!.value).toBe(`URI:spiffe://${trustDomain}`);
      });

      it("answers serial and expiry that match the certificate, default TTL one hour", () => {
        const leaf = new X509Certificate(svid.certificate);
        expect(svid.serial.toUpperCase()).toBe(leaf.serialNumber);
        expect(svid.serial.length).toBeGreaterThanOrEqual(16);
        expect(Date.parse(svid.expiresAt)).toBe(Date.parse(leaf.validTo));
        expect(Date.parse(leaf.validTo) - Date.now()).toBeGreaterThan(59 * 60_000);
        expect(Date.parse(leaf.validTo) - Date.now()).toBeLessThanOrEqual(60 * 60_000);
      });

      it("uses the identity's own TTL", async () => {
        await putIdentity(acme, "short", { path: "/ns/prod/sa/short", x509SvidTtlSeconds: 120 });
        const res = await issue(acme, "short", makeCsr(tmp.dir).csrPem);
        expect(Date.parse(res.json().expiresAt) - Date.now()).toBeLessThanOrEqual(120_000);
        expect(Date.parse(res.json().expiresAt) - Date.now()).toBeGreaterThan(100_000);
      });

      it("is recorded with serial, identity and expiry, and audited", async () => {
        const tenantId = Number((await app.weft.directory.byName(acme.tenant))!.id);
        const rows = await read(app.weft.db, tenantId, (tx) => tx.select().from(svidIssuances).where(sql`${svidIssuances.serial} = ${svid.serial}`));
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({ kind: "x509-svid", identityName: "x509", spiffeId: `spiffe://${trustDomain}/ns/prod/sa/x509` });
        expect(rows[0]!.expiresAt.toISOString()).toBe(svid.expiresAt);
        expect(await audit(acme)).toContain("x509-svid.issue");
      });

      it("audits issuances and CA changes as the caller that asked, under its request id", async () => {
        // The caller reaches the store as an argument of each CA call: a
        // request must never be audited as another one, even when they overlap.
        const t = await tenantWithToken(app, ["admin"]);
        const jti = (token: string) => JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()).jti as string;
        await putIdentity(t, "audited", { path: "/ns/prod/sa/audited" });
        const url = `/v1/tenants/${t.tenant}/identities/audited`;
        const ids = ["svid-a", "svid-b", "svid-c"].map((x) => `${x}-${backend}`);
        const answers = await Promise.all([
          ...ids.map((id) => call({ method: "POST", url: `${url}/x509-svids`, headers: { ...bearer(t.token), "x-request-id": id }, payload: { csr: makeCsr(tmp.dir).csrPem } })),
          call({ method: "POST", url: `${url}/jwt-svids`, headers: { ...bearer(t.token), "x-request-id": `jwt-${backend}` }, payload: { audience: ["db"] } }),
          call({ method: "POST", url: `/v1/tenants/${t.tenant}/ca/prepare`, headers: { ...bearer(t.token), "x-request-id": `prep-${backend}` } }),
        ]);
        expect(answers.map((a) => a.statusCode)).toEqual([201, 201, 201, 201, 200]);
        // Audited under the server's request id, each answered in x-request-id; the client's ids are only logged.
        const [svidA, svidB, svidC, jwtId, prepId] = answers.map((a) => a.headers["x-request-id"] as string);
        const entries = (await call({ url: `/v1/tenants/${t.tenant}/audit?limit=1000`, headers: bearer(t.token) })).json().items as {
          action: string;
          actor: string;
          requestId: string;
          resource: string;
        }[];
        const actor = `token:${jti(t.token)}`;
        for (const id of [svidA, svidB, svidC]) {
          expect(entries.filter((e) => e.requestId === id)).toEqual([expect.objectContaining({ action: "x509-svid.issue", actor, resource: "identity/audited" })]);
        }
        expect(entries.filter((e) => e.requestId === jwtId)).toEqual([expect.objectContaining({ action: "jwt-svid.issue", actor })]);
        expect(entries.filter((e) => e.requestId === prepId)).toEqual([expect.objectContaining({ action: "ca.prepare", actor })]);
        for (const id of [...ids, `jwt-${backend}`, `prep-${backend}`]) expect(entries.filter((e) => e.requestId === id)).toEqual([]);
        // The CA made at tenant creation is the operator's doing.
        expect(entries.filter((e) => e.action === "ca.bootstrap").map((e) => e.actor)).toEqual(["operator"]);
      });

      it("completes mutual TLS between two SVIDs trusting only the bundle; another tenant's SVID is refused", async () => {
        const bundle = await bundlePem(acme.tenant);
        const serverId = `spiffe://${trustDomain}/ns/prod/sa/tls-server`;
        const server = await svidFor(acme, "tls-server", "/ns/prod/sa/tls-server");
        const client = await svidFor(acme, "tls-client", "/ns/prod/sa/tls-client");
        const evil = await tenantWithToken(app, ["write"]);
        const foreign = await svidFor(evil, "tls-client", "/ns/prod/sa/tls-client");

        const { seenByServer, refusals, dial, close } = await mtlsServer(server, bundle, serverId);
        try {
          expect(await dial(client)).toEqual({ peerId: serverId, data: "hello", error: undefined });
          expect(seenByServer).toEqual([`spiffe://${trustDomain}/ns/prod/sa/tls-client`]);
          const refused = await dial(foreign);
          expect(refused.data).toBe("");
          expect(seenByServer).toHaveLength(1);
          expect(refusals).toHaveLength(1);
          expect(String(refusals[0])).toMatch(/^(SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)$/);
        } finally {
          await close();
        }
      });
    });

    describe("JWT-SVIDs", () => {
      it("verify with jose against the bundle's jwt-svid keys; fail for a wrong audience and after exp", async () => {
        await putIdentity(acme, "jwt", { path: "/ns/prod/sa/jwt" });
        const res = await call({
          method: "POST",
          url: `/v1/tenants/${acme.tenant}/identities/jwt/jwt-svids`,
          headers: bearer(acme.token),
          payload: { audience: ["db"] },
        });
        expect(res.statusCode).toBe(201);
        const { token, expiresAt } = res.json() as { token: string; expiresAt: string };
        const bundle = (await call({ url: `/v1/tenants/${acme.tenant}/bundle` })).json() as { keys: (JWK & { use: string })[] };
        // jose only uses keys whose `use` is absent or "sig": a SPIFFE verifier picks the jwt-svid keys and drops `use`.
        const jwks = createLocalJWKSet({ keys: bundle.keys.filter((k) => k.use === "jwt-svid").map(({ use: _u, ...k }) => k) });
        const { payload } = await jwtVerify(token, jwks, { audience: "db", algorithms: ["ES256"] });
        expect(payload.sub).toBe(`spiffe://${trustDomain}/ns/prod/sa/jwt`);
        expect(payload.exp! * 1000).toBe(Date.parse(expiresAt));
        await expect(jwtVerify(token, jwks, { audience: "other" })).rejects.toThrow(/aud/);
        await expect(jwtVerify(token, jwks, { audience: "db", currentDate: new Date(Date.parse(expiresAt) + 1000) })).rejects.toThrow(/exp/);
        expect(await audit(acme)).toContain("jwt-svid.issue");
      });

      it("refuses an empty audience naming body.audience", async () => {
        const res = await call({
          method: "POST",
          url: `/v1/tenants/${acme.tenant}/identities/jwt/jwt-svids`,
          headers: bearer(acme.token),
          payload: { audience: [] },
        });
        expect(res.statusCode).toBe(400);
        expect(res.json().errors.map((e: { field: string }) => e.field)).toEqual(["body.audience"]);
      });
    });

    describe("bad input: 400 problem+json naming the field, nothing written", () => {
      const issuedCount = async () => {
        const tenantId = Number((await app.weft.directory.byName(acme.tenant))!.id);
        return (await read(app.weft.db, tenantId, (tx) => tx.select().from(svidIssuances))).length;
      };
      const expectProblem = (res: Awaited<ReturnType<typeof call>>, field: string, message?: RegExp) => {
        expect(res.statusCode).toBe(400);
        expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
        const errors = res.json().errors as { field: string; message: string }[];
        expect(errors.map((e) => e.field)).toContain(field);
        if (message) expect(errors.find((e) => e.field === field)!.message).toMatch(message);
      };

      it("refuses malformed, RSA-1024 and bad-signature CSRs", async () => {
        await putIdentity(acme, "csr", { path: "/ns/prod/sa/csr" });
        const before = await issuedCount();
        expectProblem(await issue(acme, "csr", "not a csr"), "body.csr", /BEGIN CERTIFICATE REQUEST/);
        expectProblem(await issue(acme, "csr", makeCsr(tmp.dir, { key: "rsa-1024" }).csrPem), "body.csr", /1024 bits/);
        const der = Buffer.from(fromPem(makeCsr(tmp.dir).csrPem, ["CERTIFICATE REQUEST"])!);
        der[der.length - 10]! ^= 0x01; // inside the signature's r or s value
        expectProblem(await issue(acme, "csr", toPem("CERTIFICATE REQUEST", der)), "body.csr", /signature does not verify/);
        const wrongSan = makeCsr(tmp.dir, { uri: `spiffe://${trustDomain}/ns/prod/sa/admin` }).csrPem;
        expectProblem(await issue(acme, "csr", wrongSan), "body.csr", /URI SAN/);
        expect(await issuedCount()).toBe(before);
      });

      it("refuses paths with '..' or '%2F' and writes no identity", async () => {
        for (const bad of ["/ns/../sa/web", "/ns%2Fprod/sa/web", "/ns/prod/", "/ns//web"]) {
          const name = uniqueName("bad");
          expectProblem(await putIdentity(acme, name, { path: bad }), "body.path");
          expect((await call({ url: `/v1/tenants/${acme.tenant}/identities/${name}`, headers: bearer(acme.token) })).statusCode).toBe(404);
        }
      });

      it("refuses a trust domain with capitals and creates no tenant", async () => {
        const name = uniqueName("td");
        const res = await call({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name, trustDomain: "Acme.Example" } });
        expectProblem(res, "body.trustDomain");
        expect((await call({ url: `/v1/tenants/${name}`, headers: operator })).statusCode).toBe(404);
      });
    });

    describe("bundle and rotation", () => {
      it("serves the bundle without a credential, as SPIFFE bundle JSON and PEM", async () => {
        const res = await call({ url: `/v1/tenants/${acme.tenant}/bundle` });
        expect(res.statusCode).toBe(200);
        expect(res.headers["content-type"]).toMatch(/^application\/json/);
        const b = res.json();
        expect(b.spiffe_refresh_hint).toBeGreaterThan(0);
        const x509 = b.keys.filter((k: { use: string }) => k.use === "x509-svid");
        expect(x509).toHaveLength(1);
        expect(x509[0].x5c).toHaveLength(1);
        expect(x509[0].kid).toBeUndefined();
        expect(b.keys.filter((k: { use: string; kid?: string }) => k.use === "jwt-svid" && k.kid)).toHaveLength(1);
        const pem = await call({ url: `/v1/tenants/${acme.tenant}/bundle.pem` });
        expect(pem.headers["content-type"]).toMatch(/^application\/x-pem-file/);
        expect(new X509Certificate(pem.body).raw.toString("base64")).toBe(x509[0].x5c[0]);
      });

      it("answers 404 problem+json for a tenant that does not exist", async () => {
        for (const url of ["/v1/tenants/no-such-tenant/bundle", "/v1/tenants/no-such-tenant/bundle.pem"]) {
          const res = await call({ url });
          expect(res.statusCode).toBe(404);
          expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
        }
      });

      it("prepare adds a CA to the bundle, activate makes it sign, older SVIDs still verify", async () => {
        const t = await tenantWithToken(app, ["admin"]);
        const before = await svidFor(t, "web", path);
        const bundle0 = (await call({ url: `/v1/tenants/${t.tenant}/bundle` })).json();

        const prepared = await call({ method: "POST", url: `/v1/tenants/${t.tenant}/ca/prepare`, headers: bearer(t.token) });
        expect(prepared.statusCode).toBe(200);
        expect(prepared.json().authorities.map((a: { status: string }) => a.status)).toEqual(["active", "prepared"]);
        const bundle1 = (await call({ url: `/v1/tenants/${t.tenant}/bundle` })).json();
        expect(bundle1.spiffe_sequence).toBeGreaterThan(bundle0.spiffe_sequence);
        expect(bundle1.keys.filter((k: { use: string }) => k.use === "x509-svid")).toHaveLength(2);
        expect((await call({ method: "POST", url: `/v1/tenants/${t.tenant}/ca/prepare`, headers: bearer(t.token) })).statusCode).toBe(409);

        // Prepared, not signing yet: a new leaf still comes from the first CA.
        const stillOld = await svidFor(t, "web2", "/ns/prod/sa/web2");
        expect(stillOld.chain).toEqual(before.chain);

        const activated = await call({ method: "POST", url: `/v1/tenants/${t.tenant}/ca/activate`, headers: bearer(t.token) });
        expect(activated.statusCode).toBe(200);
        expect(activated.json().authorities.map((a: { status: string }) => a.status)).toEqual(["old", "active"]);
        expect((await call({ method: "POST", url: `/v1/tenants/${t.tenant}/ca/activate`, headers: bearer(t.token) })).statusCode).toBe(409);

        const after = await svidFor(t, "web3", "/ns/prod/sa/web3");
        expect(after.chain).not.toEqual(before.chain);
        const bundleFile = tmp.file(`${backend}-rot-bundle.pem`, await bundlePem(t.tenant));
        for (const [i, s] of [before, after].entries()) {
          const leaf = tmp.file(`${backend}-rot-${i}.pem`, s.certificate);
          expect(opensslStatus(["verify", "-x509_strict", "-CAfile", bundleFile, leaf]).ok).toBe(true);
        }
        expect(await audit(t)).toEqual(expect.arrayContaining(["ca.bootstrap", "ca.prepare", "ca.activate"]));
        // Rotation needs the admin scope.
        const writer = await call({
          method: "POST",
          url: `/v1/tenants/${t.tenant}/tokens`,
          headers: bearer(t.token),
          payload: { name: "writer", scopes: ["write"] },
        });
        const w = await call({ method: "POST", url: `/v1/tenants/${t.tenant}/ca/prepare`, headers: bearer(writer.json().token) });
        expect(w.statusCode).toBe(403);
      });
    });

    it("never shows a CA private key in any response", async () => {
      const tenantId = Number((await app.weft.directory.byName(acme.tenant))!.id);
      const slots = await read(app.weft.db, tenantId, (tx) => tx.select().from(caSlots));
      expect(slots.length).toBeGreaterThan(0);
      const secrets = slots.flatMap((s) => [s.caKeySealed, s.jwtKeySealed, ...s.caKeySealed.split(".").slice(1)]);
      expect(bodies.length).toBeGreaterThan(40);
      for (const body of bodies) {
        expect(body).not.toContain("PRIVATE KEY");
        for (const secret of secrets) expect(body).not.toContain(secret);
      }
    });
  });
});
