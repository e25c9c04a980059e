// SPDX-License-Identifier: Apache-2.0
/**
 * The API's domain metrics: SVIDs issued, CA expiry, held long polls and
 * compile times; tenant names only on the operator's GET /v1/metrics/tenants,
 * never on the open /metrics.
 */
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { CA_READ_EVERY_MS, DomainMetrics } from "../../api/src/plugins/domain-metrics.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { registeredNode, uniqueAddress } from "../support/nodes.ts";
import { untilHolds } from "../support/until.ts";

const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** A sample's value from exposition text, or NaN when absent. */
const sample = (text: string, series: string): number => {
  const escaped = series.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return Number(new RegExp(`^${escaped} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
};

describe.each(BACKENDS)("domain metrics on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let acme: { tenant: string; token: string };
    let other: { tenant: string; token: string };
    const scrape = async () => (await app.inject("/metrics")).body;
    const tenantScrape = async () => {
      const res = await app.inject({ url: "/v1/metrics/tenants", headers: operator });
      expect(res.statusCode).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^text\/plain/);
      return res.body;
    };
    const issueX509 = async (t: { tenant: string; token: string }, identity: string) => {
      const csr = makeCsr(tmp.dir);
      const res = await app.inject({ method: "POST", url: `/v1/tenants/${t.tenant}/identities/${identity}/x509-svids`, headers: bearer(t.token), payload: { csr: csr.csrPem } });
      expect(res.statusCode, res.body).toBe(201);
      return res.json() as { chain: string[] };
    };

    beforeAll(async () => {
      app = await startApi(backend);
      acme = await tenantWithToken(app, ["admin"]);
      other = await tenantWithToken(app, ["admin"]);
      for (const t of [acme, other]) {
        const put = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/web`, headers: bearer(t.token), payload: { path: "/ns/prod/sa/web" } });
        expect(put.statusCode).toBe(201);
      }
    });
    afterAll(async () => app?.close());

    it("counts SVIDs issued by kind on /metrics and by tenant and kind for the operator; refusals are not counted", async () => {
      const before = await tenantScrape();
      const x509Before = sample(await scrape(), `weft_svids_issued_total{kind="x509-svid"}`) || 0;
      const { chain } = await issueX509(acme, "web");
      await issueX509(acme, "web");
      await issueX509(other, "web");
      const jwt = await app.inject({ method: "POST", url: `/v1/tenants/${acme.tenant}/identities/web/jwt-svids`, headers: bearer(acme.token), payload: { audience: ["db"] } });
      expect(jwt.statusCode).toBe(201);
      // Refused: a bad CSR, and another tenant's token.
      expectProblem(await app.inject({ method: "POST", url: `/v1/tenants/${acme.tenant}/identities/web/x509-svids`, headers: bearer(acme.token), payload: { csr: "nope" } }), 400);
      expectProblem(await app.inject({ method: "POST", url: `/v1/tenants/${acme.tenant}/identities/web/x509-svids`, headers: bearer(other.token), payload: { csr: makeCsr(tmp.dir).csrPem } }), 404);

      const text = await tenantScrape();
      expect(sample(before, `weft_tenant_svids_issued_total{tenant="${acme.tenant}",kind="x509-svid"}`)).toBeNaN();
      expect(sample(text, `weft_tenant_svids_issued_total{tenant="${acme.tenant}",kind="x509-svid"}`)).toBe(2);
      expect(sample(text, `weft_tenant_svids_issued_total{tenant="${acme.tenant}",kind="jwt-svid"}`)).toBe(1);
      expect(sample(text, `weft_tenant_svids_issued_total{tenant="${other.tenant}",kind="x509-svid"}`)).toBe(1);
      expect(text).toContain("# TYPE weft_tenant_svids_issued_total counter");
      expect(sample(await scrape(), `weft_svids_issued_total{kind="x509-svid"}`)).toBe(x509Before + 3);

      // The CA's expiry: its certificate's notAfter, in seconds from now.
      const notAfter = new Date(new X509Certificate(chain[0]!).validTo).getTime();
      const expiry = sample(text, `weft_tenant_ca_expiry_seconds{tenant="${acme.tenant}"}`);
      expect(Math.abs(expiry - (notAfter - Date.now()) / 1000)).toBeLessThan(60);
      expect(sample(text, `weft_tenant_ca_expiry_seconds{tenant="${other.tenant}"}`)).toBeGreaterThan(0);
      const soonest = sample(await scrape(), "weft_ca_soonest_expiry_seconds");
      expect(soonest).toBeGreaterThan(0);
      expect(soonest).toBeLessThanOrEqual(expiry + 1);
    });

    it("names no tenant on the open /metrics; the tenant series answer only the operator", async () => {
      await issueX509(acme, "web");
      const text = await scrape();
      expect(text).not.toContain(acme.tenant);
      expect(text).not.toContain(other.tenant);
      expect(text).not.toContain("weft_tenant_");
      // A tenant's own token, a node's credential, nothing: refused, and nothing of the series shown.
      const node = await registeredNode(app);
      for (const headers of [bearer(acme.token), bearer(node.credential), {}, { authorization: "Bearer weft_op_wrong" }]) {
        const res = await app.inject({ url: "/v1/metrics/tenants", headers });
        expect([401, 403]).toContain(res.statusCode);
        expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
        expect(res.body).not.toContain("weft_tenant_");
      }
    });

    it("counts held long polls while held, and times each node's compile", async () => {
      const node = await registeredNode(app);
      const url = `/v1/nodes/${node.name}/datapath`;
      const first = await app.inject({ url, headers: bearer(node.credential) });
      expect(first.statusCode).toBe(200);
      const compiles = sample(await scrape(), "weft_datapath_compile_seconds_count");
      expect(compiles).toBeGreaterThanOrEqual(1);
      expect(sample(await scrape(), "weft_datapath_long_polls_held")).toBe(0);
      const held = [1, 2].map(() => app.inject({ url, query: { wait: "5" }, headers: { ...bearer(node.credential), "if-none-match": first.headers.etag as string } }));
      await untilHolds("both polls to be held", async () => sample(await scrape(), "weft_datapath_long_polls_held"), (n) => n === 2, 5_000, 20);
      // A write that reaches the node answers both, and its compile is timed.
      const t = await tenantWithToken(app, ["admin"]);
      const id = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/w`, headers: bearer(t.token), payload: { path: "/w" } });
      expect(id.statusCode).toBe(201);
      const wl = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${t.tenant}/workloads/w-1`,
        headers: bearer(t.token),
        payload: { identity: "w", node: node.name, addresses: [uniqueAddress(node.podCidr)] },
      });
      expect(wl.statusCode, wl.body).toBe(201);
      for (const r of await Promise.all(held)) expect(r.statusCode).toBe(200);
      expect(sample(await scrape(), "weft_datapath_long_polls_held")).toBe(0);
      expect(sample(await scrape(), "weft_datapath_compile_seconds_count")).toBeGreaterThan(compiles);
      expect(await scrape()).toContain("# TYPE weft_datapath_compile_seconds histogram");
    });

    it("times each write's hold of the revision lock, committed or refused", async () => {
      const before = sample(await scrape(), "weft_write_lock_seconds_count");
      const t = await tenantWithToken(app, ["admin"]);
      const ok = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/w`, headers: bearer(t.token), payload: { path: "/w" } });
      expect(ok.statusCode).toBe(201);
      // A refusal inside the write (no such node) rolls back after taking the lock: it held it too.
      const refused = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${t.tenant}/workloads/w-1`,
        headers: bearer(t.token),
        payload: { identity: "w", node: "no-such-node", addresses: ["10.9.9.9"] },
      });
      expect(refused.statusCode).toBe(422);
      const after = await scrape();
      // The tenant's creation, the identity and the refused workload, at least.
      expect(sample(after, "weft_write_lock_seconds_count")).toBeGreaterThanOrEqual(before + 3);
      expect(sample(after, "weft_write_lock_seconds_sum")).toBeGreaterThan(0);
      expect(after).toContain("# TYPE weft_write_lock_seconds histogram");
    });
  });
});

