// Issue 17 item 3: ?follow=true streams new flows as Server-Sent Events,
// including those another replica stored, and ends cleanly.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import type { UploadedFlow } from "../../api/src/mesh/flows/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, twoReplicas } from "../support/api.ts";
import { batchOf, flowStage, sseClient, upload, type FlowStage } from "../support/flows.ts";
import { untilHolds } from "../support/until.ts";

describe.each(BACKENDS)("following flows on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`two replicas in process, on ${backendDatabase(backend)}`, () => {
    let replicas: Awaited<ReturnType<typeof twoReplicas>>;
    let a: WeftApp;
    let b: WeftApp;
    let baseA: string;
    let s: FlowStage;
    const open: Array<{ close(): Promise<void> }> = [];
    const dropped = (port: number): UploadedFlow => ({
      time: new Date().toISOString(), hook: "egress", verdict: "dropped", reason: "cross-tenant", ruleId: 0, protocol: 6,
      src: { address: s.addr.intruder, port, identity: s.num.intruder, tenant: s.b.id },
      dst: { address: s.addr.db, port: 5432, identity: s.num.db, tenant: s.a.id },
    });
    const allowed = (port: number): UploadedFlow => ({
      time: new Date().toISOString(), hook: "egress", verdict: "forwarded", reason: "policy-allow", ruleId: 0, protocol: 6,
      src: { address: s.addr.web, port, identity: s.num.web, tenant: s.a.id },
      dst: { address: s.addr.db, port: 5432, identity: s.num.db, tenant: s.a.id },
    });
    const follow = (path: string, token: string) => {
      const client = sseClient(`${baseA}${path}`, bearer(token));
      open.push(client);
      return client;
    };

    beforeAll(async () => {
      replicas = await twoReplicas(backend, { flowStreamsPerTenant: 2, flowHeartbeatMs: 200 });
      ({ a, b } = replicas);
      baseA = await a.listen({ port: 0, host: "127.0.0.1" });
      s = await flowStage(a);
    });
    afterAll(async () => {
      for (const c of open) await c.close();
      await replicas?.close();
    });

    it("streams a flow uploaded after it opened, through this replica and through another, filters applied", async () => {
      const stream = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true&verdict=dropped`, s.a.token);
      await untilHolds("the stream to open", () => stream.comments.length, (n) => n > 0);
      expect(stream.status).toBe(200);
      expect(stream.contentType).toMatch(/^text\/event-stream/);
      expect((await upload(a, s.node.name, s.node.credential, batchOf({ flows: [allowed(1), dropped(2)] }))).statusCode).toBe(202);
      expect((await upload(b, s.node.name, s.node.credential, batchOf({ flows: [dropped(3), allowed(4)] }))).statusCode).toBe(202);
      await untilHolds("both drops on the stream", () => stream.events.length, (n) => n >= 2);
      await new Promise((r) => setTimeout(r, 300));
      expect(stream.events.map((e) => e.event)).toEqual(["flow", "flow"]);
      const flows = stream.events.map((e) => e.data as Record<string, any>);
      expect(flows.map((f) => f.source.port)).toEqual([2, 3]);
      expect(flows[0]).toMatchObject({ verdict: "dropped", source: { reserved: "other-tenant", identity: null }, destination: { identity: "db", tenant: s.a.tenant } });
      // Each as the list answers it.
      const listed = (await a.inject({ url: `/v1/tenants/${s.a.tenant}/flows?verdict=dropped&limit=2`, headers: bearer(s.a.token) })).json().items;
      expect([...listed].reverse()).toEqual(flows);
    });

    it("streams the other tenant only its own view, and the operator everything", async () => {
      const other = follow(`/v1/tenants/${s.b.tenant}/flows?follow=true`, s.b.token);
      const all = follow(`/v1/flows?follow=true&tenant=${s.a.tenant}`, operator.authorization.slice(7));
      await untilHolds("the streams to open", () => other.comments.length + all.comments.length, (n) => n >= 2);
      expect((await upload(b, s.node.name, s.node.credential, batchOf({ flows: [allowed(10), dropped(11)] }))).statusCode).toBe(202);
      await untilHolds("the operator's stream", () => all.events.length, (n) => n >= 2);
      await untilHolds("the other tenant's stream", () => other.events.length, (n) => n >= 1);
      await new Promise((r) => setTimeout(r, 300));
      expect(other.events).toHaveLength(1);
      expect(JSON.stringify(other.events)).not.toContain(s.a.tenant);
      expect((all.events[1]!.data as Record<string, any>).source).toMatchObject({ identity: "intruder", tenant: s.b.tenant });
      await other.close();
      await all.close();
    });

    it("refuses a third stream of one tenant with 429 problem+json, and frees the slot on disconnect", async () => {
      await untilHolds("earlier streams to be gone", () => a.weft.flowStreams.size, (n) => n <= 1);
      const first = open[0]!;
      const second = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true`, s.a.token);
      await untilHolds("the second stream", () => a.weft.flowStreams.size, (n) => n === 2);
      const third = await a.inject({ url: `/v1/tenants/${s.a.tenant}/flows?follow=true`, headers: bearer(s.a.token) });
      expectProblem(third, 429);
      // Another tenant is not held back by this one's streams.
      const others = follow(`/v1/tenants/${s.b.tenant}/flows?follow=true`, s.b.token);
      await untilHolds("the other tenant's stream", () => a.weft.flowStreams.size, (n) => n === 3);
      await first.close();
      await second.close();
      await others.close();
      await untilHolds("every stream to end on the server", () => a.weft.flowStreams.size, (n) => n === 0);
      const again = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true`, s.a.token);
      await untilHolds("a new stream", () => again.comments.length, (n) => n > 0);
      expect(again.status).toBe(200);
      await again.close();
      await untilHolds("it to end too", () => a.weft.flowStreams.size, (n) => n === 0);
    });

    it("ends a stream whose token is revoked", async () => {
      const minted = await a.inject({ method: "POST", url: `/v1/tenants/${s.a.tenant}/tokens`, headers: operator, payload: { name: "watcher", scopes: ["read"] } });
      const { token, id } = minted.json();
      const stream = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true`, token);
      await untilHolds("the stream", () => stream.comments.length, (n) => n > 0);
      expect((await a.inject({ method: "DELETE", url: `/v1/tenants/${s.a.tenant}/tokens/${id}`, headers: operator })).statusCode).toBe(204);
      await untilHolds("the revocation to reach the replica", async () => (await a.inject({ url: `/v1/tenants/${s.a.tenant}/flows`, headers: bearer(token) })).statusCode, (c) => c === 401);
      expect((await upload(a, s.node.name, s.node.credential, batchOf({ flows: [dropped(20)] }))).statusCode).toBe(202);
      await Promise.race([stream.done, new Promise((r) => setTimeout(r, 10_000))]);
      await untilHolds("the server to end it", () => a.weft.flowStreams.size, (n) => n === 0);
      expect(stream.events).toEqual([]);
    });

    it("sends a comment heartbeat on an idle stream, and counts open streams in the metrics", async () => {
      const stream = follow(`/v1/tenants/${s.a.tenant}/flows?follow=true&node=${s.spare.name}`, s.a.token);
      await untilHolds("two heartbeats", () => stream.comments.filter((c) => c === "heartbeat").length, (n) => n >= 2);
      expect(stream.events).toEqual([]);
      const gauge = () => a.inject({ url: "/metrics" }).then((r) => Number(/^weft_flow_streams (\d+)$/m.exec(r.body)?.[1]));
      expect(await gauge()).toBe(1);
      await stream.close();
      await untilHolds("the stream to end", () => a.weft.flowStreams.size, (n) => n === 0);
      expect(await gauge()).toBe(0);
    });

    it("refuses bad filters before streaming", async () => {
      expectProblem(await a.inject({ url: `/v1/tenants/${s.a.tenant}/flows?follow=true&verdict=nope`, headers: bearer(s.a.token) }), 400);
      expectProblem(await a.inject({ url: `/v1/tenants/${s.a.tenant}/flows?follow=yes`, headers: bearer(s.a.token) }), 400);
      expect(a.weft.flowStreams.size).toBe(0);
    });
  });
});
