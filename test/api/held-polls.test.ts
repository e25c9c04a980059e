// Issue 20 item 1, the API side of 10,000 held polls: what an agent's poll
// costs a replica. Unchanged polls read no database; another replica's write
// is still seen; a revoked node credential stops working within the bound
// the README gives even when a notification is lost; every node holds the
// same objects for what they share (parts, encoded pieces, delta contents).
import { PGlite } from "@electric-sql/pglite";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { deltaChunks, fullChunks } from "../../api/src/routes/datapath/answers.ts";
import { DatapathDelta } from "../../api/src/routes/datapath/schemas.ts";
import { DATAPATH_MAPS } from "../../api/src/compiler/index.ts";
import { Value } from "@sinclair/typebox/value";
import { sql } from "drizzle-orm";
import { BACKENDS, backendDatabase, bearer, expectProblem, freshPostgres, operator, skipBackend, startApi, tenantWithToken, twoReplicas, uniqueName } from "../support/api.ts";
import { addressIn, registeredNode } from "../support/nodes.ts";
import { until, untilHolds } from "../support/until.ts";

/**
 * Statements sent to the database while `run` runs, by anyone: the app's
 * periodic work (safety pull, revocation poll, liveness) runs on intervals,
 * which the suite that counts stops (fake setInterval).
 */
let statements = 0;
function countStatements(): void {
  // pg: every statement of every pooled connection. PGlite: statements outside a transaction, and each transaction (at least one).
  for (const [proto, method] of [
    [pg.Client.prototype, "query"],
    [PGlite.prototype, "query"],
    [PGlite.prototype, "exec"],
    [PGlite.prototype, "transaction"],
  ] as const) {
    const target = proto as unknown as Record<string, (...args: unknown[]) => unknown>;
    const original = target[method]!;
    vi.spyOn(target, method).mockImplementation(function (this: unknown, ...args: unknown[]) {
      statements++;
      return original.apply(this, args);
    });
  }
}
async function counted<T>(run: () => Promise<T>): Promise<{ result: T; statements: number }> {
  const before = statements;
  const result = await run();
  return { result, statements: statements - before };
}

const datapath = (app: WeftApp, node: { name: string; credential: string }, query = "", headers: Record<string, string> = {}) =>
  app.inject({ url: `/v1/nodes/${node.name}/datapath${query}`, headers: { ...bearer(node.credential), ...headers } });

async function placeWorkload(app: WeftApp, tenant: string, token: string, node: string, name = uniqueName("w")): Promise<void> {
  const res = await app.inject({
    method: "PUT",
    url: `/v1/tenants/${tenant}/workloads/${name}`,
    headers: bearer(token),
    payload: { identity: "web", node, addresses: [addressIn(node)] },
  });
  if (res.statusCode !== 201 && res.statusCode !== 200) throw new Error(`workload: ${res.statusCode} ${res.body}`);
}

