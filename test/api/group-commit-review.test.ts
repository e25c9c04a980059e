// Review of db/group-commit.ts against what the database really throws and how it fails: drizzle wraps the
// driver's error (the SQLSTATE is on its cause), an outage can begin while a refused batch is written again
// item by item, and a write can hang (a frozen server, a row lock nobody releases).
import { DrizzleQueryError } from "drizzle-orm/errors";
import { describe, expect, it } from "vitest";
import * as groupCommit from "../../api/src/db/group-commit.ts";

// A namespace import: on a tree without GroupCommitTimeout the other tests still run (and fail on their own).
const { GroupCommit, refusedByStatement } = groupCommit;

const pgError = (code: string, message = `error ${code}`) => Object.assign(new Error(message), { code });
const wrapped = (code: string) => new DrizzleQueryError("update nodes ...", [], pgError(code));

describe("refusedByStatement", () => {
  it("reads the SQLSTATE under drizzle's DrizzleQueryError, as the HTTP error handler does", () => {
    for (const code of ["22P05", "22003", "23503", "40P01", "55P03"]) expect(refusedByStatement(wrapped(code)), code).toBe(true);
    for (const code of ["08006", "53300", "57P01", "58030", "XX000"]) expect(refusedByStatement(wrapped(code)), code).toBe(false);
    expect(refusedByStatement(new DrizzleQueryError("select 1", [], new Error("Connection terminated unexpectedly")))).toBe(false);
  });
});

describe("group commit during faults", () => {
  it("a refused batch written again item by item stops at the first item that fails for want of the database", async () => {
    const writes: number[][] = [];
    const commits = new GroupCommit(async (items: number[]) => {
      writes.push(items);
      if (items.length > 1) throw wrapped("22P05"); // refused: one bad item in it
      throw pgError("57P01", "terminating connection due to administrator command"); // then the server goes away
    });
    const settled = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => commits.submit(i)));
    expect(settled.every((s) => s.status === "rejected" && /administrator command/.test((s.reason as Error).message))).toBe(true);
    // The whole batch, then one item: not one wait for the database per item while the queue behind grows.
    expect(writes.map((w) => w.length)).toEqual([50, 1]);
  });

  it("a write that hangs fails its callers, and every caller queued behind it, after maxWaitMs; the queue goes on once it returns", async () => {
    let release!: () => void;
    const hung = new Promise<void>((r) => (release = r));
    const written: number[] = [];
    let first = true;
    const commits = new GroupCommit(
      async (items: number[]) => {
        if (first) {
          first = false;
          await hung;
        }
        written.push(...items);
        return items;
      },
      256,
      200,
    );
    const inFlight = commits.submit(1);
    await new Promise((r) => setImmediate(r));
    const queued = [2, 3].map((n) => commits.submit(n));
    for (const p of [inFlight, ...queued]) await expect(p).rejects.toBeInstanceOf(groupCommit.GroupCommitTimeout);
    release();
    expect(await commits.submit(4)).toBe(4);
    // The callers that were told it failed and had not been written are not written later.
    expect(written).toEqual([1, 4]);
  });
});
