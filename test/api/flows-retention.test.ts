// Issue 17 item 3: flows, aggregates and batch ids older than WEFT_FLOW_RETENTION
// are pruned in bounded batches, by every replica without harm.
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { pruneFlows } from "../../api/src/mesh/flows/retention.ts";
import type { UploadedAggregate, UploadedFlow } from "../../api/src/mesh/flows/specs.ts";
import { BACKENDS, backendDatabase, bearer, freshPostgres, skipBackend, startApi } from "../support/api.ts";
import { batchOf, flowStage, upload, type FlowStage } from "../support/flows.ts";

const HOUR = 3_600_000;

describe.each(BACKENDS)("flow retention on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)} (a database of its own)`, () => {
    let app: WeftApp;
    let s: FlowStage;
    let own: Awaited<ReturnType<typeof freshPostgres>> | undefined;
    const count = async () => {
      const r = (await app.weft.db.execute(sql`SELECT (SELECT count(*) FROM flows)::int AS flows, (SELECT count(*) FROM flow_aggregates)::int AS aggregates, (SELECT count(*) FROM flow_batches)::int AS batches`)) as unknown as { rows: Array<{ flows: number; aggregates: number; batches: number }> };
      return r.rows[0]!;
    };
    const flowAt = (time: number, port: number): UploadedFlow => ({
      time: new Date(time).toISOString(), hook: "egress", verdict: "forwarded", reason: "policy-allow", ruleId: 0, protocol: 6,
      src: { address: s.addr.web, port, identity: s.num.web, tenant: s.a.id },
      dst: { address: s.addr.db, port: 5432, identity: s.num.db, tenant: s.a.id },
    });
    const aggregateAt = (end: number): UploadedAggregate => ({
      start: new Date(end - 10_000).toISOString(), end: new Date(end).toISOString(), srcIdentity: s.num.web, srcTenant: s.a.id, dstIdentity: s.num.db,
      dstTenant: s.a.id, dstPort: 5432, protocol: 6, verdict: "forwarded", reason: "policy-allow", ruleId: 0, count: 1, bytes: 1,
    });

    beforeAll(async () => {
      // Pruning reaches every row of the flow tables: on Postgres, a database no other suite shares.
      if (backend === "postgres") own = await freshPostgres("flows_retention");
      app = await startApi(backend, own ? { databaseUrl: own.url } : {});
      s = await flowStage(app);
    });
    afterAll(async () => {
      await app?.close();
      await own?.drop();
    });

    it("deletes what is older than the retention in batches, keeps the rest, and two pruners at once delete each row once", async () => {
      const now = Date.now();
      const old = Array.from({ length: 25 }, (_, i) => flowAt(now - 30 * HOUR - i * 1000, 1000 + i));
      const recent = Array.from({ length: 3 }, (_, i) => flowAt(now - HOUR + i * 1000, 2000 + i));
      const oldBatch = batchOf({ flows: old, aggregates: Array.from({ length: 7 }, (_, i) => aggregateAt(now - 26 * HOUR - i)) });
      expect((await upload(app, s.node.name, s.node.credential, oldBatch)).statusCode).toBe(202);
      expect((await upload(app, s.node.name, s.node.credential, batchOf({ flows: recent, aggregates: [aggregateAt(now - HOUR)] }))).statusCode).toBe(202);
      // The batch ids were received now: age them as if they had come a day ago.
      await app.weft.db.execute(sql`UPDATE flow_batches SET received_at = now() - interval '25 hours' WHERE batch_id = ${oldBatch.batchId}`);
      expect(await count()).toEqual({ flows: 28, aggregates: 8, batches: 2 });

      const [first, second] = await Promise.all([
        pruneFlows(app.weft.db, 24 * HOUR, { batch: 4, now }),
        pruneFlows(app.weft.db, 24 * HOUR, { batch: 4, now }),
      ]);
      expect(first.flows + second.flows).toBe(25);
      expect(first.flow_aggregates + second.flow_aggregates).toBe(7);
      expect(first.flow_batches + second.flow_batches).toBe(1);
      expect(await count()).toEqual({ flows: 3, aggregates: 1, batches: 1 });
      const left = (await app.inject({ url: `/v1/tenants/${s.a.tenant}/flows`, headers: bearer(s.a.token) })).json().items as Array<{ source: { port: number } }>;
      expect(left.map((f) => f.source.port).sort()).toEqual([2000, 2001, 2002]);
      // A batch id pruned with its flows may be sent again: it is a new batch by then.
      expect((await upload(app, s.node.name, s.node.credential, { ...oldBatch, flows: [], aggregates: [] })).statusCode).toBe(202);
    });

    it("deletes in statements of at most one batch each", async () => {
      const now = Date.now();
      expect((await upload(app, s.node.name, s.node.credential, batchOf({ flows: Array.from({ length: 10 }, (_, i) => flowAt(now - 48 * HOUR, 3000 + i)) }))).statusCode).toBe(202);
      const statements: string[] = [];
      const db = new Proxy(app.weft.db, {
        get(target, prop, receiver) {
          if (prop !== "transaction") return Reflect.get(target, prop, receiver);
          return (fn: (tx: unknown) => Promise<unknown>, config?: unknown) =>
            target.transaction(async (tx) => {
              const watched = new Proxy(tx, {
                get(t, p, r) {
                  if (p !== "execute") return Reflect.get(t, p, r);
                  return (q: { queryChunks?: unknown[] }) => {
                    const text = JSON.stringify(q.queryChunks ?? "");
                    if (text.includes("DELETE")) statements.push(text);
                    return t.execute(q as never);
                  };
                },
              });
              return fn(watched);
            }, config as never);
        },
      });
      const pruned = await pruneFlows(db, 24 * HOUR, { batch: 3, now });
      expect(pruned.flows).toBe(10);
      // 3 + 3 + 3 + 1 for flows, then one finding nothing in each of the other tables.
      expect(statements.filter((t) => t.includes('"flows"'))).toHaveLength(4);
    });
  });
});
