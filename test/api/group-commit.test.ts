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
      if (items.includes("bad")) throw new Error(`refused ${items.join(",")}`);
      return items.map((s) => s.toUpperCase());
    });
    const settled = await Promise.allSettled(["a", "bad", "c"].map((s) => commits.submit(s)));
    expect(settled).toEqual([
      { status: "fulfilled", value: "A" },
      { status: "rejected", reason: new Error("refused bad") },
      { status: "fulfilled", value: "C" },
    ]);
    expect(batches).toEqual([["a", "bad", "c"], ["a"], ["bad"], ["c"]]);
    // The queue goes on after a failure.
    expect(await commits.submit("d")).toBe("D");
  });
});
