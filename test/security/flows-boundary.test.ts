// Issue 17, the attacker's view of flows: a node credential that names
// tenants it does not host, replays batch ids with other content, or
// outlives its node; a tenant that asks for another tenant's flows through
// every filter, a foreign cursor, the summary and a follow stream; input
// that JavaScript and Postgres read differently. Each test tries to cross
// and asserts it does not (test/api/flows*.test.ts prove the happy paths).
import { connect } from "node:net";
import { and, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { identities, policies } from "../../api/src/db/schema.ts";
import { ruleIdOf } from "../../api/src/compiler/ids.ts";
import type { UploadedAggregate, UploadedFlow } from "../../api/src/mesh/flows/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { batchOf, flowStage, sseClient, upload, type FlowStage } from "../support/flows.ts";
import { freshVip, identity, mustPut } from "../support/mesh.ts";
import { addressIn, registeredNode } from "../support/nodes.ts";
import { untilHolds } from "../support/until.ts";

/** Each test uploads into its own minute of the past, and reads that minute back. */
const T0 = Date.now() - 60 * 60_000;
const minute = (m: number) => ({
  at: (s: number) => new Date(T0 + m * 60_000 + s * 1000).toISOString(),
  window: `since=${encodeURIComponent(new Date(T0 + m * 60_000).toISOString())}&until=${encodeURIComponent(new Date(T0 + (m + 1) * 60_000).toISOString())}`,
});

type Json = Record<string, any>;

describe.each(BACKENDS)("the flows boundary on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let base: string;
    let s: FlowStage;
    /** A third tenant, with workloads only on the spare node: the stage node does not host it. */
    let c: { tenant: string; token: string; id: number; vault: number; vaultAddress: string; vip: string; rule: number };
    /** Another of b's workloads on the stage node, so b has flows of its own that name no one of a's. */
    let bStore: { number: number; address: string };
    const streams: Array<{ close(): Promise<void> }> = [];

    const list = (tenant: string, token: string, query = "") => app.inject({ url: `/v1/tenants/${tenant}/flows?${query}`, headers: bearer(token) });
    const items = async (tenant: string, token: string, query = ""): Promise<Json[]> => {
      const res = await list(tenant, token, query);
      expect(res.statusCode, res.body).toBe(200);
      return res.json().items;
    };
    const summary = async (tenant: string, token: string, query = ""): Promise<Json[]> => {
      const res = await app.inject({ url: `/v1/tenants/${tenant}/flows/summary?${query}`, headers: bearer(token) });
      expect(res.statusCode, res.body).toBe(200);
      return res.json().edges;
    };
    const platform = async (query: string): Promise<Json[]> => {
      const res = await app.inject({ url: `/v1/flows?${query}`, headers: operator });
      expect(res.statusCode, res.body).toBe(200);
      return res.json().items;
    };
    const stored = async () => {
      const r = (await app.weft.db.execute(sql`SELECT (SELECT count(*) FROM flows)::int AS flows, (SELECT count(*) FROM flow_aggregates)::int AS aggregates, (SELECT count(*) FROM flow_batches)::int AS batches`)) as unknown as { rows: Array<{ flows: number; aggregates: number; batches: number }> };
      return r.rows[0]!;
    };
    const follow = (path: string, token: string) => {
      const client = sseClient(`${base}${path}`, bearer(token));
      streams.push(client);
      return client;
    };
    const flow = (time: string, over: Partial<UploadedFlow>): UploadedFlow => ({
      time, hook: "egress", verdict: "forwarded", reason: "policy-allow", ruleId: 0, protocol: 6,
      src: { address: s.addr.web, port: 40000, identity: s.num.web, tenant: s.a.id },
      dst: { address: s.addr.db, port: 5432, identity: s.num.db, tenant: s.a.id },
      ...over,
    });
    /** b's own flow on the stage node: intruder to store, nothing of a's in it. */
    const bInternal = (time: string, port: number) =>
      flow(time, {
        src: { address: s.addr.intruder, port, identity: s.num.intruder, tenant: s.b.id },
        dst: { address: bStore.address, port: 6379, identity: bStore.number, tenant: s.b.id },
      });

    beforeAll(async () => {
      app = await startApi(backend, { flowStreamsPerTenant: 3, flowHeartbeatMs: 200 });
      base = await app.listen({ port: 0, host: "127.0.0.1" });
      s = await flowStage(app);
      const third = await tenantWithToken(app);
      const vaultAddress = addressIn(s.spare.name);
      await identity(app, third.token, third.tenant, "vault");
      await mustPut(app, third.token, third.tenant, "workloads/vault", { identity: "vault", node: s.spare.name, addresses: [vaultAddress] });
      const vip = freshVip();
      await mustPut(app, third.token, third.tenant, "services/vault", { vip, ports: [{ port: 443, protocol: "tcp", targetPort: 8200 }], backends: { explicit: [{ workload: "vault", weight: 1 }] } });
      await mustPut(app, third.token, third.tenant, "policies/vault-in", { subject: { identity: "vault" }, ingress: [{ peers: [{ identity: "vault" }], action: "allow" }] });
      const cId = (await app.weft.directory.byName(third.tenant))!.id;
      const [vault] = await app.weft.db.select({ n: identities.securityIdentity }).from(identities).where(eq(identities.tenantId, cId));
      const [policy] = await app.weft.db.select({ id: policies.id }).from(policies).where(eq(policies.tenantId, cId));
      c = { ...third, id: cId, vault: vault!.n, vaultAddress, vip, rule: ruleIdOf(policy!.id, 0) };
      await identity(app, s.b.token, s.b.tenant, "store");
      const storeAddress = addressIn(s.node.name);
      await mustPut(app, s.b.token, s.b.tenant, "workloads/store", { identity: "store", node: s.node.name, addresses: [storeAddress] });
      const [store] = await app.weft.db
        .select({ n: identities.securityIdentity })
        .from(identities)
        .where(and(eq(identities.tenantId, s.b.id), eq(identities.name, "store")));
      bStore = { number: store!.n, address: storeAddress };
    });
    afterAll(async () => {
      for (const stream of streams) await stream.close();
      await app?.close();
    });

    it("names no tenant a node does not host, whatever numbers, tenant ids or rule ids it sends", async () => {
      const { at, window } = minute(1);
      const forged: UploadedFlow[] = [
        // c's identity, reported as c's: c has no workload on this node.
        flow(at(1), { src: { address: "198.18.40.1", port: 1, identity: c.vault, tenant: c.id } }),
        // c's identity, reported as a's (present): the identity's own row decides, not the claim.
        flow(at(2), { src: { address: "198.18.40.2", port: 2, identity: c.vault, tenant: s.a.id } }),
        // Numbers at the top of the range and reserved ones with forged tenants.
        flow(at(3), { src: { address: "198.18.40.3", port: 3, identity: 4_294_967_295, tenant: 4_294_967_295 }, dst: { address: s.addr.db, port: 5432, identity: 255, tenant: c.id } }),
        // c's policy and c's VIP on a flow of a's: a fact of a tenant not on the flow names nothing.
        flow(at(4), { hook: "sock", verdict: "translated", reason: "lb-translated", ruleId: c.rule, src: { address: s.addr.web, port: 4, identity: s.num.web, tenant: s.a.id }, originalDst: { address: c.vip, port: 443 } }),
        // The sock hook's unknown source, at c's workload's address (on another node).
        flow(at(5), { hook: "sock", verdict: "translated", reason: "lb-translated", src: { address: c.vaultAddress, port: 5, identity: 0, tenant: 0 } }),
      ];
      const aggregate: UploadedAggregate = {
        start: at(1), end: at(6), srcIdentity: c.vault, srcTenant: s.a.id, dstIdentity: s.num.db, dstTenant: s.a.id,
        dstPort: 8200, protocol: 6, verdict: "dropped", reason: "policy-deny", ruleId: c.rule, count: 3, bytes: 0,
      };
      const res = await upload(app, s.node.name, s.node.credential, batchOf({ flows: forged, aggregates: [aggregate] }));
      expect(res.statusCode, res.body).toBe(202);

      // c reads nothing of it, in the list or the map.
      expect(await items(c.tenant, c.token)).toEqual([]);
      expect(await summary(c.tenant, c.token)).toEqual([]);
      // a reads its own side named and every claimed side as unknown, with no name of c's anywhere.
      const forA = await items(s.a.tenant, s.a.token, window);
      // The third names no tenant on either side once its claims are set aside: the operator's alone.
      expect(forA.map((f) => f.source.port).sort()).toEqual([1, 2, 4, 5]);
      const bySrcPort = new Map(forA.map((f) => [f.source.port as number, f]));
      for (const port of [1, 2, 5]) expect(bySrcPort.get(port)!.source, `port ${port}`).toEqual({ address: expect.any(String), port, identity: null, tenant: null, reserved: "unknown" });
      expect(bySrcPort.get(4)).toMatchObject({ policy: null, originalDestination: { address: c.vip, port: 443, service: null }, source: { identity: "web" } });
      const edges = await summary(s.a.tenant, s.a.token, window);
      expect(edges.find((e) => e.port === 8200)).toMatchObject({ source: { identity: null, tenant: null, reserved: "unknown" }, destination: { identity: "db" }, counts: { dropped: 3 } });
      // The operator sees each claim marked, and no name of c's either: the node never had one to give.
      const forOperator = await platform(`node=${s.node.name}&${window}`);
      expect(forOperator).toHaveLength(5);
      expect(forOperator.filter((f) => f.source.reserved === "unknown")).toHaveLength(4);
      expect(forOperator.find((f) => f.source.port === 3)).toMatchObject({
        source: { identity: null, tenant: null, reserved: "unknown" },
        destination: { identity: null, tenant: null, reserved: "reserved" },
      });
      for (const body of [JSON.stringify(forA), JSON.stringify(edges), JSON.stringify(forOperator)]) {
        expect(body).not.toContain(c.tenant);
        expect(body).not.toContain("vault");
      }
      expect(await platform(`tenant=${c.tenant}&${window}`)).toEqual([]);
    });

    it("takes no batch from a deleted node's credential, not even once its name is registered again", async () => {
      const { at, window } = minute(2);
      const gone = await registeredNode(app);
      await mustPut(app, s.a.token, s.a.tenant, "workloads/on-gone", { identity: "web", node: gone.name, addresses: [addressIn(gone.name)] });
      expect((await app.inject({ method: "DELETE", url: `/v1/nodes/${gone.name}`, headers: operator })).statusCode).toBe(204);
      const before = await stored();
      const batch = () => batchOf({ flows: [flow(at(1), {})] });
      expectProblem(await upload(app, gone.name, gone.credential, batch()), 401);
      expectProblem(await upload(app, s.node.name, gone.credential, batch()), 401);
      expectProblem(await app.inject({ method: "POST", url: `/v1/nodes/${gone.name}/flows`, headers: operator, payload: batch() }), 404);
      const again = await registeredNode(app, { name: gone.name });
      expectProblem(await upload(app, gone.name, gone.credential, batch()), 401);
      expect(await stored()).toEqual(before);
      // The control: the name's new credential is taken (and names no one: the node hosts nothing yet).
      expect((await upload(app, again.name, again.credential, batch())).statusCode).toBe(202);
      expect(await items(s.a.tenant, s.a.token, window)).toEqual([]);
    });

    it("stores a batch id once: a replay with other content is a duplicate, never an overwrite or an addition", async () => {
      const { at, window } = minute(3);
      const original = batchOf({ flows: [flow(at(1), { src: { address: s.addr.web, port: 1111, identity: s.num.web, tenant: s.a.id } })] });
      expect((await upload(app, s.node.name, s.node.credential, original)).statusCode).toBe(202);
      const before = await stored();
      const altered = { ...original, flows: [flow(at(2), { verdict: "dropped", reason: "policy-deny", src: { address: s.addr.web, port: 2222, identity: s.num.web, tenant: s.a.id } })] };
      for (const headers of [bearer(s.node.credential), operator]) {
        const res = await app.inject({ method: "POST", url: `/v1/nodes/${s.node.name}/flows`, headers, payload: altered });
        expect(res.statusCode, res.body).toBe(200);
        expect(res.json()).toEqual({ duplicate: true, flows: 0, aggregates: 0 });
      }
      // Two different contents under one new id at once: one is stored whole, the other is the duplicate.
      const id = batchOf({}).batchId;
      const racing = [3333, 4444].map((port) => ({ ...batchOf({ flows: [flow(at(3), { src: { address: s.addr.web, port, identity: s.num.web, tenant: s.a.id } }), flow(at(4), { src: { address: s.addr.web, port: port + 1, identity: s.num.web, tenant: s.a.id } })] }), batchId: id }));
      const answers = await Promise.all(racing.map((b) => upload(app, s.node.name, s.node.credential, b)));
      expect(answers.map((r) => r.statusCode).sort()).toEqual([200, 202]);
      expect((await stored()).flows - before.flows).toBe(2);
      const ports = (await items(s.a.tenant, s.a.token, window)).map((f) => f.source.port).sort();
      expect([[1111, 3333, 3334], [1111, 4444, 4445]]).toContainEqual(ports);
    });

    it("lets a tenant reach none of another tenant's flows through any filter, cursor or parameter", async () => {
      const { at, window } = minute(4);
      const res = await upload(app, s.node.name, s.node.credential, batchOf({
        flows: [
          ...[1, 2, 3, 4, 5].map((i) => bInternal(at(i), 50000 + i)),
          ...[1, 2, 3].map((i) => flow(at(i + 10), { src: { address: s.addr.web, port: 60000 + i, identity: s.num.web, tenant: s.a.id } })),
        ],
      }));
      expect(res.statusCode, res.body).toBe(202);
      // b reads its five, and pages them: its cursors are what a would steal.
      const page = (await list(s.b.tenant, s.b.token, `${window}&limit=2`)).json() as { items: Json[]; nextCursor: string };
      expect(page.items.map((f) => f.source.identity)).toEqual(["intruder", "intruder"]);
      const mineAll = (await items(s.a.tenant, s.a.token, window)).map((f) => f.id);
      expect(mineAll).toHaveLength(3);
      const queries = [
        "identity=intruder", "identity=store", "sourceIdentity=intruder", "destinationIdentity=store", `node=${s.node.name}`,
        "verdict=forwarded", "reason=policy-allow", "since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z", "since=7d",
        `cursor=${page.nextCursor}`, `cursor=${page.nextCursor}&limit=1000`,
      ];
      for (const q of queries) {
        const answer = await list(s.a.tenant, s.a.token, `${q}`);
        expect(answer.statusCode, `${q}: ${answer.body}`).toBe(200);
        const got = answer.json().items as Json[];
        expect(answer.body, q).not.toContain(s.b.tenant);
        expect(answer.body, q).not.toContain("intruder");
        expect(answer.body, q).not.toContain("store");
        expect(got.some((f) => f.source.port > 50000 && f.source.port < 50010), q).toBe(false);
      }
      // A foreign cursor is only a position: it pages a's own rows.
      expect((await items(s.a.tenant, s.a.token, `${window}&cursor=${page.nextCursor}`)).every((f) => mineAll.includes(f.id))).toBe(true);
      // No parameter names another tenant on a tenant's route.
      for (const q of [`tenant=${s.b.tenant}`, `tenantId=${s.b.id}`, `identity=${s.b.tenant}/intruder`]) {
        expectProblem(await list(s.a.tenant, s.a.token, q), 400);
        expectProblem(await app.inject({ url: `/v1/tenants/${s.a.tenant}/flows/summary?${q}`, headers: bearer(s.a.token) }), 400);
      }
      // Nor does the path, the operator's route, or a node's credential.
      for (const path of [`/v1/tenants/${s.b.tenant}/flows`, `/v1/tenants/${s.b.tenant}/flows/summary`, `/v1/tenants/${s.b.tenant}/flows?follow=true`]) {
        expectProblem(await app.inject({ url: path, headers: bearer(s.a.token) }), 404);
        expectProblem(await app.inject({ url: path, headers: bearer(s.node.credential) }), 403);
      }
      expectProblem(await app.inject({ url: `/v1/flows?tenant=${s.b.tenant}`, headers: bearer(s.a.token) }), 403);
      expectProblem(await app.inject({ url: `/v1/flows?follow=true`, headers: bearer(s.a.token) }), 403);
      expect(app.weft.flowStreams.size).toBe(0);
    });

    it("streams a tenant none of another tenant's flows uploaded while it follows, and each its own side of a cross-tenant drop", async () => {
      const mine = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true`, s.a.token);
      const byIdentity = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true&identity=intruder`, s.a.token);
      const theirs = follow(`/v1/tenants/${s.b.tenant}/flows?follow=true`, s.b.token);
      await untilHolds("the streams to open", () => [mine, byIdentity, theirs].every((x) => x.comments.length > 0), Boolean);
      const now = new Date().toISOString();
      const drop = flow(now, {
        verdict: "dropped", reason: "policy-deny", ruleId: s.rule(0), originalDst: { address: s.vip, port: 80 },
        src: { address: s.addr.intruder, port: 51999, identity: s.num.intruder, tenant: s.b.id },
      });
      expect((await upload(app, s.node.name, s.node.credential, batchOf({ flows: [bInternal(now, 51001), bInternal(now, 51002)] }))).statusCode).toBe(202);
      expect((await upload(app, s.node.name, s.node.credential, batchOf({ flows: [drop, flow(now, { src: { address: s.addr.web, port: 52000, identity: s.num.web, tenant: s.a.id } })] }))).statusCode).toBe(202);
      // The control arrives last: by then b's flows would have come first.
      await untilHolds("a's own flows on its stream", () => mine.events.length, (n) => n >= 2);
      await untilHolds("b's three on b's stream", () => theirs.events.length, (n) => n >= 3);
      await new Promise((r) => setTimeout(r, 300));
      const aFlows = mine.events.map((e) => e.data as Json);
      expect(aFlows.map((f) => f.source.port)).toEqual([51999, 52000]);
      expect(aFlows[0]).toMatchObject({ source: { identity: null, tenant: null, reserved: "other-tenant" }, destination: { identity: "db" }, policy: { name: "db-ingress" }, originalDestination: { service: "db" } });
      expect(JSON.stringify(mine.events)).not.toContain(s.b.tenant);
      // The other tenant's identity names nothing on a's stream, even on its own cross-tenant drop.
      expect(byIdentity.events).toEqual([]);
      const bFlows = theirs.events.map((e) => e.data as Json);
      expect(bFlows.map((f) => f.source.port)).toEqual([51001, 51002, 51999]);
      expect(bFlows[2]).toMatchObject({ source: { identity: "intruder" }, destination: { identity: null, tenant: null, reserved: "other-tenant" }, policy: null, originalDestination: { address: s.vip, port: 80, service: null } });
      const bBody = JSON.stringify(theirs.events);
      for (const secret of [s.a.tenant, "db-ingress", '"db"', '"web"']) expect(bBody).not.toContain(secret);
      // The lists say the same as the streams.
      const listedForB = await items(s.b.tenant, s.b.token, "reason=policy-deny&limit=1");
      expect(listedForB[0]).toEqual(bFlows[2]);
      for (const stream of [mine, byIdentity, theirs]) await stream.close();
      await untilHolds("the streams to end on the server", () => app.weft.flowStreams.size, (n) => n === 0);
    });

    it("ends a stream when the token that minted its token is revoked, and when its tenant is deleted", async () => {
      const child = (await app.inject({ method: "POST", url: `/v1/tenants/${s.a.tenant}/tokens`, headers: bearer(s.a.token), payload: { name: "parent", scopes: ["admin"] } })).json();
      const grandchild = (await app.inject({ method: "POST", url: `/v1/tenants/${s.a.tenant}/tokens`, headers: bearer(child.token), payload: { name: "watcher", scopes: ["read"] } })).json();
      const doomed = await tenantWithToken(app, ["read"]);
      const byChild = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true`, grandchild.token);
      const ofDoomed = follow(`/v1/tenants/${doomed.tenant}/flows?follow=true`, doomed.token);
      await untilHolds("both streams", () => app.weft.flowStreams.size, (n) => n === 2);
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${s.a.tenant}/tokens/${child.id}`, headers: operator })).statusCode).toBe(204);
      expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${doomed.tenant}`, headers: operator })).statusCode).toBe(204);
      // A batch wakes the streams: each checks its token before it reads.
      expect((await upload(app, s.node.name, s.node.credential, batchOf({ flows: [flow(new Date().toISOString(), {})] }))).statusCode).toBe(202);
      await Promise.race([Promise.all([byChild.done, ofDoomed.done]), new Promise((r) => setTimeout(r, 10_000))]);
      await untilHolds("the server to end both", () => app.weft.flowStreams.size, (n) => n === 0);
      expect(byChild.events).toEqual([]);
    });

    it("ends the stream of a client that leaves 4 MiB unread instead of buffering without bound", async () => {
      const { port } = new URL(base);
      expect(app.weft.flowStreams.size).toBe(0);
      const socket = connect(Number(port), "127.0.0.1");
      socket.on("error", () => undefined);
      let received = 0;
      let closed = false;
      socket.on("close", () => (closed = true));
      await new Promise((r) => socket.once("connect", r));
      socket.write(`GET /v1/tenants/${s.a.tenant}/flows?follow=true HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer ${s.a.token}\r\n\r\n`);
      socket.once("data", (chunk: Buffer) => {
        received += chunk.length;
        // Read the head, then never again: the kernel's buffers fill, then the server's.
        socket.pause();
      });
      await untilHolds("the stream to open", () => app.weft.flowStreams.size, (n) => n === 1);
      const now = new Date().toISOString();
      let batches = 0;
      // Each batch is some 900 KB of events; loopback buffers hold a few MB before the server's fills.
      while (app.weft.flowStreams.size > 0 && batches < 60) {
        const flows = Array.from({ length: 2000 }, (_, i) => flow(now, { src: { address: s.addr.web, port: 1024 + i, identity: s.num.web, tenant: s.a.id } }));
        expect((await upload(app, s.node.name, s.node.credential, batchOf({ flows }))).statusCode).toBe(202);
        batches++;
        await new Promise((r) => setTimeout(r, 50));
      }
      await untilHolds("the server to end the stream", () => app.weft.flowStreams.size, (n) => n === 0, 20_000);
      expect(batches).toBeLessThan(60);
      expect(received).toBeGreaterThan(0);
      // Another stream of the tenant opens at once: the slot was freed.
      const next = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true&node=${s.spare.name}`, s.a.token);
      await untilHolds("a new stream", () => next.comments.length, (n) => n > 0);
      await next.close();
      socket.destroy();
      expect(closed || socket.destroyed).toBe(true);
    }, 120_000);

    it("answers every time JavaScript cannot hold with 4xx problem+json and stores nothing", async () => {
      const { at } = minute(5);
      const leap = "2026-06-30T23:59:60Z";
      const before = await stored();
      const aggregate: UploadedAggregate = {
        start: at(1), end: at(2), srcIdentity: s.num.web, srcTenant: s.a.id, dstIdentity: s.num.db, dstTenant: s.a.id,
        dstPort: 5432, protocol: 6, verdict: "forwarded", reason: "policy-allow", ruleId: 0, count: 1, bytes: 1,
      };
      for (const [batch, field] of [
        [batchOf({ flows: [flow(leap, {})] }), "body.flows.0.time"],
        [batchOf({ flows: [flow(at(1), {})], aggregates: [{ ...aggregate, start: leap }] }), "body.aggregates.0.start"],
        [batchOf({ aggregates: [{ ...aggregate, end: leap }] }), "body.aggregates.0.end"],
        [batchOf({ flows: [flow("0000-01-01T00:00:00Z", {})] }), "body.flows.0.time"],
      ] as const) {
        const problem = expectProblem(await upload(app, s.node.name, s.node.credential, batch), 422);
        expect(JSON.stringify(problem.errors ?? []), field).toContain(field);
      }
      expect(await stored()).toEqual(before);
      for (const [query, field] of [
        [`since=${leap}`, "query.since"],
        [`until=${leap}`, "query.until"],
        ["since=0000-01-01T00:00:00Z", "query.since"],
        ["since=999999d", "query.since"],
        ["until=9999-12-31T23:59:59-23:59", "query.until"],
        [`follow=true&since=${leap}`, "query.since"],
      ] as const) {
        const problem = expectProblem(await list(s.a.tenant, s.a.token, query), 400);
        expect(JSON.stringify(problem.errors ?? []), query).toContain(field);
        if (!query.startsWith("follow")) {
          const mapProblem = expectProblem(await app.inject({ url: `/v1/tenants/${s.a.tenant}/flows/summary?${query}`, headers: bearer(s.a.token) }), 400);
          expect(JSON.stringify(mapProblem.errors ?? []), query).toContain(field);
        }
      }
      expect(app.weft.flowStreams.size).toBe(0);
    });

    it("answers very long and odd query strings over HTTP with 4xx problem+json", async () => {
      for (const query of [
        `identity=${"a".repeat(20_000)}`,
        `cursor=${"A".repeat(600)}`,
        "verdict=dropped&verdict=forwarded",
        "identity[]=web",
        "identity=%E0%A4%A",
        `since=${"9".repeat(40)}d`,
        "limit=1e400",
      ]) {
        const res = await fetch(`${base}/v1/tenants/${s.a.tenant}/flows?${query}`, { headers: bearer(s.a.token) });
        expect(res.status, query.slice(0, 40)).toBeGreaterThanOrEqual(400);
        expect(res.status, query.slice(0, 40)).toBeLessThan(500);
        expect(res.headers.get("content-type"), query.slice(0, 40)).toMatch(/^application\/problem\+json/);
        await res.arrayBuffer();
      }
    });
  });
});