describe("DomainMetrics without an app", () => {
  it("a failed CA read leaves the CA series out and says so; the scrape still answers", async () => {
    const m = new DomainMetrics();
    const errors: string[] = [];
    m.watch({ caExpiries: async () => Promise.reject(new Error("connection reset")), heldLongPolls: () => 3, onReadError: (e) => errors.push(e.message) });
    const text = await m.registry.metrics();
    expect(text).toMatch(/^weft_datapath_long_polls_held 3$/m);
    expect(text).toMatch(/^weft_ca_soonest_expiry_seconds nan$/im);
    expect(errors).toEqual(["connection reset"]);
  });

  it("an expired CA reads negative; the rows are read again only after CA_READ_EVERY_MS; a deleted tenant's series goes", async () => {
    const m = new DomainMetrics();
    let rows = [
      { tenant: "a", notAfter: new Date(1_000_000) },
      { tenant: "b", notAfter: new Date(5_000_000) },
    ];
    let now = 2_000_000;
    let reads = 0;
    m.watch({ caExpiries: async () => (reads++, rows), heldLongPolls: () => 0, now: () => now });
    let text = await m.tenantRegistry.metrics();
    expect(sample(text, `weft_tenant_ca_expiry_seconds{tenant="a"}`)).toBe(-1000);
    expect(sample(text, `weft_tenant_ca_expiry_seconds{tenant="b"}`)).toBe(3000);
    expect(sample(await m.registry.metrics(), "weft_ca_soonest_expiry_seconds")).toBe(-1000);
    expect(reads).toBe(1);
    rows = [rows[1]!];
    now += 1000;
    // Within the read interval: the same rows, the seconds moved on.
    expect(sample(await m.tenantRegistry.metrics(), `weft_tenant_ca_expiry_seconds{tenant="b"}`)).toBe(2999);
    now += CA_READ_EVERY_MS;
    text = await m.tenantRegistry.metrics();
    expect(reads).toBe(2);
    expect(text).not.toContain(`tenant="a"`);
    // Without any CA the soonest expiry is NaN: no alert fires on it.
    rows = [];
    now += CA_READ_EVERY_MS;
    expect(await m.registry.metrics()).toMatch(/^weft_ca_soonest_expiry_seconds nan$/im);
  });
});
