// Issue 20 item 1(c): after a pull, the history recompiles the nodes it
// reached in slices that yield to the event loop, so that 10,000 tracked
// nodes never hold the loop for one long synchronous pass; a node asked
// about before its turn is compiled at once, so no read is staler than the pull.
import type { FastifyBaseLogger } from "fastify";
import { describe, expect, it } from "vitest";
import { createCompiler, type Snapshot } from "../../api/src/compiler/index.ts";
import { NodeHistory } from "../../api/src/follower/history.ts";
import { untilHolds } from "../support/until.ts";

const quiet = { error() {}, warn() {}, info() {}, debug() {} } as unknown as FastifyBaseLogger;
const NODES = 600;
/** Each compile takes at least this long, so one pass over every node would hold the loop for NODES x this. */
const COMPILE_MS = 0.5;

function fleet() {
  const names = Array.from({ length: NODES }, (_, i) => `n${i}`);
  const snapshot: Snapshot = {
    tenants: [{ id: 1, name: "fleet", defaultAction: "allow" }],
    identities: [{ tenantId: 1, name: "web", numericId: 256, labels: {} }],
    workloads: names.map((node, i) => ({ tenantId: 1, name: `w${i}`, identity: "web", node, addresses: [`10.${1 + (i >> 8)}.${i & 255}.1`] })),
    services: [],
    policies: [],
    nodes: names.map((name) => ({ name, zone: "z" })),
    backendIds: new Map(),
    cidrIdentities: new Map(),
  };
  const compiler = createCompiler(snapshot);
  let revision = 1;
  let compiles = 0;
  const history = new NodeHistory(
    {
      appliedRevision: () => revision,
      hasNode: (n) => names.includes(n),
      compileNode: (n) => {
        compiles++;
        const until = performance.now() + COMPILE_MS;
        while (performance.now() < until);
        return compiler.compileNode(n);
      },
    },
    quiet,
    64,
  );
  for (const n of names) history.state(n);
  /** A write reaching every node: a workload more of the tenant, applied as a pull would. */
  const write = () => {
    compiler.apply({ kind: "workload", op: "put", row: { tenantId: 1, name: `extra${revision}`, identity: "web", node: "n0", addresses: [`10.9.0.${revision}`] } });
    revision++;
    compiles = 0;
    history.recordLater(null, revision);
    return revision;
  };
  return { names, history, write, compiles: () => compiles };
}

describe("the history after a pull", () => {
  it("recompiles reached nodes in slices: the loop runs between them, and every held poll is woken", async () => {
    const { names, history, write, compiles } = fleet();
    const before = history.state("n1")!.revision;
    const polls = names.map((n) => history.waitForChange(n, before, 10_000));
    const started = performance.now();
    let longestGapMs = 0;
    let last = started;
    let ticks = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      longestGapMs = Math.max(longestGapMs, now - last);
      last = now;
      ticks++;
    }, 1);
    const revision = write();
    expect(compiles()).toBe(0);
    try {
      expect(await Promise.all(polls)).toEqual(names.map(() => true));
    } finally {
      clearInterval(ticker);
    }
    const totalMs = performance.now() - started;
    expect(compiles()).toBe(NODES);
    // One pass would have held the loop for the whole ≥ 300 ms; slices end past 8 ms or 64 woken polls.
    expect(totalMs).toBeGreaterThan(NODES * COMPILE_MS);
    expect(ticks).toBeGreaterThan(3);
    expect(longestGapMs).toBeLessThan((NODES * COMPILE_MS) / 2);
    for (const n of names) expect(history.state(n)!.revision).toBe(revision);
  });

  it("compiles a node asked about before its turn at once: its state and delta are the pull's", async () => {
    const { names, history, write, compiles } = fleet();
    const before = history.state("n1")!.revision;
    const revision = write();
    const lastInLine = names.at(-1)!;
    expect(history.state(lastInLine)!.revision).toBe(revision);
    expect(compiles()).toBe(1);
    const delta = history.delta(lastInLine, before);
    if (delta === null || delta === "gone") throw new Error("no delta");
    expect(delta.revision).toBe(revision);
    expect(delta.delta.upserts.ipcache).toHaveLength(1);
    // The rest follow in their slices, and the node already done is not compiled twice.
    await untilHolds("every node recompiled", compiles, (n) => n >= NODES);
    await new Promise((r) => setTimeout(r, 50));
    expect(compiles()).toBe(NODES);
  });
});
