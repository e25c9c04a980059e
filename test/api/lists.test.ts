import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { encodeCursor } from "../../api/src/http/conventions.ts";
import { BACKENDS, backendDatabase, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

const TOKENS = 103;

describe.each(BACKENDS)("lists on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let tenant: string;
    const minted: string[] = [];
    const list = (query: string) => app.inject({ url: `/v1/tenants/${tenant}/tokens${query}`, headers: operator });

    beforeAll(async () => {
      app = await startApi(backend);
      ({ tenant } = await tenantWithToken(app, ["admin"]));
      minted.push((await list("?limit=1")).json().items[0].id);
      for (let i = minted.length; i < TOKENS; i++) {
        const res = await app.inject({
          method: "POST",
          url: `/v1/tenants/${tenant}/tokens`,
          headers: operator,
          payload: { name: `tok-${i}`, scopes: ["read"] },
        });
        minted.push(res.json().id);
      }
    });
    afterAll(async () => app?.close());

    it("answers 100 items by default, with a cursor to the rest", async () => {
      const res = await list("");
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.items).toHaveLength(100);
      expect(body.nextCursor).toEqual(expect.any(String));
      const rest = (await list(`?cursor=${body.nextCursor}`)).json();
      expect(rest.items).toHaveLength(TOKENS - 100);
      expect(rest.nextCursor).toBeNull();
    });

    it("takes a limit up to 1000 and refuses 1001 and 0", async () => {
      const all = (await list("?limit=1000")).json();
      expect(all.items).toHaveLength(TOKENS);
      expect(all.nextCursor).toBeNull();
      for (const limit of ["1001", "0", "-1", "ten"]) {
        const body = expectProblem(await list(`?limit=${limit}`), 400);
        expect(body.errors).toEqual([{ field: "query.limit", message: expect.any(String) }]);
      }
    });

    it("walks every item exactly once with the cursor", async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await list(`?limit=7${cursor ? `&cursor=${cursor}` : ""}`);
        expect(res.statusCode).toBe(200);
        const body = res.json() as { items: { id: string }[]; nextCursor: string | null };
        expect(body.items.length).toBeLessThanOrEqual(7);
        seen.push(...body.items.map((t) => t.id));
        cursor = body.nextCursor;
        pages++;
      } while (cursor !== null && pages < 100);
      expect(pages).toBe(Math.ceil(TOKENS / 7));
      expect(seen).toHaveLength(TOKENS);
      expect(new Set(seen)).toEqual(new Set(minted));
    });

    it("walks the operator's tenant list in name order without repeats", async () => {
      const names: string[] = [];
      let cursor: string | null = null;
      do {
        const body: { items: { name: string }[]; nextCursor: string | null } = (await app.inject({ url: `/v1/tenants?limit=50${cursor ? `&cursor=${cursor}` : ""}`, headers: operator })).json();
        names.push(...body.items.map((t: { name: string }) => t.name));
        cursor = body.nextCursor;
      } while (cursor !== null);
      expect(names).toContain(tenant);
      expect(new Set(names).size).toBe(names.length);
      expect([...names].sort()).toEqual(names);
    });

    it("refuses a cursor it did not issue with 400 naming query.cursor", async () => {
      const forged = [
        "not-base64-json",
        Buffer.from("{}").toString("base64url"),
        encodeCursor(42), // a number where this list keys by id string
        Buffer.from(JSON.stringify(["a", "b"])).toString("base64url"),
      ];
      for (const cursor of forged) {
        const body = expectProblem(await list(`?cursor=${encodeURIComponent(cursor)}`), 400);
        expect(body.errors).toEqual([{ field: "query.cursor", message: "must be a nextCursor value from a previous page" }]);
      }
      const audit = await app.inject({ url: `/v1/tenants/${tenant}/audit?cursor=${encodeCursor("x")}`, headers: operator });
      expectProblem(audit, 400);
    });
  });
});
