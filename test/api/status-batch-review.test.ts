// Review of the status group commit (routes/nodes, mesh/nodes.ts storeStatuses, db/group-commit.ts): what a
// report stored alone did must still hold when reports share one UPDATE ... FROM (VALUES ...): the parts a
// report leaves out keep the stored ones, convergedSince is kept across reports of one hash, restarted when
// it changes and null when not converged, the writes that follow the store (reachable again, a moved
// transport endpoint, a health transition) still happen, a node gone before its batch is a 404 of its own,
// and the CA store's issuance records, through the same GroupCommit, keep one bad record to itself.
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { DrizzleCaStore } from "../../api/src/ca/store.ts";
import { nodes, svidIssuances, tenants } from "../../api/src/db/schema.ts";
import { statusWrite, storeStatuses, type StatusWrite } from "../../api/src/mesh/nodes.ts";
import type { NodeStatusReport } from "../../api/src/mesh/specs.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, freshPostgres, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { freshAddress, identity, mustPut } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

type Registered = Awaited<ReturnType<typeof registeredNode>>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.each(BACKENDS)("status reports stored together on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let drop: (() => Promise<void>) | undefined;
    beforeAll(async () => {
      if (backend === "postgres") {
        // 256 nodes with reports of a quarter MiB each: a database of this file's own, not one the suites after it page through.
        const fresh = await freshPostgres("weft_status_batch");
        drop = fresh.drop;
        app = await startApi(backend, { databaseUrl: fresh.url });
      } else {
        app = await startApi(backend);
      }
    });
    afterAll(async () => {
      await app?.close();
      await drop?.();
    });

    const put = (n: Registered, body: object) => app.inject({ method: "PUT", url: `/v1/nodes/${n.name}/status`, headers: bearer(n.credential), payload: body });
    const shown = async (n: Registered) => (await app.inject({ url: `/v1/nodes/${n.name}`, headers: operator })).json();
    const desiredHash = async (n: Registered) => (await app.weft.follower.current(n.name))!.datapath.hash;
    const row = async (name: string) => (await app.weft.db.select().from(nodes).where(eq(nodes.name, name)))[0];
    const base = { appliedRevision: 1, counters: {}, errors: [] };

    it("one wave of reports keeps each node's kept parts, convergedSince rules and follow-up writes", async () => {
      const t = await tenantWithToken(app, ["write"]);
      const n = await Promise.all(Array.from({ length: 7 }, () => registeredNode(app)));
      const [keeps, steady, diverges, converges, unreachable, moves, unwell] = n as [Registered, Registered, Registered, Registered, Registered, Registered, Registered];
      await identity(app, t.token, t.tenant, "web", { app: "web" });
      await mustPut(app, t.token, t.tenant, "workloads/web-1", {
        identity: "web",
        node: unwell.name,
        addresses: [freshAddress(unwell.podCidr)],
        healthCheck: { protocol: "tcp", port: 8080 },
      });
      const hash = Object.fromEntries(await Promise.all(n.map(async (x) => [x.name, await desiredHash(x)] as const)));
      // Before: each node's own earlier state, reported one at a time.
      const l7 = { state: "running", appliedEtag: '"e1"' };
      expect((await put(keeps, { ...base, hash: "h", transport: { endpoint: "192.0.2.1:15008", state: "running" }, l7 })).statusCode).toBe(200);
      for (const x of [steady, diverges]) expect((await put(x, { ...base, hash: hash[x.name] })).json().converged).toBe(true);
      expect((await put(converges, { ...base, hash: "stale" })).json().converged).toBe(false);
      expect((await put(moves, { ...base, hash: "h", transport: { endpoint: "192.0.2.2:15008", state: "running" } })).statusCode).toBe(200);
      const since = Object.fromEntries(await Promise.all([steady, diverges].map(async (x) => [x.name, (await shown(x)).convergedSince as string] as const)));
      await app.weft.db.update(nodes).set({ unreachableSince: new Date() }).where(eq(nodes.name, unreachable.name));
      expect((await shown(unreachable)).reachable).toBe(false);
      await sleep(20);

      // All at once.
      const started = Date.now();
      const [a, b, c, d, e, f, g] = await Promise.all([
        put(keeps, { ...base, hash: "h", counters: { wave: 1 } }),
        put(steady, { ...base, hash: hash[steady.name] }),
        put(diverges, { ...base, hash: "other" }),
        put(converges, { ...base, hash: hash[converges.name] }),
        put(unreachable, { ...base, hash: "h" }),
        put(moves, { ...base, hash: "h", transport: { endpoint: "192.0.2.3:15008", state: "running" } }),
        put(unwell, { ...base, hash: "h", health: [{ tenant: t.tenant, workload: "web-1", state: "unhealthy", since: new Date().toISOString() }] }),
      ]);
      for (const res of [a, b, c, d, e, f, g]) expect(res!.statusCode, res!.body).toBe(200);

      expect(a!.json()).toMatchObject({ counters: { wave: 1 }, transport: { endpoint: "192.0.2.1:15008", state: "running" }, l7: { state: "running", appliedEtag: '"e1"' } });
      expect(b!.json()).toMatchObject({ converged: true, convergedSince: since[steady.name] });
      expect(c!.json()).toMatchObject({ converged: false, convergedSince: null });
      expect(d!.json().converged).toBe(true);
      expect(Date.parse(d!.json().convergedSince)).toBeGreaterThanOrEqual(started - 1000);
      expect(e!.json()).toMatchObject({ reachable: true, unreachableSince: null });
      expect(f!.json().transport).toEqual({ endpoint: "192.0.2.3:15008", state: "running" });
      expect(g!.json().health).toEqual([expect.objectContaining({ workload: "web-1", state: "unhealthy" })]);
      // As stored, not only as answered.
      for (const [x, res] of [[keeps, a], [steady, b], [diverges, c], [converges, d], [unreachable, e], [moves, f], [unwell, g]] as const) {
        const now = await shown(x);
        expect(now).toEqual({ ...res!.json(), desired: now.desired });
      }
      expect((await row(moves.name))!.transportEndpoint).toBe("192.0.2.3:15008");
      const health = (await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-1/health`, headers: bearer(t.token) })).json();
      expect(health).toMatchObject({ state: "unhealthy", node: unwell.name });
    });

    it("a node deleted before its batch is written is answered null (a 404), beside the others stored", async () => {
      const [gone, stays] = await Promise.all([registeredNode(app), registeredNode(app)]);
      const deleted = await app.inject({ method: "DELETE", url: `/v1/nodes/${gone.name}`, headers: operator });
      expect(deleted.statusCode).toBe(204);
      const report = { ...base, hash: "h", counters: { mine: 1 } } satisfies NodeStatusReport;
      const answers = await storeStatuses(app.weft.db, [statusWrite(stays.name, report, null), statusWrite(gone.name, report, null)]);
      expect(answers[0]).toMatchObject({ name: stays.name, status: { counters: { mine: 1 } } });
      expect(answers[1]).toBeNull();
      // Its credential no longer works at all.
      expectProblem(await put(gone, report), 401);
    });

    describe("two reports of one node in one batch are stored as the one after the other would be", () => {
      const write = (n: Registered, report: Partial<NodeStatusReport>, desired: string | null) =>
        statusWrite(n.name, { ...base, hash: "h", ...report }, desired);
      const storeOneByOne = async (batch: StatusWrite[]) => {
        for (const w of batch) await storeStatuses(app.weft.db, [w]);
      };

      it("a part the later report leaves out keeps the earlier report's, not what was stored before the batch", async () => {
        const [together, apart] = await Promise.all([registeredNode(app), registeredNode(app)]);
        for (const n of [together, apart]) await storeStatuses(app.weft.db, [write(n, { transport: { endpoint: "192.0.2.10:15008", state: "running" }, l7: { state: "starting" } }, null)]);
        const batch = (n: Registered) => [
          write(n, { transport: { endpoint: "192.0.2.11:15008", state: "running" }, l7: { state: "running" }, counters: { first: 1 } }, null),
          write(n, { counters: { second: 1 } }, null),
        ];
        const answers = await storeStatuses(app.weft.db, batch(together));
        await storeOneByOne(batch(apart));
        const expected = { counters: { second: 1 }, transport: { endpoint: "192.0.2.11:15008", state: "running" }, l7: { state: "running" } };
        expect((await row(apart.name))!.status).toEqual(expect.objectContaining(expected));
        expect((await row(together.name))!.status).toEqual(expect.objectContaining(expected));
        // Both callers are answered with what was stored.
        expect(answers.map((r) => r?.status)).toEqual([(await row(together.name))!.status, (await row(together.name))!.status]);
      });

      it("a hash that changed within the batch restarts convergedSince, as it would have one report at a time", async () => {
        const n = await registeredNode(app);
        await storeStatuses(app.weft.db, [write(n, { hash: "good" }, "good")]);
        const before = (await row(n.name))!.convergedSince!;
        expect(before).not.toBeNull();
        await sleep(20);
        await storeStatuses(app.weft.db, [write(n, { hash: "bad" }, "good"), write(n, { hash: "good" }, "good")]);
        const after = (await row(n.name))!.convergedSince!;
        expect(after.getTime()).toBeGreaterThan(before.getTime());
        // Unchanged within and before the batch: kept.
        await storeStatuses(app.weft.db, [write(n, { hash: "good" }, "good"), write(n, { hash: "good" }, "good")]);
        expect((await row(n.name))!.convergedSince!.getTime()).toBe(after.getTime());
        // Not converged in the earlier one (an unresolved workload), converged in the later: restarted as well.
        await sleep(20);
        const unresolved = [{ tenant: "t", workload: "w", address: "10.0.0.1", reason: "no veth" }];
        await storeStatuses(app.weft.db, [write(n, { hash: "good", unresolved }, "good"), write(n, { hash: "good" }, "good")]);
        expect((await row(n.name))!.convergedSince!.getTime()).toBeGreaterThan(after.getTime());
      });
    });

    it("256 nodes' reports near the schema's limits (many counters, long errors, many unresolved) in one statement", async () => {
      const many: Registered[] = [];
      for (let i = 0; i < 256; i += 32) many.push(...(await Promise.all(Array.from({ length: 32 }, () => registeredNode(app)))));
      const report = (i: number): NodeStatusReport => ({
        appliedRevision: Number.MAX_SAFE_INTEGER - i,
        hash: "h".repeat(128),
        counters: Object.fromEntries(Array.from({ length: 256 }, (_, k) => [`${i}-${k}-`.padEnd(128, "c"), Number.MAX_SAFE_INTEGER - k])),
        errors: Array.from({ length: 64 }, (_, k) => `${i}-${k}-`.padEnd(1024, "e")),
        unresolved: Array.from({ length: 256 }, () => ({ tenant: "t".repeat(63), workload: "w".repeat(63), address: "255.255.255.255", reason: "r".repeat(512) })),
        l7: { state: "down", appliedEtag: "a".repeat(128), detail: "d".repeat(1024) },
      });
      const answers = await storeStatuses(app.weft.db, many.map((n, i) => statusWrite(n.name, report(i), null)));
      expect(answers.map((r) => r?.name)).toEqual(many.map((n) => n.name));
      for (const [i, r] of answers.entries()) {
        expect(r!.appliedRevision).toBe(Number.MAX_SAFE_INTEGER - i);
        const { counters, errors, unresolved, l7 } = report(i);
        expect(r!.status).toEqual({ counters, errors, unresolved, health: [], l7 });
      }
    }, 120_000);

    it("the CA store's issuance records share one GroupCommit: all committed, one bad record refused alone", async () => {
      const store = new DrizzleCaStore(app.weft.db, app.weft.feed);
      const names = [uniqueName("ca-a"), uniqueName("ca-b")];
      for (const name of names) expect((await app.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name } })).statusCode).toBe(201);
      const ids = await Promise.all(names.map(async (name) => String((await app.weft.db.select({ id: tenants.id }).from(tenants).where(eq(tenants.name, name)))[0]!.id)));
      const record = (tenantId: string, k: number) => ({
        tenantId,
        slotId: "00000000-0000-4000-8000-000000000001",
        kind: "x509-svid" as const,
        identityName: "web",
        spiffeId: `spiffe://example.org/web/${k}`,
        serial: `review-${names[0]}-${k}`,
        issuedAt: new Date(),
        expiresAt: new Date(Date.now() + 3_600_000),
      });
      const caller = { actor: "review", requestId: "review" };
      const good = Array.from({ length: 20 }, (_, k) => record(ids[k % 2]!, k));
      // A tenant that does not exist (deleted meanwhile): the foreign key refuses its row.
      const bad = record("2147483000", 99);
      const settled = await Promise.allSettled([...good.slice(0, 10), bad, ...good.slice(10)].map((r) => store.recordIssuance(r, caller)));
      expect(settled.map((s) => s.status)).toEqual([...Array(10).fill("fulfilled"), "rejected", ...Array(10).fill("fulfilled")]);
      const stored = await app.weft.db.select({ serial: svidIssuances.serial }).from(svidIssuances).where(sql`${svidIssuances.serial} LIKE ${`review-${names[0]}-%`}`);
      expect(stored.map((s) => s.serial).sort()).toEqual(good.map((r) => r.serial).sort());
    });
  });
});

describe.skipIf(skipBackend("pglite"))("status reports queued when PGlite closes", () => {
  it("each is answered with a 5xx problem, none is left waiting", async () => {
    const app = await startApi("pglite");
    const many = await Promise.all(Array.from({ length: 20 }, () => registeredNode(app)));
    const sent = many.map((n) =>
      app.inject({ method: "PUT", url: `/v1/nodes/${n.name}/status`, headers: bearer(n.credential), payload: { appliedRevision: 1, hash: "h", counters: {}, errors: [] } }),
    );
    await new Promise((r) => setImmediate(r));
    await app.close();
    const answers = await Promise.race([Promise.all(sent), sleep(15_000).then(() => "hung" as const)]);
    expect(answers).not.toBe("hung");
    for (const res of answers as Awaited<(typeof sent)[number]>[]) {
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(500);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    }
  });
});
