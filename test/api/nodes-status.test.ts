// Issue 5 item 5, the status half: a node reports what it applied; GET shows
// desired against applied, whether they agree and since when.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, currentRevision, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { registeredNode, uniqueAddress } from "../support/nodes.ts";

describe.each(BACKENDS)("node status on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let node: { name: string; credential: string; podCidr: string };
    beforeAll(async () => {
      app = await startApi(backend);
      node = await registeredNode(app, { zone: "zone-s", labels: { role: "edge" } });
    });
    afterAll(async () => app?.close());

    const report = (body: object, credential = node.credential) =>
      app.inject({ method: "PUT", url: `/v1/nodes/${node.name}/status`, headers: bearer(credential), payload: body });
    const show = async () => {
      const res = await app.inject({ url: `/v1/nodes/${node.name}`, headers: bearer(node.credential) });
      expect(res.statusCode, res.body).toBe(200);
      return res.json();
    };

    it("shows the compiler's desired revision and hash before any report, not converged", async () => {
      const body = await show();
      const current = await app.weft.follower.current(node.name);
      expect(current).not.toBeNull();
      expect(body).toEqual({
        name: node.name,
        zone: "zone-s",
        labels: { role: "edge" },
        podCidr: node.podCidr,
        createdAt: expect.any(String),
        desired: { revision: current!.revision, hash: current!.datapath.hash },
        applied: null,
        converged: false,
        convergedSince: null,
        counters: {},
        errors: [],
        unresolved: [],
        health: [],
        reachable: true,
        unreachableSince: null,
        failingOpen: [],
        transport: null,
        l7: null,
      });
    });

    it("round-trips a report; a stale hash is not converged, the desired one is, and stays so across reports", async () => {
      const { desired } = await show();
      const revision = await currentRevision(app);

      const stale = await report({ appliedRevision: 0, hash: "stale", counters: { drops: 3 }, errors: ["map full"] });
      expect(stale.statusCode, stale.body).toBe(200);
      expect(stale.json()).toMatchObject({ applied: { revision: 0, hash: "stale" }, converged: false, convergedSince: null });
      expect(await show()).toMatchObject({ counters: { drops: 3 }, errors: ["map full"], converged: false });

      const before = Date.now();
      const good = await report({ appliedRevision: desired.revision, hash: desired.hash, counters: { drops: 4, allowed: 10 }, errors: [] });
      expect(good.json()).toMatchObject({ converged: true, counters: { drops: 4, allowed: 10 }, errors: [] });
      const since = good.json().convergedSince as string;
      expect(Date.parse(since)).toBeGreaterThanOrEqual(before - 1000);
      expect(Date.parse(good.json().applied.at)).toBeGreaterThanOrEqual(before - 1000);

      // The same content reported again keeps the instant it was first reached.
      await new Promise((r) => setTimeout(r, 20));
      const again = await report({ appliedRevision: desired.revision, hash: desired.hash, counters: { drops: 5 }, errors: [] });
      expect(again.json()).toMatchObject({ converged: true, convergedSince: since, counters: { drops: 5 } });
      expect(await show()).toMatchObject({ converged: true, convergedSince: since });

      // Diverging clears it; coming back starts a new period.
      expect((await report({ appliedRevision: desired.revision, hash: "other", counters: {}, errors: [] })).json()).toMatchObject({
        converged: false,
        convergedSince: null,
      });
      const back = await report({ appliedRevision: desired.revision, hash: desired.hash, counters: {}, errors: [] });
      expect(back.json().converged).toBe(true);
      expect(Date.parse(back.json().convergedSince)).toBeGreaterThan(Date.parse(since));

      // Observed state, not desired state: reports take no revision and wake no watcher.
      expect(await currentRevision(app)).toBe(revision);
    });

    it("a change of the desired state un-converges the node until it reports the new hash", async () => {
      const { desired } = await show();
      await report({ appliedRevision: desired.revision, hash: desired.hash, counters: {}, errors: [] });
      expect((await show()).converged).toBe(true);

      const t = await tenantWithToken(app, ["write"]);
      await app.inject({ method: "PUT", url: `/v1/tenants/${t.tenant}/identities/web`, headers: bearer(t.token), payload: { path: "/web" } });
      const placed = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${t.tenant}/workloads/web-1`,
        headers: bearer(t.token),
        payload: { identity: "web", node: node.name, addresses: [uniqueAddress(node.podCidr)] },
      });
      expect(placed.statusCode, placed.body).toBe(201);
      const moved = await show();
      expect(moved.desired.hash).not.toBe(desired.hash);
      expect(moved.desired.revision).toBeGreaterThan(desired.revision);
      expect(moved).toMatchObject({ applied: { hash: desired.hash }, converged: false, convergedSince: null });

      const caughtUp = await report({ appliedRevision: moved.desired.revision, hash: moved.desired.hash, counters: {}, errors: [] });
      expect(caughtUp.json()).toMatchObject({ converged: true, convergedSince: expect.any(String) });
    });

    it("the operator sees the same view; bad reports are 400 and change nothing", async () => {
      const mine = await show();
      const theirs = await app.inject({ url: `/v1/nodes/${node.name}`, headers: operator });
      expect(theirs.json()).toEqual(mine);
      for (const bad of [
        { appliedRevision: -1, hash: "h", counters: {}, errors: [] },
        { appliedRevision: 1, hash: "", counters: {}, errors: [] },
        { appliedRevision: 1, hash: "h", counters: { x: 1.5 }, errors: [] },
        { appliedRevision: 1, hash: "h", counters: {}, errors: [{ message: "x" }] },
        { appliedRevision: 1, hash: "h", counters: {} },
      ]) {
        expectProblem(await report(bad), 400);
      }
      expect(await show()).toEqual(mine);
    });

    it("a report without transport keeps the one reported before, a null endpoint included", async () => {
      const { desired } = await show();
      const plain = { appliedRevision: desired.revision, hash: desired.hash, counters: {}, errors: [] };
      // What an agent without a transport reports: off, no endpoint.
      expect((await report({ ...plain, transport: { endpoint: null, state: "off" } })).statusCode).toBe(200);
      const next = await report(plain);
      expect(next.statusCode, next.body).toBe(200);
      expect(next.json().transport).toEqual({ endpoint: null, state: "off" });
      expect((await show()).transport).toEqual({ endpoint: null, state: "off" });
    });

    // Issue 20: reports arriving together are stored in one statement (routes/nodes group-commits them); each
    // node's row must still be its own, with what it left out kept from its own earlier report.
    it("reports of several nodes at once are each stored as their own node's, kept parts included", async () => {
      const others = await Promise.all(Array.from({ length: 6 }, () => registeredNode(app, { zone: "zone-s" })));
      const put = (n: { name: string; credential: string }, body: object) =>
        app.inject({ method: "PUT", url: `/v1/nodes/${n.name}/status`, headers: bearer(n.credential), payload: body });
      const desiredOf = async (n: { name: string }) => (await app.weft.follower.current(n.name))!.datapath.hash;
      // First, each odd node reports a transport endpoint of its own.
      const endpoint = (i: number) => `192.0.2.${10 + i}:15008`;
      for (const [i, n] of others.entries()) {
        if (i % 2 === 1) expect((await put(n, { appliedRevision: 1, hash: "h", counters: {}, errors: [], transport: { endpoint: endpoint(i), state: "running" } })).statusCode).toBe(200);
      }
      // Then all at once: even nodes converged with a transport, odd ones stale and without one (theirs is kept).
      const answers = await Promise.all(
        others.map(async (n, i) =>
          put(n, {
            appliedRevision: 2,
            hash: i % 2 === 0 ? await desiredOf(n) : `stale-${i}`,
            counters: { index: i },
            errors: [`error of ${n.name}`],
            ...(i % 2 === 0 ? { transport: { endpoint: null, state: "off" } } : {}),
          }),
        ),
      );
      for (const [i, n] of others.entries()) {
        const res = answers[i]!;
        expect(res.statusCode, res.body).toBe(200);
        const expected = {
          name: n.name,
          counters: { index: i },
          errors: [`error of ${n.name}`],
          converged: i % 2 === 0,
          transport: i % 2 === 0 ? { endpoint: null, state: "off" } : { endpoint: endpoint(i), state: "running" },
        };
        expect(res.json()).toMatchObject(expected);
        const shown = await app.inject({ url: `/v1/nodes/${n.name}`, headers: operator });
        expect(shown.json()).toMatchObject(expected);
        expect(shown.json().convergedSince === null).toBe(i % 2 === 1);
      }
    });

    it("two reports of one node at once both succeed and both answer what was stored last", async () => {
      const body = (n: number) => ({ appliedRevision: 3, hash: "h", counters: { n }, errors: [] });
      const [a, b] = await Promise.all([report(body(1)), report(body(2))]);
      expect(a!.statusCode, a!.body).toBe(200);
      expect(b!.statusCode, b!.body).toBe(200);
      const stored = (await show()).counters;
      expect([{ n: 1 }, { n: 2 }]).toContainEqual(stored);
      expect(b!.json().counters).toEqual(stored);
    });
  });
});
