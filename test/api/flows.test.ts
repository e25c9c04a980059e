// Issue 17 item 3: agents upload flows; tenants read their own with names,
// the other tenant's side redacted; the operator reads everything.
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { APP_ROLE, TENANT_SETTING } from "../../api/src/db/schema.ts";
import type { UploadedAggregate, UploadedFlow } from "../../api/src/mesh/flows/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { batchOf, flowStage, upload, type FlowStage } from "../support/flows.ts";

const T0 = Date.now() - 10 * 60_000;
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

describe.each(BACKENDS)("flows on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let s: FlowStage;
    let sample: Record<"allowed" | "cidrDrop" | "translated" | "crossTenant" | "hostToWorld" | "stranger", UploadedFlow>;

    const list = (tenant: string, token: string, query = "") => app.inject({ url: `/v1/tenants/${tenant}/flows${query}`, headers: bearer(token) });
    const items = async (tenant: string, token: string, query = "") => {
      const res = await list(tenant, token, query);
      expect(res.statusCode, res.body).toBe(200);
      return res.json().items as Array<Record<string, any>>;
    };
    const platform = async (query = "") => {
      const res = await app.inject({ url: `/v1/flows${query}`, headers: operator });
      expect(res.statusCode, res.body).toBe(200);
      return res.json().items as Array<Record<string, any>>;
    };
    /** Rows of the flow tables, counted as the superuser the test connects as (no row-level security). */
    const stored = async () => {
      const r = (await app.weft.db.execute(sql`SELECT (SELECT count(*) FROM flows)::int AS flows, (SELECT count(*) FROM flow_aggregates)::int AS aggregates, (SELECT count(*) FROM flow_batches)::int AS batches`)) as unknown as { rows: Array<{ flows: number; aggregates: number; batches: number }> };
      return r.rows[0]!;
    };

    beforeAll(async () => {
      app = await startApi(backend);
      s = await flowStage(app);
      const { addr, num, vip } = s;
      sample = {
        allowed: {
          time: at(1), hook: "egress", verdict: "forwarded", reason: "policy-allow", ruleId: s.rule(0), protocol: 6,
          src: { address: addr.web, port: 40000, identity: num.web, tenant: s.a.id },
          dst: { address: addr.db, port: 5432, identity: num.db, tenant: s.a.id },
        },
        cidrDrop: {
          time: at(2), hook: "ingress", verdict: "dropped", reason: "policy-deny", ruleId: s.rule(1), protocol: 6,
          src: { address: "203.0.113.7", port: 51000, identity: num.cidr, tenant: 0 },
          dst: { address: addr.db, port: 5432, identity: num.db, tenant: s.a.id },
        },
        translated: {
          time: at(3), hook: "sock", verdict: "translated", reason: "lb-translated", ruleId: 0, protocol: 6,
          src: { address: addr.web, port: 0, identity: 0, tenant: 0 },
          dst: { address: addr.db, port: 5432, identity: num.db, tenant: s.a.id },
          originalDst: { address: vip, port: 80 },
        },
        crossTenant: {
          time: at(4), hook: "egress", verdict: "dropped", reason: "cross-tenant", ruleId: 0, protocol: 6,
          src: { address: addr.intruder, port: 41000, identity: num.intruder, tenant: s.b.id },
          dst: { address: addr.db, port: 5432, identity: num.db, tenant: s.a.id },
        },
        hostToWorld: {
          time: at(5), hook: "egress", verdict: "forwarded", reason: "unselected", ruleId: 0, protocol: 17,
          src: { address: "198.18.0.1", port: 53000, identity: 1, tenant: 0 },
          dst: { address: "198.18.9.9", port: 53, identity: 2, tenant: 0 },
        },
        // A tenant with no workload on the node: the node's claim opens no view of it.
        stranger: {
          time: at(6), hook: "ingress", verdict: "dropped", reason: "default-deny", ruleId: 0, protocol: 132,
          src: { address: "198.18.7.7", port: 1, identity: num.web, tenant: s.a.id },
          dst: { address: "198.18.7.8", port: 2, identity: 3, tenant: 0 },
        },
      };
      const res = await upload(app, s.node.name, s.node.credential, batchOf({ flows: Object.values(sample).filter((f) => f !== sample.stranger) }));
      expect(res.statusCode, res.body).toBe(202);
      expect(res.json()).toEqual({ duplicate: false, flows: 5, aggregates: 0 });
      // From the spare node, where acme has no workload.
      const spare = await upload(app, s.spare.name, s.spare.credential, batchOf({ flows: [sample.stranger] }));
      expect(spare.statusCode, spare.body).toBe(202);
    });
    afterAll(async () => app?.close());

    it("shows a tenant its flows newest first, every number named", async () => {
      const flows = await items(s.a.tenant, s.a.token);
      expect(flows.map((f) => f.verdict + "/" + f.reason)).toEqual(["dropped/cross-tenant", "translated/lb-translated", "dropped/policy-deny", "forwarded/policy-allow"]);
      expect(flows[3]).toEqual({
        id: expect.any(String),
        time: sample.allowed.time,
        node: s.node.name,
        hook: "egress",
        verdict: "forwarded",
        reason: "policy-allow",
        protocol: "tcp",
        source: { address: s.addr.web, port: 40000, identity: "web", tenant: s.a.tenant },
        destination: { address: s.addr.db, port: 5432, identity: "db", tenant: s.a.tenant },
        policy: { name: "db-ingress", rule: 0, direction: "ingress", mode: "enforce" },
      });
      expect(flows[2]!.source).toEqual({ address: "203.0.113.7", port: 51000, identity: null, tenant: null, reserved: "cidr", cidr: "203.0.113.0/24" });
      expect(flows[2]!.policy).toEqual({ name: "db-ingress", rule: 1, direction: "ingress", mode: "enforce" });
      // The sock hook does not know its source's identity: its address does.
      expect(flows[1]).toMatchObject({
        hook: "sock",
        source: { address: s.addr.web, identity: "web", tenant: s.a.tenant },
        originalDestination: { address: s.vip, port: 80, service: "db" },
        policy: null,
      });
    });

    it("shows the other tenant's side of a cross-tenant drop as an address only, to each tenant", async () => {
      const [forA] = await items(s.a.tenant, s.a.token, "?reason=cross-tenant");
      expect(forA!.source).toEqual({ address: s.addr.intruder, port: 41000, identity: null, tenant: null, reserved: "other-tenant" });
      expect(forA!.destination).toMatchObject({ identity: "db", tenant: s.a.tenant });
      const forB = await items(s.b.tenant, s.b.token);
      expect(forB).toHaveLength(1);
      expect(forB[0]!.source).toEqual({ address: s.addr.intruder, port: 41000, identity: "intruder", tenant: s.b.tenant });
      expect(forB[0]!.destination).toEqual({ address: s.addr.db, port: 5432, identity: null, tenant: null, reserved: "other-tenant" });
      // Nothing of acme's anywhere in what other reads, whatever it asks for.
      for (const query of ["", "?identity=db", "?destinationIdentity=db", "?service=db", "?verdict=forwarded"]) {
        const body = (await list(s.b.tenant, s.b.token, query)).body;
        expect(body).not.toContain(s.a.tenant);
        expect(body).not.toContain('"db"');
        expect(body).not.toContain("db-ingress");
      }
    });

    it("answers another tenant's flows as a missing tenant (404), and node credentials 403", async () => {
      expectProblem(await list(s.a.tenant, s.b.token), 404);
      expectProblem(await list(s.a.tenant, s.node.credential), 403);
      expectProblem(await app.inject({ url: "/v1/flows", headers: bearer(s.a.token) }), 403);
    });

    it("shows the operator every flow once, whole, and one tenant's on request", async () => {
      // Other suites on a shared Postgres upload flows too: this suite's nodes are its own.
      const mine = [...(await platform(`?node=${s.node.name}`)), ...(await platform(`?node=${s.spare.name}`))];
      expect(mine).toHaveLength(6);
      const cross = mine.find((f) => f.reason === "cross-tenant")!;
      expect(cross.source).toMatchObject({ identity: "intruder", tenant: s.b.tenant });
      expect(cross.destination).toMatchObject({ identity: "db", tenant: s.a.tenant });
      expect(mine.find((f) => f.reason === "unselected")).toMatchObject({
        protocol: "udp",
        source: { identity: null, tenant: null, reserved: "host" },
        destination: { identity: null, tenant: null, reserved: "world" },
      });
      expect(mine.find((f) => f.node === s.spare.name)).toMatchObject({ protocol: "132", source: { reserved: "unknown", identity: null }, destination: { reserved: "unmanaged" } });
      expect((await platform(`?tenant=${s.b.tenant}`)).map((f) => f.reason)).toEqual(["cross-tenant"]);
      expect((await platform(`?tenant=${s.b.tenant}&identity=intruder`)).map((f) => f.reason)).toEqual(["cross-tenant"]);
      expect(await platform(`?tenant=${s.b.tenant}&identity=db`)).toEqual([]);
      expect((await platform(`?tenant=${s.a.tenant}`)).length).toBe(4);
      expectProblem(await app.inject({ url: "/v1/flows?tenant=no-such-tenant", headers: operator }), 404);
    });

    it("never shows a tenant a flow a node claims for it without hosting it", async () => {
      expect((await items(s.a.tenant, s.a.token)).some((f) => f.node === s.spare.name)).toBe(false);
    });

    it("filters by each field", async () => {
      const reasons = async (q: string) => (await items(s.a.tenant, s.a.token, q)).map((f) => f.reason);
      expect(await reasons("?identity=web")).toEqual(["lb-translated", "policy-allow"]);
      expect(await reasons("?sourceIdentity=web")).toEqual(["lb-translated", "policy-allow"]);
      expect(await reasons("?destinationIdentity=web")).toEqual([]);
      expect(await reasons("?identity=db")).toEqual(["cross-tenant", "lb-translated", "policy-deny", "policy-allow"]);
      expect(await reasons("?destinationIdentity=db&verdict=dropped")).toEqual(["cross-tenant", "policy-deny"]);
      expect(await reasons("?service=db")).toEqual(["lb-translated"]);
      expect(await reasons("?verdict=translated")).toEqual(["lb-translated"]);
      expect(await reasons("?reason=policy-deny")).toEqual(["policy-deny"]);
      expect(await reasons(`?node=${s.node.name}`)).toHaveLength(4);
      expect(await reasons(`?node=${s.spare.name}`)).toEqual([]);
      expect(await reasons(`?since=${encodeURIComponent(at(2))}&until=${encodeURIComponent(at(4))}`)).toEqual(["lb-translated", "policy-deny"]);
      // Ages, as `weft flows --since 5m` sends them: the flows are about ten minutes old.
      expect(await reasons("?since=20m")).toHaveLength(4);
      expect(await reasons("?since=1m")).toEqual([]);
      expect(await reasons("?until=1m&since=1h")).toHaveLength(4);
      // Another tenant's identity names nothing for this one.
      expect(await reasons("?identity=intruder")).toEqual([]);
      expect((await items(s.b.tenant, s.b.token, "?identity=intruder")).map((f) => f.reason)).toEqual(["cross-tenant"]);
    });

    it("refuses bad filters with 400 naming them", async () => {
      for (const [query, field] of [
        ["?verdict=allowed", "query.verdict"],
        ["?reason=nope", "query.reason"],
        ["?since=yesterday", "query.since"],
        ["?since=5w", "query.since"],
        ["?since=1m&until=1h", "query.until"],
        ["?identity=Not_A_Name", "query.identity"],
        ["?colour=red", "query"],
        [`?since=${encodeURIComponent(at(5))}&until=${encodeURIComponent(at(1))}`, "query.until"],
        ["?cursor=bm9wZQ", "query.cursor"],
        [`?cursor=${Buffer.from(JSON.stringify(["12x"])).toString("base64url")}`, "query.cursor"],
      ] as const) {
        const body = expectProblem(await list(s.a.tenant, s.a.token, query), 400);
        expect(JSON.stringify(body.errors ?? []), query).toContain(field);
      }
    });

    it("pages newest first with an opaque cursor, every flow once", async () => {
      const all = (await items(s.a.tenant, s.a.token)).map((f) => f.id);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const res = await list(s.a.tenant, s.a.token, `?limit=3${cursor ? `&cursor=${cursor}` : ""}`);
        expect(res.statusCode).toBe(200);
        const body = res.json() as { items: Array<{ id: string }>; nextCursor: string | null };
        expect(body.items.length).toBeLessThanOrEqual(3);
        seen.push(...body.items.map((i) => i.id));
        cursor = body.nextCursor;
      } while (cursor);
      expect(seen).toEqual(all);
    });

    it("stores a retried batch once: later copies answer 200 duplicate", async () => {
      const batch = batchOf({ flows: [{ ...sample.allowed, time: at(10) }] });
      const before = await stored();
      expect((await upload(app, s.node.name, s.node.credential, batch)).statusCode).toBe(202);
      const again = await upload(app, s.node.name, s.node.credential, batch);
      expect(again.statusCode).toBe(200);
      expect(again.json()).toEqual({ duplicate: true, flows: 0, aggregates: 0 });
      // At once, too: one of them stores it.
      const twice = batchOf({ flows: [{ ...sample.allowed, time: at(11) }] });
      const both = await Promise.all([upload(app, s.node.name, s.node.credential, twice), upload(app, s.node.name, s.node.credential, twice)]);
      expect(both.map((r) => r.statusCode).sort()).toEqual([200, 202]);
      const after = await stored();
      expect(after.flows - before.flows).toBe(2);
      expect(after.batches - before.batches).toBe(2);
      // The same id from another node is that node's batch.
      const elsewhere = await upload(app, s.spare.name, s.spare.credential, { ...batch, flows: [] });
      expect(elsewhere.statusCode).toBe(202);
    });

    it("takes batches only from the node itself or the operator", async () => {
      const batch = batchOf({ flows: [sample.allowed] });
      const before = await stored();
      // Another node learns nothing of which nodes exist: the 404 of a missing one (as PUT .../status).
      expectProblem(await upload(app, s.node.name, s.spare.credential, batch), 404);
      expectProblem(await upload(app, s.node.name, s.a.token, batch), 403);
      expectProblem(await app.inject({ method: "POST", url: `/v1/nodes/${s.node.name}/flows`, payload: batch }), 401);
      expectProblem(await app.inject({ method: "POST", url: "/v1/nodes/no-such-node/flows", headers: operator, payload: batch }), 404);
      expect(await stored()).toEqual(before);
      const byOperator = await app.inject({ method: "POST", url: `/v1/nodes/${s.node.name}/flows`, headers: operator, payload: batchOf({ flows: [{ ...sample.allowed, time: at(12) }] }) });
      expect(byOperator.statusCode, byOperator.body).toBe(202);
    });

    // First among the big bodies: under vitest (not in a plain Node process), the strict JSON parser's
    // check runs some 100x slower on a full batch once it has seen another large body, whichever.
    it("takes a full batch: 5000 aggregates and 2000 flows", async () => {
      const agg: UploadedAggregate = {
        start: at(30), end: at(31), srcIdentity: s.num.web, srcTenant: s.a.id, dstIdentity: s.num.db, dstTenant: s.a.id,
        dstPort: 5432, protocol: 6, verdict: "forwarded", reason: "policy-allow", ruleId: s.rule(0), count: 3, bytes: 180,
      };
      const batch = batchOf({
        flows: Array.from({ length: 2000 }, (_, i) => ({ ...sample.crossTenant, time: at(30), src: { ...sample.crossTenant.src, port: 1024 + i } })),
        aggregates: Array.from({ length: 5000 }, (_, i) => ({ ...agg, dstPort: 1 + i })),
      });
      const before = await stored();
      const res = await upload(app, s.node.name, s.node.credential, batch);
      expect(res.statusCode, res.body).toBe(202);
      const after = await stored();
      // Cross-tenant flows: the operator's row and one per tenant.
      expect(after.flows - before.flows).toBe(6000);
      expect(after.aggregates - before.aggregates).toBe(5000);
    }, 60_000);

    it("refuses each bad field with 4xx problem+json naming it, and stores nothing of the batch", async () => {
      const good = sample.allowed;
      const agg: UploadedAggregate = {
        start: at(1), end: at(2), srcIdentity: s.num.web, srcTenant: s.a.id, dstIdentity: s.num.db, dstTenant: s.a.id,
        dstPort: 5432, protocol: 6, verdict: "forwarded", reason: "policy-allow", ruleId: s.rule(0), count: 1, bytes: 60,
      };
      const future = new Date(Date.now() + 3_600_000).toISOString();
      const cases: Array<[string, (b: Record<string, any>) => void, number, string]> = [
        ["no batchId", (b) => delete b.batchId, 400, "body"],
        ["batchId not a uuid", (b) => (b.batchId = "batch-1"), 400, "body.batchId"],
        ["lost.kernel negative", (b) => (b.lost.kernel = -1), 400, "body.lost.kernel"],
        ["lost.agent fractional", (b) => (b.lost.agent = 1.5), 400, "body.lost.agent"],
        ["an unknown top-level field", (b) => (b.extra = 1), 400, "body"],
        ["flows not an array", (b) => (b.flows = {}), 400, "body.flows"],
        ["flow time not a time", (b) => (b.flows[0].time = "now"), 400, "body.flows.0.time"],
        ["flow time an hour ahead", (b) => (b.flows[0].time = future), 422, "body.flows.0.time"],
        ["hook", (b) => (b.flows[0].hook = "xdp"), 400, "body.flows.0.hook"],
        ["verdict", (b) => (b.flows[0].verdict = "allowed"), 400, "body.flows.0.verdict"],
        ["reason", (b) => (b.flows[0].reason = "because"), 400, "body.flows.0.reason"],
        ["ruleId above u32", (b) => (b.flows[0].ruleId = 2 ** 32), 400, "body.flows.0.ruleId"],
        ["protocol above 255", (b) => (b.flows[0].protocol = 256), 400, "body.flows.0.protocol"],
        ["src address", (b) => (b.flows[0].src.address = "10.0.0.256"), 400, "body.flows.0.src.address"],
        ["dst port", (b) => (b.flows[0].dst.port = 70000), 400, "body.flows.0.dst.port"],
        ["src identity negative", (b) => (b.flows[0].src.identity = -1), 400, "body.flows.0.src.identity"],
        ["dst tenant a string", (b) => (b.flows[0].dst.tenant = "acme"), 400, "body.flows.0.dst.tenant"],
        ["an unknown endpoint field", (b) => (b.flows[0].dst.name = "x"), 400, "body.flows.0.dst"],
        ["originalDst address", (b) => (b.flows[0].originalDst = { address: "vip", port: 80 }), 400, "body.flows.0.originalDst.address"],
        ["aggregate start after end", (b) => (b.aggregates[0].start = at(3)), 422, "body.aggregates.0.start"],
        ["aggregate end an hour ahead", (b) => (b.aggregates[0].end = future), 422, "body.aggregates.0.end"],
        ["aggregate count 0", (b) => (b.aggregates[0].count = 0), 400, "body.aggregates.0.count"],
        ["aggregate bytes negative", (b) => (b.aggregates[0].bytes = -5), 400, "body.aggregates.0.bytes"],
        ["aggregate dstPort", (b) => (b.aggregates[0].dstPort = 65536), 400, "body.aggregates.0.dstPort"],
        ["aggregate srcTenant", (b) => (b.aggregates[0].srcTenant = 2 ** 32), 400, "body.aggregates.0.srcTenant"],
        ["aggregate verdict", (b) => (b.aggregates[0].verdict = "pass"), 400, "body.aggregates.0.verdict"],
        ["too many flows", (b) => (b.flows = Array.from({ length: 2001 }, () => good)), 400, "body.flows"],
        ["too many aggregates", (b) => (b.aggregates = Array.from({ length: 5001 }, () => agg)), 400, "body.aggregates"],
      ];
      const before = await stored();
      for (const [what, spoil, status, field] of cases) {
        const body = structuredClone(batchOf({ flows: [{ ...good, time: at(20) }], aggregates: [agg] })) as Record<string, any>;
        spoil(body);
        const res = await upload(app, s.node.name, s.node.credential, body);
        const problem = expectProblem(res, status);
        expect(JSON.stringify(problem.errors ?? []), what).toContain(field);
        // Nothing half-written: not the good flow, not the aggregate, not the batch id.
        if (typeof body.batchId === "string" && body.batchId.length === 36) {
          const retried = await upload(app, s.node.name, s.node.credential, { ...batchOf({}), batchId: body.batchId });
          expect(retried.statusCode, what).toBe(202);
        }
      }
      const after = await stored();
      expect(after.flows).toBe(before.flows);
      expect(after.aggregates).toBe(before.aggregates);
    });

    it("counts uploads and the agents' lost events in the metrics", async () => {
      const res = await upload(app, s.node.name, s.node.credential, batchOf({ lost: { kernel: 7, agent: 2 }, flows: [{ ...sample.cidrDrop, time: at(40) }] }));
      expect(res.statusCode).toBe(202);
      const text = (await app.inject({ url: "/metrics" })).body;
      expect(text).toMatch(/^weft_flow_events_lost_total\{where="kernel"\} (\d+)$/m);
      expect(Number(/^weft_flow_events_lost_total\{where="kernel"\} (\d+)$/m.exec(text)![1])).toBeGreaterThanOrEqual(7);
      expect(Number(/^weft_flow_events_lost_total\{where="agent"\} (\d+)$/m.exec(text)![1])).toBeGreaterThanOrEqual(2);
      expect(Number(/^weft_flows_received_total\{verdict="dropped"\} (\d+)$/m.exec(text)![1])).toBeGreaterThanOrEqual(1);
      expect(Number(/^weft_flow_batches_total\{outcome="refused"\} (\d+)$/m.exec(text)![1])).toBeGreaterThanOrEqual(1);
      expect(text).not.toContain(s.node.name);
    });

    it("lets no request transaction write a flow, not even its own tenant's", async () => {
      const err = await app.weft.db
        .transaction(async (tx) => {
          await tx.execute(sql.raw(`SET LOCAL ROLE ${APP_ROLE}`));
          await tx.execute(sql`SELECT set_config(${TENANT_SETTING}, ${String(s.a.id)}, true)`);
          await tx.execute(sql`INSERT INTO flows (tenant_id, whole, node, time, hook, verdict, reason, protocol, source, destination)
            VALUES (${s.a.id}, true, 'n', now(), 'egress', 'forwarded', 'policy-allow', 6, '{}', '{}')`);
        })
        .then(() => undefined, (e: Error & { cause?: Error }) => e.cause?.message ?? e.message);
      expect(err).toMatch(/permission denied/);
      const seen = await app.weft.db.transaction(async (tx) => {
        await tx.execute(sql.raw(`SET LOCAL ROLE ${APP_ROLE}`));
        await tx.execute(sql`SELECT set_config(${TENANT_SETTING}, ${String(s.b.id)}, true)`);
        return ((await tx.execute(sql`SELECT tenant_id, source, destination FROM flows`)) as unknown as { rows: Array<Record<string, unknown>> }).rows;
      });
      expect(seen.length).toBeGreaterThan(0);
      expect(new Set(seen.map((r) => Number(r.tenant_id)))).toEqual(new Set([s.b.id]));
      expect(JSON.stringify(seen)).not.toContain(s.a.tenant);
    });

    it("draws the service map from the aggregates, the other tenant's identities redacted", async () => {
      const { num, a, b } = s;
      const agg = (over: Partial<UploadedAggregate>): UploadedAggregate => ({
        start: at(50), end: at(60), srcIdentity: num.web, srcTenant: a.id, dstIdentity: num.db, dstTenant: a.id,
        dstPort: 7000, protocol: 6, verdict: "forwarded", reason: "policy-allow", ruleId: 0, count: 1, bytes: 100, ...over,
      });
      const res = await upload(app, s.node.name, s.node.credential, batchOf({
        aggregates: [
          agg({ count: 5, bytes: 500 }),
          agg({ count: 2, bytes: 50, end: at(70), start: at(65) }),
          agg({ verdict: "dropped", reason: "policy-deny", count: 3, bytes: 0 }),
          agg({ verdict: "audit", reason: "policy-deny", count: 1, bytes: 0 }),
          agg({ srcIdentity: num.intruder, srcTenant: b.id, verdict: "dropped", reason: "cross-tenant", count: 4, bytes: 0 }),
          agg({ srcIdentity: 2, srcTenant: 0, dstPort: 7001, verdict: "forwarded", count: 9, bytes: 900 }),
        ],
      }));
      expect(res.statusCode, res.body).toBe(202);
      const window = `?since=${encodeURIComponent(at(45))}&until=${encodeURIComponent(at(80))}`;
      const summary = await app.inject({ url: `/v1/tenants/${a.tenant}/flows/summary${window}`, headers: bearer(a.token) });
      expect(summary.statusCode, summary.body).toBe(200);
      const edges = summary.json().edges as Array<Record<string, any>>;
      const webToDb = edges.find((e) => e.source.identity === "web" && e.port === 7000);
      expect(webToDb).toEqual({
        source: { identity: "web", tenant: a.tenant },
        destination: { identity: "db", tenant: a.tenant },
        port: 7000,
        protocol: "tcp",
        counts: { forwarded: 7, dropped: 3, audit: 1, translated: 0 },
        bytes: 550,
        lastSeen: at(70),
      });
      expect(edges.find((e) => e.source.reserved === "other-tenant")).toMatchObject({ destination: { identity: "db" }, counts: { dropped: 4, forwarded: 0 } });
      expect(edges.find((e) => e.source.reserved === "world")).toMatchObject({ port: 7001, counts: { forwarded: 9 } });
      expect(summary.body).not.toContain("intruder");
      const forB = await app.inject({ url: `/v1/tenants/${b.tenant}/flows/summary${window}`, headers: bearer(b.token) });
      expect(forB.json().edges).toEqual([
        expect.objectContaining({ source: { identity: "intruder", tenant: b.tenant }, destination: { identity: null, tenant: null, reserved: "other-tenant" }, counts: { forwarded: 0, dropped: 4, audit: 0, translated: 0 } }),
      ]);
      // A window before any of them.
      const empty = await app.inject({ url: `/v1/tenants/${a.tenant}/flows/summary?until=${encodeURIComponent(at(0))}`, headers: bearer(a.token) });
      expect(empty.json()).toEqual({ edges: [], truncated: false });
      expectProblem(await app.inject({ url: `/v1/tenants/${a.tenant}/flows/summary?since=soon`, headers: bearer(a.token) }), 400);
    });

    it("keeps an unknown identity its reported tenant's when the tenant is on the node, and no one's when not", async () => {
      const unknown = (port: number, tenant: number): UploadedFlow => ({
        ...sample.allowed, time: at(90), src: { address: s.addr.web, port, identity: 4_000_000_000, tenant },
      });
      const res = await upload(app, s.node.name, s.node.credential, batchOf({ flows: [unknown(9001, s.a.id), unknown(9002, 4_000_000_000)] }));
      expect(res.statusCode, res.body).toBe(202);
      const window = `?since=${encodeURIComponent(at(90))}&until=${encodeURIComponent(at(91))}`;
      const mine = await items(s.a.tenant, s.a.token, window);
      expect(mine.map((f) => f.source)).toEqual([
        { address: s.addr.web, port: 9002, identity: null, tenant: null, reserved: "unknown" },
        { address: s.addr.web, port: 9001, identity: null, tenant: s.a.tenant, reserved: "unknown" },
      ]);
      // Named by a node that hosts none of its workloads, a tenant is not shown the flow.
      const claimed: UploadedFlow = { ...unknown(9003, s.b.id), dst: { address: "198.18.5.5", port: 80, identity: 2, tenant: 0 } };
      expect((await upload(app, s.spare.name, s.spare.credential, batchOf({ flows: [claimed] }))).statusCode).toBe(202);
      expect(await items(s.b.tenant, s.b.token, window)).toEqual([]);
      expect((await platform(`${window}&node=${s.spare.name}`)).map((f) => f.source.reserved)).toEqual(["unknown"]);
    });

    it("reads nothing for a fresh tenant", async () => {
      const c = await tenantWithToken(app);
      expect(await items(c.tenant, c.token)).toEqual([]);
    });
  });
});
