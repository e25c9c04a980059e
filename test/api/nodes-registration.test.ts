// Issue 5 item 2: one-time join tokens buy node credentials; the operator
// lists, reads and deletes nodes. Only hashes of secrets are stored.
import { asc, eq, inArray, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { secretHash } from "../../api/src/auth/node-credentials.ts";
import { auditLog, changeLog, joinTokens, nodes } from "../../api/src/db/schema.ts";
import { BACKENDS, backendDatabase, bearer, currentRevision, expectProblem, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { joinToken, registeredNode } from "../support/nodes.ts";

describe.each(BACKENDS)("join tokens and node registration on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    const register = (joinToken: string, name = uniqueName("node"), zone = "zone-a") =>
      app.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken, name, zone } });

    it("mints a one-time token with a 10-minute default TTL, storing only its hash", async () => {
      const before = Date.now();
      const res = await app.inject({ method: "POST", url: "/v1/join-tokens", headers: operator, payload: {} });
      expect(res.statusCode).toBe(201);
      const body = res.json();
      expect(body.token).toMatch(/^weft_join_[A-Za-z0-9_-]{43}$/);
      const ttl = Date.parse(body.expiresAt) - before;
      expect(ttl).toBeGreaterThan(599_000);
      expect(ttl).toBeLessThan(601_000 + (Date.now() - before));
      const [row] = await app.weft.db.select().from(joinTokens).where(eq(joinTokens.id, body.id));
      expect(row!.tokenHash).toBe(secretHash(body.token));
      expect(JSON.stringify(row)).not.toContain(body.token);
      // Refused TTLs: zero and more than a day.
      for (const ttlSeconds of [0, 86_401]) {
        expectProblem(await app.inject({ method: "POST", url: "/v1/join-tokens", headers: operator, payload: { ttlSeconds } }), 400);
      }
    });

    it("a dry run mints nothing and shows no token", async () => {
      const revision = await currentRevision(app);
      const res = await app.inject({ method: "POST", url: "/v1/join-tokens?dryRun=true", headers: operator, payload: {} });
      expect(res.statusCode).toBe(201);
      expect(res.json().token).toBeUndefined();
      expect(await app.weft.db.select().from(joinTokens).where(eq(joinTokens.id, res.json().id))).toEqual([]);
      expect(await currentRevision(app)).toBe(revision);
    });

    it("only the operator mints join tokens", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      expectProblem(await app.inject({ method: "POST", url: "/v1/join-tokens", headers: bearer(t.token), payload: {} }), 403);
      const node = await registeredNode(app);
      expectProblem(await app.inject({ method: "POST", url: "/v1/join-tokens", headers: bearer(node.credential), payload: {} }), 403);
      expectProblem(await app.inject({ method: "POST", url: "/v1/join-tokens", payload: {} }), 401);
    });

    it("registers a node once per token: reuse, unknown and expired tokens get the same 401 and write nothing", async () => {
      const { token } = await joinToken(app, { labels: { rack: "r7" } });
      const name = uniqueName("node");
      const res = await app.inject({
        method: "POST",
        url: "/v1/nodes/register",
        payload: { joinToken: token, name, zone: "zone-b" },
      });
      expect(res.statusCode, res.body).toBe(201);
      expect(res.headers.location).toBe(`/v1/nodes/${name}`);
      const { node, credential } = res.json();
      expect(credential).toMatch(/^weft_node_[A-Za-z0-9_-]{43}$/);
      expect(node).toMatchObject({ name, zone: "zone-b", labels: { rack: "r7" }, applied: null, converged: false, convergedSince: null });
      const [row] = await app.weft.db.select().from(nodes).where(eq(nodes.name, name));
      expect(row!.credentialHash).toBe(secretHash(credential));
      expect(JSON.stringify(row)).not.toContain(credential);
      const [spent] = await app.weft.db.select().from(joinTokens).where(eq(joinTokens.tokenHash, secretHash(token)));
      expect(spent).toMatchObject({ usedBy: name, usedAt: expect.any(Date) });

      const expired = await joinToken(app);
      await app.weft.db.update(joinTokens).set({ expiresAt: sql`now() - interval '1 second'` }).where(eq(joinTokens.id, expired.id));
      const revision = await currentRevision(app);
      const details = new Set<string | undefined>();
      for (const refused of [token, expired.token, "weft_join_never-issued"]) {
        const body = expectProblem(await register(refused), 401);
        details.add(body.detail);
      }
      // One answer for all three: no oracle for which tokens exist.
      expect([...details]).toEqual(["join token invalid, expired or already used"]);
      expect(await currentRevision(app)).toBe(revision);
      const [unused] = await app.weft.db.select().from(joinTokens).where(eq(joinTokens.id, expired.id));
      expect(unused!.usedAt).toBeNull();
    });

    it("of concurrent registrations with one token exactly one wins", async () => {
      const { token } = await joinToken(app);
      const names = Array.from({ length: 8 }, () => uniqueName("race"));
      const answers = await Promise.all(names.map((n) => register(token, n)));
      const statuses = answers.map((a) => a.statusCode).sort();
      expect(statuses).toEqual([201, 401, 401, 401, 401, 401, 401, 401]);
      const winner = answers.find((a) => a.statusCode === 201)!.json().node.name as string;
      const created = await app.weft.db.select({ name: nodes.name }).from(nodes).where(inArray(nodes.name, names));
      expect(created).toEqual([{ name: winner }]);
    });

    it("a name already registered is 409, and the conflict does not burn the join token", async () => {
      const existing = await registeredNode(app);
      const { token } = await joinToken(app);
      expectProblem(await register(token, existing.name), 409);
      const retry = await register(token);
      expect(retry.statusCode, retry.body).toBe(201);
    });

    it("a join token fixes the node's labels, and optionally its name and zone; a request asking otherwise is 403 and spends nothing", async () => {
      const name = uniqueName("node");
      const minted = await app.inject({
        method: "POST",
        url: "/v1/join-tokens",
        headers: operator,
        payload: { labels: { rack: "r9", pool: "gpu" }, name, zone: "zone-f" },
      });
      expect(minted.statusCode, minted.body).toBe(201);
      expect(minted.json()).toMatchObject({ labels: { rack: "r9", pool: "gpu" }, name, zone: "zone-f" });
      const [stored] = await app.weft.db.select().from(joinTokens).where(eq(joinTokens.id, minted.json().id));
      expect(stored).toMatchObject({ labels: { rack: "r9", pool: "gpu" }, name, zone: "zone-f" });
      const { token } = minted.json() as { token: string };
      const attempt = (body: Record<string, unknown>) =>
        app.inject({ method: "POST", url: "/v1/nodes/register", payload: { joinToken: token, name, zone: "zone-f", ...body } });

      const revision = await currentRevision(app);
      for (const [body, field] of [
        [{ labels: { rack: "r9" } }, "body.labels"],
        [{ labels: { rack: "r9", pool: "gpu", extra: "x" } }, "body.labels"],
        [{ labels: {} }, "body.labels"],
        [{ name: uniqueName("other") }, "body.name"],
        [{ zone: "zone-g" }, "body.zone"],
      ] as const) {
        const problem = expectProblem(await attempt(body), 403);
        expect(problem.errors?.map((e) => e.field), JSON.stringify(body)).toEqual([field]);
      }
      expect(await currentRevision(app)).toBe(revision);
      const [unspent] = await app.weft.db.select().from(joinTokens).where(eq(joinTokens.id, minted.json().id));
      expect(unspent!.usedAt).toBeNull();

      // The token's own labels, in any order, are accepted.
      const ok = await attempt({ labels: { pool: "gpu", rack: "r9" } });
      expect(ok.statusCode, ok.body).toBe(201);
      expect(ok.json().node).toMatchObject({ name, zone: "zone-f", labels: { rack: "r9", pool: "gpu" } });

      // Refused shapes: a name that is not a DNS label, an empty zone.
      for (const payload of [{ name: "Not_A_Label" }, { zone: "" }, { labels: { k: "x".repeat(254) } }]) {
        expectProblem(await app.inject({ method: "POST", url: "/v1/join-tokens", headers: operator, payload }), 400);
      }
      // A dry run shows what the token would fix.
      const dry = await app.inject({ method: "POST", url: "/v1/join-tokens?dryRun=true", headers: operator, payload: { labels: { a: "b" } } });
      expect(dry.json()).toMatchObject({ labels: { a: "b" }, name: null, zone: null });
      expect(dry.json().token).toBeUndefined();
    });

    it("refuses names that are not DNS labels", async () => {
      const { token } = await joinToken(app);
      expectProblem(await register(token, "Not_A_Label"), 400);
      expect((await register(token)).statusCode).toBe(201);
    });

    it("lists nodes in pages, reads and deletes them, with audit and change log under platform tenant 0", async () => {
      const made = await Promise.all([0, 1, 2].map(() => registeredNode(app, { zone: "zone-l" })));
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const res = await app.inject({ url: `/v1/nodes?limit=2${cursor ? `&cursor=${cursor}` : ""}`, headers: operator });
        expect(res.statusCode).toBe(200);
        const body = res.json() as { items: { name: string }[]; nextCursor: string | null };
        expect(body.items.length).toBeLessThanOrEqual(2);
        seen.push(...body.items.map((n) => n.name));
        cursor = body.nextCursor;
      } while (cursor);
      expect(seen).toEqual([...seen].sort());
      for (const m of made) expect(seen).toContain(m.name);

      const target = made[0]!.name;
      const got = await app.inject({ url: `/v1/nodes/${target}`, headers: operator });
      expect(got.json()).toMatchObject({ name: target, zone: "zone-l", labels: {} });

      const dry = await app.inject({ method: "DELETE", url: `/v1/nodes/${target}?dryRun=true`, headers: operator });
      expect(dry.statusCode).toBe(204);
      expect((await app.inject({ url: `/v1/nodes/${target}`, headers: operator })).statusCode).toBe(200);

      const del = await app.inject({ method: "DELETE", url: `/v1/nodes/${target}`, headers: { ...operator, "x-request-id": `del-${target}` } });
      expect(del.statusCode).toBe(204);
      expectProblem(await app.inject({ url: `/v1/nodes/${target}`, headers: operator }), 404);
      expectProblem(await app.inject({ method: "DELETE", url: `/v1/nodes/${target}`, headers: operator }), 404);

      const audit = await app.weft.db.select().from(auditLog).where(eq(auditLog.resource, `node/${target}`)).orderBy(asc(auditLog.id));
      expect(audit.map((a) => [a.tenantId, a.actor, a.action])).toEqual([
        [0, `node:${target}`, "node.register"],
        [0, "operator", "node.delete"],
      ]);
      // The server's request id, not the client's x-request-id.
      expect(audit[1]!.requestId).toBe(del.headers["x-request-id"]);
      const changes = await app.weft.db.select().from(changeLog).where(eq(changeLog.name, target)).orderBy(asc(changeLog.id));
      expect(changes.map((c) => [c.tenantId, c.kind, c.op])).toEqual([
        [0, "node", "upsert"],
        [0, "node", "delete"],
      ]);
    });

    it("node resources are invisible to tenants: platform audit rows do not show in a tenant's audit log", async () => {
      const t = await tenantWithToken(app, ["admin"]);
      const node = await registeredNode(app);
      const res = await app.inject({ url: `/v1/tenants/${t.tenant}/audit?limit=1000`, headers: bearer(t.token) });
      expect(res.statusCode).toBe(200);
      expect(res.body).not.toContain(node.name);
    });
  });
});
