import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, uniqueName } from "../support/api.ts";

describe.each(BACKENDS)("audit and change logs on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    const revisionOf = (etag: unknown) => Number(String(etag).replace(/"/g, ""));

    it("audits every write with actor, action, resource, request id and revision", async () => {
      const tenant = uniqueName("aud");
      const created = await app.inject({
        method: "PUT",
        url: `/v1/tenants/${tenant}`,
        headers: { ...operator, "x-request-id": "req-create" },
        payload: {},
      });
      const minted = await app.inject({
        method: "POST",
        url: `/v1/tenants/${tenant}/tokens`,
        headers: { ...operator, "x-request-id": "req-mint-1" },
        payload: { name: "admin", scopes: ["admin"] },
      });
      const admin = minted.json() as { id: string; token: string };
      const second = await app.inject({
        method: "POST",
        url: `/v1/tenants/${tenant}/tokens`,
        headers: { ...bearer(admin.token), "x-request-id": "req-mint-2" },
        payload: { name: "reader", scopes: ["read"] },
      });
      const reader = second.json() as { id: string };
      const revoked = await app.inject({
        method: "DELETE",
        url: `/v1/tenants/${tenant}/tokens/${reader.id}`,
        headers: { ...bearer(admin.token), "x-request-id": "req-revoke" },
      });
      expect([created.statusCode, minted.statusCode, second.statusCode, revoked.statusCode]).toEqual([201, 201, 201, 204]);
      // The audit log names each write by the server's request id (the x-request-id it answered), with the client's beside it.
      const [reqCreate, reqMint1, reqMint2, reqRevoke] = [created, minted, second, revoked].map((r) => r.headers["x-request-id"] as string);
      expect(new Set([reqCreate, reqMint1, reqMint2, reqRevoke]).size).toBe(4);

      const audit = await app.inject({ url: `/v1/tenants/${tenant}/audit`, headers: bearer(admin.token) });
      expect(audit.statusCode).toBe(200);
      const { items: all, nextCursor } = audit.json();
      expect(nextCursor).toBeNull();
      // Other resources (the tenant's CA) may be written alongside; these are the tenant and token writes.
      const items = all.filter((e: { resource: string }) => /^(tenant|token)\//.test(e.resource));
      expect(items.map(({ id: _id, at: _at, revision: _rev, ...rest }: Record<string, unknown>) => rest)).toEqual([
        { actor: "operator", action: "tenant.create", resource: `tenant/${tenant}`, requestId: reqCreate, clientRequestId: "req-create" },
        { actor: "operator", action: "token.create", resource: `token/${admin.id}`, requestId: reqMint1, clientRequestId: "req-mint-1" },
        { actor: `token:${admin.id}`, action: "token.create", resource: `token/${reader.id}`, requestId: reqMint2, clientRequestId: "req-mint-2" },
        { actor: `token:${admin.id}`, action: "token.revoke", resource: `token/${reader.id}`, requestId: reqRevoke, clientRequestId: "req-revoke" },
      ]);
      expect(items[0].revision).toBe(revisionOf(created.headers.etag));
      const revisions = items.map((e: { revision: number }) => e.revision);
      expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
      expect(new Set(revisions).size).toBe(4);
      for (const e of all) expect([reqCreate, reqMint1, reqMint2, reqRevoke]).toContain(e.requestId);
      for (const e of items) expect(Date.parse(e.at)).not.toBeNaN();
    });

    it("answers changes after a revision, only later ones, in commit order", async () => {
      const tenant = uniqueName("chg");
      const put = (displayName: string) =>
        app.inject({ method: "PUT", url: `/v1/tenants/${tenant}`, headers: operator, payload: { displayName } });
      const r1 = revisionOf((await put("a")).headers.etag);
      const r2 = revisionOf((await put("b")).headers.etag);
      const token = (
        await app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: operator, payload: { name: "x", scopes: ["read"] } })
      ).json() as { id: string; token: string };
      await app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/tokens/${token.id}`, headers: operator });
      // Another tenant's writes never show up here.
      await app.inject({ method: "PUT", url: `/v1/tenants/${uniqueName("other")}`, headers: operator, payload: {} });

      const changes = (since: number, extra = "") =>
        app.inject({ url: `/v1/tenants/${tenant}/changes?since=${since}${extra}`, headers: operator });
      type Change = { revision: number; kind: string; name: string; op: string };
      const ours = (c: Change) => c.kind === "tenant" || c.kind === "token";
      const all = ((await changes(0)).json().items as Change[]).filter(ours);
      expect(all.map(({ kind, name, op }) => ({ kind, name, op }))).toEqual([
        { kind: "tenant", name: tenant, op: "upsert" },
        { kind: "tenant", name: tenant, op: "upsert" },
        { kind: "token", name: token.id, op: "upsert" },
        { kind: "token", name: token.id, op: "delete" },
      ]);
      expect(all[0]!.revision).toBe(r1);
      expect(all[1]!.revision).toBe(r2);
      expect(all[2]!.revision).toBeGreaterThan(r2);
      expect(all[3]!.revision).toBeGreaterThan(all[2]!.revision);

      expect((await changes(r1)).json().items.filter(ours)).toEqual(all.slice(1));
      expect((await changes(r2)).json().items.filter(ours)).toEqual(all.slice(2));
      for (const since of [r1, r2]) {
        for (const c of (await changes(since)).json().items as Change[]) expect(c.revision).toBeGreaterThan(since);
      }
      expect((await changes(all[3]!.revision)).json()).toEqual({ items: [], nextCursor: null });

      const paged: unknown[] = [];
      let cursor: string | null = null;
      do {
        const body: { items: unknown[]; nextCursor: string | null } = (await changes(r1, `&limit=1${cursor ? `&cursor=${cursor}` : ""}`)).json();
        paged.push(...body.items);
        cursor = body.nextCursor;
      } while (cursor !== null);
      expect(paged).toEqual((await changes(r1)).json().items);
    });

    it("lets a read token follow the changes but not read the audit log", async () => {
      const tenant = uniqueName("rd");
      await app.inject({ method: "PUT", url: `/v1/tenants/${tenant}`, headers: operator, payload: {} });
      const { token } = (
        await app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: operator, payload: { name: "r", scopes: ["read"] } })
      ).json();
      expect((await app.inject({ url: `/v1/tenants/${tenant}/changes`, headers: bearer(token) })).statusCode).toBe(200);
      expect((await app.inject({ url: `/v1/tenants/${tenant}/audit`, headers: bearer(token) })).statusCode).toBe(403);
    });
  });
});
