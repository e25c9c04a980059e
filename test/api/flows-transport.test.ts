// Issue 18 item 7: the node transport's stream outcomes arrive as flows of
// hook "transport" (reasons transport-carried and transport-refused, from the
// codec like every other hook and reason). The API stores, names, scopes and
// filters them as it does the kernel's: by hook and by reason, a tenant only
// its own side, the other tenant's redacted, a refused handshake that names
// no workload to the operator only.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import type { UploadedAggregate, UploadedFlow } from "../../api/src/mesh/flows/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi } from "../support/api.ts";
import { batchOf, flowStage, upload, type FlowStage } from "../support/flows.ts";

const T0 = Date.now() - 10 * 60_000;
const at = (s: number) => new Date(T0 + s * 1000).toISOString();

describe.each(BACKENDS)("transport flows on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let s: FlowStage;
    let sample: Record<"carried" | "refused" | "intruder" | "handshake" | "kernel", UploadedFlow>;

    const items = async (query = "", who: "a" | "b" = "a") => {
      const t = s[who];
      const res = await app.inject({ url: `/v1/tenants/${t.tenant}/flows${query}`, headers: bearer(t.token) });
      expect(res.statusCode, res.body).toBe(200);
      return res.json().items as Array<Record<string, any>>;
    };
    const platform = async (query: string) => {
      const res = await app.inject({ url: `/v1/flows${query}`, headers: operator });
      expect(res.statusCode, res.body).toBe(200);
      return res.json().items as Array<Record<string, any>>;
    };

    beforeAll(async () => {
      app = await startApi(backend);
      s = await flowStage(app);
      const { addr, num, a, b } = s;
      const transport = (time: number, over: Partial<UploadedFlow>): UploadedFlow => ({
        time: at(time), hook: "transport", verdict: "forwarded", reason: "transport-carried", ruleId: 0, protocol: 6,
        src: { address: addr.web, port: 40100, identity: num.web, tenant: a.id },
        dst: { address: addr.db, port: 5432, identity: num.db, tenant: a.id },
        ...over,
      });
      sample = {
        carried: transport(1, {}),
        refused: transport(2, { verdict: "dropped", reason: "transport-refused", dst: { address: addr.db, port: 6000, identity: num.db, tenant: a.id } }),
        // Another tenant's workload whose stream the transport refused at acme's db.
        intruder: transport(3, { verdict: "dropped", reason: "transport-refused", src: { address: addr.intruder, port: 0, identity: num.intruder, tenant: b.id } }),
        // A handshake refused before any stream: the peer node's socket, no workload on either side.
        handshake: transport(4, { verdict: "dropped", reason: "transport-refused", src: { address: "198.18.244.9", port: 51515, identity: 0, tenant: 0 }, dst: { address: "198.18.244.3", port: 15008, identity: 0, tenant: 0 } }),
        kernel: { ...transport(5, {}), hook: "egress", reason: "policy-allow" },
      };
      const res = await upload(app, s.node.name, s.node.credential, batchOf({ flows: Object.values(sample), lost: { kernel: 0, agent: 2 } }));
      expect(res.statusCode, res.body).toBe(202);
      expect(res.json()).toEqual({ duplicate: false, flows: 5, aggregates: 0 });
    });
    afterAll(async () => app?.close());

    it("shows a tenant its transport flows named like the kernel's", async () => {
      const flows = await items("?hook=transport");
      expect(flows.map((f) => `${f.verdict}/${f.reason}`)).toEqual(["dropped/transport-refused", "dropped/transport-refused", "forwarded/transport-carried"]);
      expect(flows[2]).toEqual({
        id: expect.any(String),
        time: sample.carried.time,
        node: s.node.name,
        hook: "transport",
        verdict: "forwarded",
        reason: "transport-carried",
        protocol: "tcp",
        source: { address: s.addr.web, port: 40100, identity: "web", tenant: s.a.tenant },
        destination: { address: s.addr.db, port: 5432, identity: "db", tenant: s.a.tenant },
        policy: null,
      });
    });

    it("filters by hook and by reason, alone and together", async () => {
      const reasons = async (q: string) => (await items(q)).map((f) => f.reason);
      expect(await reasons("?hook=egress")).toEqual(["policy-allow"]);
      expect(await reasons("?hook=sock")).toEqual([]);
      expect(await reasons("?reason=transport-carried")).toEqual(["transport-carried"]);
      expect(await reasons("?hook=transport&verdict=dropped")).toEqual(["transport-refused", "transport-refused"]);
      expect(await reasons("?hook=ingress&reason=transport-refused")).toEqual([]);
      expect((await platform(`?node=${s.node.name}&hook=transport`)).map((f) => f.reason)).toEqual(["transport-refused", "transport-refused", "transport-refused", "transport-carried"]);
    });

    it("redacts the other tenant's side of a refused stream, to each tenant", async () => {
      const [forA] = (await items("?hook=transport&identity=db")).filter((f) => f.source.address === s.addr.intruder);
      expect(forA!.source).toEqual({ address: s.addr.intruder, port: 0, identity: null, tenant: null, reserved: "other-tenant" });
      const forB = await items("?hook=transport", "b");
      expect(forB).toHaveLength(1);
      expect(forB[0]).toMatchObject({ reason: "transport-refused", source: { identity: "intruder", tenant: s.b.tenant }, destination: { identity: null, tenant: null, reserved: "other-tenant" } });
      expect(JSON.stringify(forB)).not.toContain(s.a.tenant);
    });

    it("shows a refused handshake that names no workload to the operator only", async () => {
      expect((await items("?hook=transport")).some((f) => f.source.address === "198.18.244.9")).toBe(false);
      expect(await items("?hook=transport&verdict=forwarded", "b")).toEqual([]);
      const [handshake] = (await platform(`?node=${s.node.name}&hook=transport`)).filter((f) => f.source.address === "198.18.244.9");
      expect(handshake).toMatchObject({ verdict: "dropped", reason: "transport-refused", destination: { address: "198.18.244.3", port: 15008 } });
    });

    it("counts transport aggregates in the service map like any other", async () => {
      const agg = (over: Partial<UploadedAggregate>): UploadedAggregate => ({
        start: at(50), end: at(60), srcIdentity: s.num.web, srcTenant: s.a.id, dstIdentity: s.num.db, dstTenant: s.a.id,
        dstPort: 7400, protocol: 6, verdict: "forwarded", reason: "transport-carried", ruleId: 0, count: 4, bytes: 4096, ...over,
      });
      const res = await upload(app, s.node.name, s.node.credential, batchOf({ aggregates: [agg({}), agg({ verdict: "dropped", reason: "transport-refused", count: 2, bytes: 0 })] }));
      expect(res.statusCode, res.body).toBe(202);
      const window = `?since=${encodeURIComponent(at(45))}&until=${encodeURIComponent(at(80))}`;
      const summary = await app.inject({ url: `/v1/tenants/${s.a.tenant}/flows/summary${window}`, headers: bearer(s.a.token) });
      expect(summary.statusCode, summary.body).toBe(200);
      expect((summary.json().edges as Array<Record<string, any>>).find((e) => e.port === 7400)).toMatchObject({
        source: { identity: "web" },
        destination: { identity: "db" },
        counts: { forwarded: 4, dropped: 2, audit: 0, translated: 0 },
        bytes: 4096,
      });
    });

    it("refuses an unknown hook in a filter or a batch with 400 naming the field, and stores nothing of the batch", async () => {
      for (const query of ["?hook=tunnel", "?hook=TRANSPORT", "?hook="]) {
        const body = expectProblem(await app.inject({ url: `/v1/tenants/${s.a.tenant}/flows${query}`, headers: bearer(s.a.token) }), 400);
        expect(JSON.stringify(body.errors ?? []), query).toContain("query.hook");
      }
      const before = (await platform(`?node=${s.node.name}`)).length;
      const bad = batchOf({ flows: [sample.carried, { ...sample.refused, hook: "tunnel" as never }] });
      const body = expectProblem(await upload(app, s.node.name, s.node.credential, bad), 400);
      expect(JSON.stringify(body.errors ?? [])).toContain("body.flows.1.hook");
      const wrongReason = batchOf({ flows: [{ ...sample.carried, reason: "transport_refused" as never }] });
      expect(JSON.stringify(expectProblem(await upload(app, s.node.name, s.node.credential, wrongReason), 400).errors ?? [])).toContain("body.flows.0.reason");
      expect((await platform(`?node=${s.node.name}`)).length).toBe(before);
    });
  });
});
