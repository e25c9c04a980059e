// Issue 20: writes that arrive together share one transaction (db/group-commit.ts), each caller
// answered with its own result, and one bad item fails only its own caller.
import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../api/src/db/group-commit.ts";

describe("group commit", () => {
  it("items submitted in one turn go in one batch, each answered with its own result", async () => {
    const batches: number[][] = [];
    const commits = new GroupCommit(async (items: number[]) => {
      batches.push(items);
      return items.map((n) => n * 10);
    });
    const answers = await Promise.all([1, 2, 3, 4].map((n) => commits.submit(n)));
    expect(answers).toEqual([10, 20, 30, 40]);
    expect(batches).toEqual([[1, 2, 3, 4]]);
  });

  it("items arriving while a batch is written wait for the next one; no batch exceeds its bound", async () => {
    const batches: number[][] = [];
    let release!: () => void;
    const first = new Promise<void>((r) => (release = r));
    const commits = new GroupCommit(async (items: number[]) => {
      batches.push(items);
      if (batches.length === 1) await first;
      return items;
    }, 3);
    const early = commits.submit(0);
    await new Promise((r) => setImmediate(r));
    const later = [1, 2, 3, 4, 5].map((n) => commits.submit(n));
    release();
    expect(await Promise.all([early, ...later])).toEqual([0, 1, 2, 3, 4, 5]);
    expect(batches).toEqual([[0], [1, 2, 3], [4, 5]]);
  });

  it("a batch that fails is written item by item: only the bad item's caller sees the error", async () => {
    const batches: string[][] = [];
    const commits = new GroupCommit(async (items: string[]) => {
      batches.push(items);
      if (items.includes("bad")) throw Object.assign(new Error(`refused ${items.join(",")}`), { code: "22P02" });
      return items.map((s) => s.toUpperCase());
    });
    const settled = await Promise.allSettled(["a", "bad", "c"].map((s) => commits.submit(s)));
    expect(settled.map((s) => (s.status === "fulfilled" ? s.value : (s.reason as Error).message))).toEqual(["A", "refused bad", "C"]);
    expect(batches).toEqual([["a", "bad", "c"], ["a"], ["bad"], ["c"]]);
    // The queue goes on after a failure.
    expect(await commits.submit("d")).toBe("D");
  });
});

describe("group commit without the database", () => {
  it("a batch that failed for want of the database fails as a whole, without a retry per item", async () => {
    let calls = 0;
    const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const shutdown = Object.assign(new Error("terminating connection due to administrator command"), { code: "57P01" });
    for (const err of [down, shutdown, new Error("timeout exceeded when trying to connect")]) {
      calls = 0;
      const commits = new GroupCommit(async (items: number[]) => {
        calls++;
        if (items.length > 0) throw err;
        return items;
      });
      const settled = await Promise.allSettled([1, 2, 3].map((n) => commits.submit(n)));
      expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected", "rejected"]);
      expect(calls).toBe(1);
    }
  });

  it("a statement's refusal (a SQLSTATE of a data or constraint error) is retried item by item", async () => {
    let calls = 0;
    const commits = new GroupCommit(async (items: number[]) => {
      calls++;
      if (items.includes(2)) throw Object.assign(new Error("violates check constraint"), { code: "23514" });
      return items;
    });
    const settled = await Promise.allSettled([1, 2, 3].map((n) => commits.submit(n)));
    expect(settled.map((s) => s.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(calls).toBe(4);
  });
});
