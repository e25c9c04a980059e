import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { loopbackTls, pastedBundle } from "../support/federation.ts";
import { until } from "../support/until.ts";
import { BundleEndpoints } from "../../api/src/mesh/bundle-endpoints.ts";

const TIMEOUT_MS = 500;

/** A loopback HTTPS bundle endpoint: each path one behaviour; counts requests per path. */
async function bundleServer(tls: { certPem: string; keyPem: string }, bundle: object) {
  const hits = new Map<string, number>();
  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    const path = req.url ?? "/";
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const json = (body: string) => res.writeHead(200, { "content-type": "application/json" }).end(body);
    switch (path) {
      case "/bundle":
        return json(JSON.stringify(bundle));
      case "/short":
        return json(JSON.stringify({ ...bundle, spiffe_refresh_hint: 0 }));
      case "/redirect":
        return res.writeHead(302, { location: "/bundle" }).end();
      case "/big":
        return json(`{"keys":[],"pad":"${"x".repeat(2 * 1024 * 1024)}"}`);
      case "/text":
        return res.writeHead(200, { "content-type": "text/plain" }).end(JSON.stringify(bundle));
      case "/garbled":
        return json("{not json");
      case "/private": {
        const { keys } = bundle as { keys: Record<string, unknown>[] };
        return json(JSON.stringify({ keys: [{ ...keys[1], d: "AAAA" }] }));
      }
      case "/hang":
        return; // never answers
      default:
        return res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    hits,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

describe.each(BACKENDS)("federation bundle endpoints on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    const tls = loopbackTls();
    const { jwks, cert } = pastedBundle("partner.example");
    let app: WeftApp;
    let main: Awaited<ReturnType<typeof bundleServer>>;
    let doomed: Awaited<ReturnType<typeof bundleServer>>;
    beforeAll(async () => {
      main = await bundleServer(tls, jwks);
      doomed = await bundleServer(tls, jwks);
      app = await startApi(backend, {
        federationEndpoints: [`127.0.0.1:${main.port}`, `127.0.0.1:${doomed.port}`],
        federationFetchTimeoutMs: TIMEOUT_MS,
        federationMinRefreshMs: 0,
      });
    });
    afterAll(async () => {
      await app?.close();
      await main?.close();
      await doomed?.close();
    });

    const put = (tenant: string, token: string, name: string, bundle: object, trustDomain = `${name}.example`) =>
      app.inject({ method: "PUT", url: `/v1/tenants/${tenant}/federations/${name}`, headers: bearer(token), payload: { trustDomain, bundle } });
    const get = (tenant: string, token: string, path: string) => app.inject({ method: "GET", url: `/v1/tenants/${tenant}/${path}`, headers: bearer(token) });
    const url = (path: string, port = main.port) => `https://127.0.0.1:${port}${path}`;
    const served = async (tenant: string, token: string) =>
      (await get(tenant, token, "federated-bundles")).json().bundles as { trustDomain: string; x509Authorities: string[] }[];

    it("fetches the bundle from an allowed endpoint trusting endpointCa, once per refresh interval, and serves it", async () => {
      const a = await tenantWithToken(app, ["write"]);
      const created = await put(a.tenant, a.token, "partner", { endpointUrl: url("/bundle"), endpointCa: tls.caPem });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ status: "pending", bundle: { endpointUrl: url("/bundle") } });
      const before = main.hits.get("/bundle") ?? 0;
      const first = await served(a.tenant, a.token);
      expect(first).toEqual([expect.objectContaining({ trustDomain: "partner.example", x509Authorities: [cert.raw.toString("base64")] })]);
      expect(first[0]).toHaveProperty("jwtAuthorities", [expect.objectContaining({ keyId: "k1" })]);
      expect(await served(a.tenant, a.token)).toEqual(first);
      expect((await get(a.tenant, a.token, "federations/partner")).json()).toMatchObject({ status: "active" });
      // No spiffe_refresh_hint: 5 minutes, so one fetch for all those reads.
      expect(main.hits.get("/bundle")! - before).toBe(1);
    });

    it("stops serving an endpoint's last good bundle once the operator no longer allows it", async () => {
      const allowed = [`127.0.0.1:${main.port}`];
      const endpoints = new BundleEndpoints({ allowed, validate: () => null, minRefreshMs: 0 });
      const source = { endpointUrl: url("/bundle"), endpointCa: tls.caPem };
      expect(await endpoints.state(1, "partner", source)).toMatchObject({ ok: true, jwks: { keys: [expect.anything(), expect.anything()] } });
      allowed.length = 0;
      const now = await endpoints.state(1, "partner", source);
      expect(now).toMatchObject({ ok: false, jwks: null });
      expect(now.reason).toMatch(/WEFT_FEDERATION_ENDPOINTS/);
    });

    it("refuses endpoints the operator does not allow, and anything but https without userinfo", async () => {
      const a = await tenantWithToken(app, ["write"]);
      const refused = async (bundle: object, status: number, field: string, says?: RegExp) => {
        const p = expectProblem(await put(a.tenant, a.token, "bad", bundle), status);
        expect(JSON.stringify(p.errors), JSON.stringify(p)).toContain(field);
        if (says) expect(JSON.stringify(p.errors)).toMatch(says);
      };
      // Exact host[:port] match: the same server by another name, or another port, is not allowed.
      await refused({ endpointUrl: `https://localhost:${main.port}/bundle` }, 422, "body.bundle.endpointUrl", /WEFT_FEDERATION_ENDPOINTS/);
      await refused({ endpointUrl: "https://127.0.0.1/bundle" }, 422, "body.bundle.endpointUrl", /WEFT_FEDERATION_ENDPOINTS/);
      await refused({ endpointUrl: `http://127.0.0.1:${main.port}/bundle` }, 400, "endpointUrl");
      await refused({ endpointUrl: `https://user:pw@127.0.0.1:${main.port}/bundle` }, 422, "body.bundle.endpointUrl", /userinfo/);
      await refused({ endpointUrl: url("/bundle"), endpointCa: "not a pem" }, 422, "body.bundle.endpointCa");

      const closed = await startApi(backend);
      try {
        const b = await tenantWithToken(closed, ["write"]);
        const p = expectProblem(
          await closed.inject({
            method: "PUT",
            url: `/v1/tenants/${b.tenant}/federations/partner`,
            headers: bearer(b.token),
            payload: { trustDomain: "partner.example", bundle: { endpointUrl: url("/bundle"), endpointCa: tls.caPem } },
          }),
          422,
        );
        expect(JSON.stringify(p.errors)).toContain("body.bundle.endpointUrl");
        expect(JSON.stringify(p.errors)).toMatch(/operator must allow/);
      } finally {
        await closed.close();
      }
    });

    it.each([
      ["/redirect", /redirects are not followed/],
      ["/big", /larger than 1048576 bytes/],
      ["/text", /not JSON/],
      ["/garbled", /not JSON/],
      ["/private", /private key material/],
      ["/missing", /answered 404/],
    ])("reads %s as unavailable, with the reason, and serves nothing", async (path, reason) => {
      const a = await tenantWithToken(app, ["write"]);
      expect((await put(a.tenant, a.token, "partner", { endpointUrl: url(path), endpointCa: tls.caPem })).statusCode).toBe(201);
      const shown = await get(a.tenant, a.token, "federations/partner");
      expect(shown.statusCode).toBe(200);
      expect(shown.json()).toMatchObject({ status: "unavailable" });
      expect(shown.json().reason).toMatch(reason);
      const bundles = await get(a.tenant, a.token, "federated-bundles");
      expect(bundles.statusCode).toBe(200);
      expect(bundles.json()).toEqual({ bundles: [] });
    });

    it("trusts the Web PKI roots, not the test CA, without endpointCa", async () => {
      const a = await tenantWithToken(app, ["write"]);
      expect((await put(a.tenant, a.token, "partner", { endpointUrl: url("/bundle") })).statusCode).toBe(201);
      const shown = (await get(a.tenant, a.token, "federations/partner")).json();
      expect(shown.status).toBe("unavailable");
      expect(shown.reason).toMatch(/certificate/i);
    });

    it("gives up on an endpoint that hangs within the timeout", async () => {
      const a = await tenantWithToken(app, ["write"]);
      expect((await put(a.tenant, a.token, "partner", { endpointUrl: url("/hang"), endpointCa: tls.caPem })).statusCode).toBe(201);
      const started = Date.now();
      const bundles = await get(a.tenant, a.token, "federated-bundles");
      const took = Date.now() - started;
      expect(bundles.statusCode).toBe(200);
      expect(bundles.json()).toEqual({ bundles: [] });
      expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expect(took).toBeLessThan(TIMEOUT_MS + 2000);
      const shown = (await get(a.tenant, a.token, "federations/partner")).json();
      expect(shown).toMatchObject({ status: "unavailable" });
      expect(shown.reason).toMatch(/did not answer within 500 ms/);
    });

    it("keeps serving the last good bundle, unavailable, once the endpoint stops", async () => {
      const a = await tenantWithToken(app, ["write"]);
      expect((await put(a.tenant, a.token, "partner", { endpointUrl: url("/short", doomed.port), endpointCa: tls.caPem }, "partner.example")).statusCode).toBe(201);
      const good = await served(a.tenant, a.token);
      expect(good).toEqual([expect.objectContaining({ trustDomain: "partner.example", x509Authorities: [cert.raw.toString("base64")] })]);
      await doomed.close();
      // spiffe_refresh_hint 0 (the floor is 0 here): every read finds it stale and refreshes in the background.
      const shown = await until("the federation to read unavailable", 5000, async () => {
        const view = (await get(a.tenant, a.token, "federations/partner")).json();
        return view.status === "unavailable" ? view : undefined;
      });
      expect(shown.reason).toMatch(/fetch failed/);
      expect(await served(a.tenant, a.token)).toEqual(good);
    });
  });
});