async function tenantWithIdentity(app: WeftApp): Promise<{ tenant: string; token: string }> {
  const t = await tenantWithToken(app, ["admin"]);
  const res = await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/web`, headers: bearer(t.token), payload: { path: "/web" } });
  if (res.statusCode !== 201) throw new Error(`identity: ${res.statusCode} ${res.body}`);
  return t;
}

describe.each(BACKENDS)("held polls on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    afterEach(() => void vi.restoreAllMocks());

    describe("one replica", () => {
      let app: WeftApp;
      let t: { tenant: string; token: string };
      let n1: { name: string; credential: string };
      let n2: { name: string; credential: string };
      let n3: { name: string; credential: string };
      beforeAll(async () => {
        // No periodic work while statements are counted (see countStatements).
        vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
        app = await startApi(backend);
        t = await tenantWithIdentity(app);
        n1 = await registeredNode(app);
        n2 = await registeredNode(app);
        n3 = await registeredNode(app);
        await placeWorkload(app, t.tenant, t.token, n1.name);
        await placeWorkload(app, t.tenant, t.token, n2.name);
      });
      afterAll(async () => {
        await app?.close();
        vi.useRealTimers();
      });

      it("answers an unchanged poll, by since or by ETag, without a database statement", async () => {
        const first = await datapath(app, n1);
        expect(first.statusCode).toBe(200);
        const revision = first.headers["x-weft-revision"] as string;
        const etag = first.headers.etag as string;
        countStatements();
        const bySince = await counted(() => datapath(app, n1, `?since=${revision}&wait=0`));
        expect(bySince.result.statusCode).toBe(200);
        expect(bySince.result.json().upserts.ipcache).toEqual([]);
        const byEtag = await counted(() => datapath(app, n1, "?wait=0", { "if-none-match": etag }));
        expect(byEtag.result.statusCode).toBe(304);
        const many = await counted(() => Promise.all(Array.from({ length: 20 }, () => datapath(app, n1, `?since=${revision}&wait=0`))));
        expect(many.result.map((r) => r.statusCode)).toEqual(Array(20).fill(200));
        expect([bySince.statements, byEtag.statements, many.statements]).toEqual([0, 0, 0]);
        // The counter counts: a plain read checks the newest revision (read-your-writes across replicas).
        const plain = await counted(() => datapath(app, n1));
        expect(plain.result.statusCode).toBe(200);
        expect(plain.statements).toBeGreaterThan(0);
      });

      it("a held since poll that times out answers an empty delta of every map, as an unheld one does", async () => {
        const first = await datapath(app, n1);
        const revision = first.headers["x-weft-revision"] as string;
        const unheld = await datapath(app, n1, `?since=${revision}&wait=0`);
        // The route encodes this answer itself (answers.ts), past the schema serializer: held to the schema here.
        const timedOut = await datapath(app, n1, `?since=${revision}&wait=1`);
        expect(timedOut.statusCode).toBe(200);
        expect(timedOut.headers["content-type"]).toBe("application/json; charset=utf-8");
        expect(timedOut.headers.etag).toBe(first.headers.etag);
        expect(timedOut.headers["x-weft-revision"]).toBe(revision);
        const body = timedOut.json();
        expect(Value.Errors(DatapathDelta, body).First()).toBeUndefined();
        expect(body).toEqual({ revision: Number(revision), hash: first.json().hash, upserts: unheld.json().upserts, deletes: unheld.json().deletes });
        for (const m of DATAPATH_MAPS) expect([body.upserts[m], body.deletes[m]]).toEqual([[], []]);
      });

      it("a woken poll's answer aborts nothing: the hang-up listener goes when the wait ends, not at the exchange's close", async () => {
        // An abort builds a DOMException with its stack: once per answered poll, 5% of a wave's CPU.
        const first = await datapath(app, n1);
        const aborts = vi.spyOn(AbortController.prototype, "abort");
        const held = datapath(app, n1, `?since=${first.headers["x-weft-revision"]}&wait=10`);
        await untilHolds("the poll held", () => app.weft.follower.heldLongPolls, (n) => n === 1);
        await placeWorkload(app, t.tenant, t.token, n3.name);
        const answer = await held;
        expect(answer.statusCode).toBe(200);
        expect(answer.json().upserts.ipcache.length).toBeGreaterThan(0);
        // The response's close comes a tick after its end.
        await new Promise((r) => setTimeout(r, 20));
        expect(aborts).not.toHaveBeenCalled();
      });

      it("a client that hangs up while held stops holding its waiter", async () => {
        const base = await app.listen({ port: 0, host: "127.0.0.1" });
        const first = await datapath(app, n2);
        const client = new AbortController();
        const held = fetch(`${base}/v1/nodes/${n2.name}/datapath?since=${first.headers["x-weft-revision"]}&wait=30`, {
          headers: bearer(n2.credential),
          signal: client.signal,
        }).catch((err: unknown) => err);
        await untilHolds("the poll held", () => app.weft.follower.heldLongPolls, (n) => n === 1);
        client.abort();
        expect(await held).toBeInstanceOf(Error);
        await untilHolds("the waiter released", () => app.weft.follower.heldLongPolls, (n) => n === 0, 5000, 20);
      });

      it("a poll that is behind is answered from memory after this replica's own write, and sees it", async () => {
        const before = await datapath(app, n1);
        await placeWorkload(app, t.tenant, t.token, n2.name);
        const after = await datapath(app, n1, `?since=${before.headers["x-weft-revision"]}&wait=0`);
        expect(after.statusCode).toBe(200);
        expect(after.json().upserts.ipcache).toHaveLength(1);
        expect(after.headers.etag).not.toBe(before.headers.etag);
      });

      it("every node holds the same objects for what they share: parts, encoded pieces, delta contents", async () => {
        const follower = app.weft.follower;
        const [s1, s2] = [follower.state(n1.name)!, follower.state(n2.name)!];
        const shared = [...s1.datapath.parts.keys()].filter((owner) => s2.datapath.parts.has(owner));
        expect(shared.length).toBeGreaterThan(0);
        for (const owner of shared) expect(s1.datapath.parts.get(owner)).toBe(s2.datapath.parts.get(owner));
        // The tenant's addresses: one Buffer in both nodes' full bodies, not two copies.
        const [c1, c2] = [fullChunks(s1), fullChunks(s2)];
        expect(c1.filter((c) => c2.includes(c) && c.length > 40).length).toBeGreaterThan(0);
        // A write that reaches both nodes alike: one delta content, one encoded tail.
        // (A third node's workload: the tenant's addresses change on both, their own endpoints on neither.)
        await placeWorkload(app, t.tenant, t.token, n3.name);
        const d1 = follower.delta(n1.name, s1.revision);
        const d2 = follower.delta(n2.name, s2.revision);
        if (d1 === null || d2 === null || d1 === "gone" || d2 === "gone") throw new Error("no delta");
        expect(d1.hash).not.toBe(d2.hash);
        expect(d1.delta).toBe(d2.delta);
        expect(deltaChunks(d1)[1]).toBe(deltaChunks(d2)[1]);
        // And the bytes are what the encoder gives the object as a whole.
        expect(Buffer.concat(deltaChunks(d1)).toString()).toBe(JSON.stringify({ revision: d1.revision, hash: d1.hash, upserts: d1.delta.upserts, deletes: d1.delta.deletes }));
      });
    });

    it("a write on replica A is seen on replica B: a plain read at once, a poll from A's revision without 410, a held poll woken", async () => {
      const { a, b, close } = await twoReplicas(backend);
      try {
        const t = await tenantWithIdentity(a);
        const node = await registeredNode(a);
        await placeWorkload(a, t.tenant, t.token, node.name);
        const onB = await datapath(b, node);
        expect(onB.statusCode).toBe(200);
        const held = datapath(b, node, `?since=${onB.headers["x-weft-revision"]}&wait=10`);
        await placeWorkload(a, t.tenant, t.token, node.name);
        const onA = await datapath(a, node);
        // Right after the write: B's plain read checks the newest revision first.
        const plainOnB = await datapath(b, node);
        expect(plainOnB.headers.etag).toBe(onA.headers.etag);
        // A client that saw A's revision asks B from there: B pulls up to it instead of calling it unknown.
        const fromA = await datapath(b, node, `?since=${onA.headers["x-weft-revision"]}&wait=0`);
        expect(fromA.statusCode).toBe(200);
        expect(fromA.headers.etag).toBe(onA.headers.etag);
        const woken = await held;
        expect(woken.statusCode).toBe(200);
        expect(woken.headers.etag).toBe(onA.headers.etag);
      } finally {
        await close();
      }
    });

    it("a node credential revoked on A stops working on B within the safety pull (5 s) even when B's notification is lost", async () => {
      const { a, b, close } = await twoReplicas(backend);
      try {
        const node = await registeredNode(a);
        const read = (on: WeftApp) => on.inject({ url: `/v1/nodes/${node.name}`, headers: bearer(node.credential) });
        expect((await read(b)).statusCode).toBe(200);
        // B stops hearing NOTIFY: its credential cache learns of the deletion only from the change log.
        await b.weft.feed.stop();
        expect((await a.inject({ method: "DELETE", url: `/v1/nodes/${node.name}`, headers: operator })).statusCode).toBe(204);
        expectProblem(await read(a), 401);
        const started = Date.now();
        await until("the deleted node's credential refused on B", 8000, async () => ((await read(b)).statusCode === 401 ? true : undefined));
        expect(Date.now() - started).toBeLessThan(7000);
      } finally {
        await close();
      }
    }, 20_000);

    it("a replica whose revision the change log was pruned past reloads everything instead of skipping the pruned changes", async () => {
      // Pruning reaches every tenant's rows: on Postgres, a database no other suite shares.
      const own = backend === "postgres" ? await freshPostgres("held_polls_horizon") : undefined;
      const { a, b, close } = await twoReplicas(backend, own ? { databaseUrl: own.url } : {});
      try {
        const t = await tenantWithIdentity(a);
        const node = await registeredNode(a);
        await placeWorkload(a, t.tenant, t.token, node.name);
        expect((await datapath(b, node)).statusCode).toBe(200);
        // B hears nothing more; A writes, and retention prunes those changes before B pulls them
        // (B's 5 s safety pull could come first: then B is simply current, and the test still holds).
        await b.weft.feed.stop();
        await placeWorkload(a, t.tenant, t.token, node.name);
        const onA = await datapath(a, node);
        await a.weft.db.execute(sql`WITH h AS (UPDATE change_log_horizon SET pruned_through = (SELECT revision FROM revision_counter) RETURNING pruned_through)
                                   DELETE FROM change_log WHERE revision <= (SELECT pruned_through FROM h)`);
        // B's plain read pulls: past the horizon it must reload, or it would serve the state without A's workload.
        const onB = await datapath(b, node);
        expect(onB.statusCode).toBe(200);
        expect(onB.headers.etag).toBe(onA.headers.etag);
      } finally {
        await close();
        await own?.drop();
      }
    }, 20_000);
  });
});
