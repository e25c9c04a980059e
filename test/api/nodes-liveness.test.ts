/**
 * Node liveness and backend health, through the API: a node silent past the
 * grace period is marked unreachable and its backends leave every other
 * node's LB tables until it reports again; a probed workload's unhealthy
 * report withdraws it, a healthy one restores it; all withdrawn fails open;
 * a node speaks only for its own workloads; an unresolved workload keeps the
 * node from converging. The sweep reaches every node of its database, so on
 * Postgres this file runs in a database of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, freshPostgres, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut, putResource } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";
import { untilHolds } from "../support/until.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const GRACE_SECONDS = 1;

type Registered = Awaited<ReturnType<typeof registeredNode>>;

describe.each(BACKENDS)("node liveness and backend health on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let drop: (() => Promise<void>) | undefined;
    let t: { tenant: string; token: string };
    const n: Record<"a" | "b" | "c", Registered> = {} as never;
    const address: Record<string, string> = {};
    let vip: string;
    /** Nodes whose agents are "down": the heartbeat below leaves them out. */
    const silent = new Set<string>();
    let heartbeat: NodeJS.Timeout | undefined;

    /** What each node's "agent" last said of its workloads' health: its heartbeat says it again, as a real agent does. */
    const lastHealth = new Map<string, unknown[]>();
    /** One report at a time per node, in order, as one agent sends them. */
    const sending = new Map<string, Promise<unknown>>();
    const report = (node: Registered, extra: Record<string, unknown> = {}) => {
      if (extra.health) lastHealth.set(node.name, extra.health as unknown[]);
      const payload = { appliedRevision: 0, hash: "none", counters: {}, errors: [], health: lastHealth.get(node.name) ?? [], ...extra };
      const sent = (sending.get(node.name) ?? Promise.resolve())
        .catch(() => undefined)
        .then(() => app.inject({ method: "PUT", url: `/v1/nodes/${node.name}/status`, headers: bearer(node.credential), payload }));
      sending.set(node.name, sent);
      return sent;
    };
    const nodeOf = async (node: Registered) => (await app.inject({ url: `/v1/nodes/${node.name}`, headers: operator })).json();

    /** Slots per backend address of the service's table, as `node`'s datapath holds it. */
    async function shares(node: Registered): Promise<Record<string, number>> {
      const maps = (await app.inject({ url: `/v1/nodes/${node.name}/datapath`, headers: bearer(node.credential) })).json().maps;
      const svc = maps.svc.find((e: { key: { vip: string } }) => e.key.vip === vip);
      const backendAddress = new Map(maps.backend.map((e: { key: { backendId: number }; value: { address: string } }) => [e.key.backendId, e.value.address]));
      const out: Record<string, number> = {};
      for (const e of maps.lb_slot as { key: { tableId: number }; value: { backendId: number } }[]) {
        if (e.key.tableId !== svc.value.tableId) continue;
        const a = backendAddress.get(e.value.backendId) as string;
        out[a] = (out[a] ?? 0) + 1;
      }
      return out;
    }
    /**
     * Waits for node a's table to hold `expected`. A health transition within
     * HEALTH_HOLD_DOWN_MS of the workload's last one is recorded from a later
     * report, as the heartbeat repeats the set: these waits span that.
     */
    const settles = (expected: Record<string, number>) =>
      until(`a's table ${JSON.stringify(expected)}`, () => shares(n.a), (s) => JSON.stringify(s) === JSON.stringify(expected));
    const bothServing = () => ({ [address["web-b"]!]: 9, [address["web-c"]!]: 1 });
    const onlyC = () => ({ [address["web-c"]!]: 1 });
    const health = (workload: string, state: "healthy" | "unhealthy") => ({ tenant: t.tenant, workload, state, since: new Date().toISOString() });

    const until = untilHolds;

    beforeAll(async () => {
      if (backend === "postgres") {
        const fresh = await freshPostgres("weft_live");
        drop = fresh.drop;
        app = await startApi(backend, { databaseUrl: fresh.url, nodeGraceSeconds: GRACE_SECONDS });
      } else {
        app = await startApi(backend, { nodeGraceSeconds: GRACE_SECONDS });
      }
      t = await tenantWithToken(app, ["write"]);
      n.a = await registeredNode(app, { zone: "z1" });
      n.b = await registeredNode(app, { zone: "z1" });
      n.c = await registeredNode(app, { zone: "z2" });
      await identity(app, t.token, t.tenant, "client", { app: "client" });
      await identity(app, t.token, t.tenant, "web", { app: "web" });
      const check = { protocol: "tcp", port: 8080 };
      for (const [name, node, healthCheck] of [
        ["client", n.a, undefined],
        ["web-b", n.b, check],
        ["web-c", n.c, check],
      ] as const) {
        address[name] = freshAddress(node.podCidr);
        await mustPut(app, t.token, t.tenant, `workloads/${name}`, {
          identity: name === "client" ? "client" : "web",
          node: node.name,
          addresses: [address[name]],
          ...(healthCheck ? { healthCheck } : {}),
        });
      }
      const svc = await mustPut(app, t.token, t.tenant, "services/web", {
        ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
        backends: { explicit: [{ workload: "web-b", weight: 90 }, { workload: "web-c", weight: 10 }] },
      });
      vip = svc.vip as string;
      const beat = () => {
        for (const node of Object.values(n)) if (!silent.has(node.name)) void report(node);
      };
      beat();
      heartbeat = setInterval(beat, 200);
    });
    afterAll(async () => {
      clearInterval(heartbeat);
      await app?.close();
      await drop?.();
    });

    it("marks a node silent past the grace unreachable and withdraws its backends everywhere; its next report restores them", async () => {
      expect(await shares(n.a)).toEqual(bothServing());
      silent.add(n.b.name);
      const marked = await until("node b unreachable", () => nodeOf(n.b), (node) => node.reachable === false);
      expect(Date.parse(marked.unreachableSince)).toBeGreaterThan(Date.now() - 30_000);
      expect((await nodeOf(n.a)).reachable).toBe(true);
      await until("a's table without b", () => shares(n.a), (s) => JSON.stringify(s) === JSON.stringify(onlyC()));
      expect(await shares(n.c)).toEqual(onlyC());

      const back = await report(n.b);
      expect(back.statusCode, back.body).toBe(200);
      expect(back.json()).toMatchObject({ reachable: true, unreachableSince: null });
      silent.delete(n.b.name);
      expect(await shares(n.a)).toEqual(bothServing());
      const audit = (await app.inject({ url: `/v1/nodes/${n.b.name}`, headers: operator })).json();
      expect(audit.reachable).toBe(true);
    });

    it("withdraws an unhealthy workload and restores it when healthy, without moving its ETag", async () => {
      const before = (await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b`, headers: bearer(t.token) })).json();
      expect((await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b/health`, headers: bearer(t.token) })).json()).toEqual({
        state: "unknown",
        since: null,
        node: null,
      });
      expect((await report(n.b, { health: [health("web-b", "unhealthy")] })).statusCode).toBe(200);
      // Its first transition is recorded at once.
      expect(await shares(n.a)).toEqual(onlyC());
      const shown = (await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b/health`, headers: bearer(t.token) })).json();
      expect(shown).toMatchObject({ state: "unhealthy", node: n.b.name });
      const after = (await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b`, headers: bearer(t.token) })).json();
      expect(after.etag).toBe(before.etag);
      expect((await nodeOf(n.b)).health).toEqual([expect.objectContaining({ workload: "web-b", state: "unhealthy" })]);

      expect((await report(n.b, { health: [health("web-b", "healthy")] })).statusCode).toBe(200);
      await settles(bothServing());
    });

    it("keeps every backend when all are withdrawn (fail open), and the node's status names the service", async () => {
      await report(n.b, { health: [health("web-b", "unhealthy")] });
      await until("web-b unhealthy", () => app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b/health`, headers: bearer(t.token) }), (r) => r.json().state === "unhealthy");
      await report(n.c, { health: [health("web-c", "unhealthy")] });
      expect(await shares(n.a)).toEqual(bothServing());
      expect((await nodeOf(n.a)).failingOpen).toEqual([`${t.tenant}/web`]);
      await report(n.c, { health: [health("web-c", "healthy")] });
      await settles(onlyC());
      expect((await nodeOf(n.a)).failingOpen).toEqual([]);
      await report(n.b, { health: [health("web-b", "healthy")] });
      await settles(bothServing());
    });

    it("records at most one health transition a second per workload, however fast a node flaps it", async () => {
      const audited = async () =>
        (await app.inject({ url: `/v1/tenants/${t.tenant}/audit`, headers: operator, query: { limit: "1000" } }))
          .json()
          .items.filter((e: { action: string; resource: string }) => e.action === "workload.health" && e.resource === "workload/web-c").length;
      await sleep(1_100); // past the hold-down of web-c's last transition, so the first flip is recorded
      const before = await audited();
      const started = Date.now();
      for (let i = 0; i < 40; i++) {
        await report(n.c, { health: [health("web-c", i % 2 === 0 ? "unhealthy" : "healthy")] });
        await sleep(40);
      }
      const seconds = (Date.now() - started) / 1000;
      const recorded = (await audited()) - before;
      expect(recorded).toBeGreaterThanOrEqual(1);
      expect(recorded).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
      await report(n.c, { health: [health("web-c", "healthy")] });
      await settles(bothServing());
    });

    it("ignores health a node reports for workloads that are not its own", async () => {
      const res = await report(n.a, { health: [health("web-b", "unhealthy"), { ...health("web-c", "unhealthy"), tenant: "no-such-tenant" }] });
      expect(res.statusCode, res.body).toBe(200);
      expect(await shares(n.a)).toEqual(bothServing());
      expect((await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b/health`, headers: bearer(t.token) })).json().state).toBe("healthy");
    });

    it("is not converged while the agent reports an unresolved workload", async () => {
      const desired = (await nodeOf(n.a)).desired;
      const unresolved = [{ tenant: t.tenant, workload: "client", address: address.client, reason: "no veth found" }];
      const stuck = await report(n.a, { appliedRevision: desired.revision, hash: desired.hash, unresolved });
      expect(stuck.json()).toMatchObject({ converged: false, convergedSince: null, unresolved });
      const fine = await report(n.a, { appliedRevision: desired.revision, hash: desired.hash });
      expect(fine.json()).toMatchObject({ converged: true, unresolved: [] });
    });

    it("hands the agent each workload's health check with its defaults, and refuses checks that cannot work", async () => {
      const listed = (await app.inject({ url: `/v1/nodes/${n.b.name}/workloads`, headers: bearer(n.b.credential) })).json().items;
      expect(listed[0].healthCheck).toEqual({ protocol: "tcp", port: 8080, intervalSeconds: 5, timeoutSeconds: 1, healthyThreshold: 2, unhealthyThreshold: 3 });
      const put = (healthCheck: unknown) =>
        putResource(app, t.token, t.tenant, "workloads/web-b", { identity: "web", node: n.b.name, addresses: [address["web-b"]], healthCheck });
      expect(expectProblem(await put({ protocol: "tcp", port: 80, path: "/" }), 422).errors).toEqual([expect.objectContaining({ field: "body.healthCheck.path" })]);
      expect(expectProblem(await put({ protocol: "tcp", port: 80, intervalSeconds: 2, timeoutSeconds: 3 }), 422).errors).toEqual([
        expect.objectContaining({ field: "body.healthCheck.timeoutSeconds" }),
      ]);
      expectProblem(await put({ protocol: "grpc", port: 80 }), 400);
      expectProblem(await put({ protocol: "http", port: 80, path: "no-slash" }), 400);
      const http = await put({ protocol: "http", port: 8080, path: "/healthz" });
      expect(http.statusCode, http.body).toBe(200);
      expect(http.json().healthCheck).toEqual({ protocol: "http", port: 8080, path: "/healthz", expectStatus: 200, intervalSeconds: 5, timeoutSeconds: 1, healthyThreshold: 2, unhealthyThreshold: 3 });
      // Stored health survives a change of the check on the same node; a workload that stops being probed forgets it.
      expect((await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b/health`, headers: bearer(t.token) })).json().state).toBe("healthy");
      const unprobed = await putResource(app, t.token, t.tenant, "workloads/web-b", { identity: "web", node: n.b.name, addresses: [address["web-b"]] });
      expect(unprobed.statusCode).toBe(200);
      expect((await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/web-b/health`, headers: bearer(t.token) })).json().state).toBe("unknown");
      expect((await app.inject({ url: `/v1/tenants/${t.tenant}/workloads/nope/health`, headers: bearer(t.token) })).statusCode).toBe(404);
    });
  });
});
