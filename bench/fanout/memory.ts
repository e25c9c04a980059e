/**
 * What each tracked node costs a replica's heap on the poll path, one
 * command: npm run bench:poll-memory (node --expose-gc). Issue 20 item 1(a):
 * 10,000 nodes of one shared tenant must fit in 300 MB per replica.
 *
 * In process, no database and no HTTP: the live compiler over one tenant
 * with a workload on each of BENCH_NODES nodes (default 1,000 and 10,000),
 * the follower's history (history.ts) and the route's bodies (answers.ts).
 * Heap used after a full GC is read (1) with the rows compiled and no node
 * tracked, (2) once every node's full state was asked for and encoded, as an
 * agent's first fetch does, and (3) after BENCH_WAVES writes that reach every
 * node (a workload more each), every node recompiled and its delta encoded.
 * The figure per node is (3) - (1) over the node count; the bodies' pieces
 * that every node shares are counted once, as they are kept.
 */
import type { FastifyBaseLogger } from "fastify";
import { createCompiler, type Snapshot } from "../../api/src/compiler/index.ts";
import { NodeHistory } from "../../api/src/follower/history.ts";
import { deltaChunks, fullChunks } from "../../api/src/routes/datapath/answers.ts";
import { table } from "../support/load.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with node --expose-gc (npm run bench:poll-memory does)");
const SIZES = (process.env.BENCH_NODES ?? "1000,10000").split(",").map(Number);
const WAVES = Number(process.env.BENCH_WAVES ?? 3);
/** The goal: 300 MB per replica at 10,000 nodes. */
const GOAL_MB_AT_10K = 300;

const heapMiB = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};
const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const quiet = { error() {}, warn() {}, info() {}, debug() {} } as unknown as FastifyBaseLogger;

async function measure(nodes: number): Promise<(string | number)[]> {
  const names = Array.from({ length: nodes }, (_, i) => `n${i}`);
  const snapshot: Snapshot = {
    tenants: [{ id: 1, name: "fleet", defaultAction: "allow" }],
    identities: [{ tenantId: 1, name: "web", numericId: 256, labels: {} }],
    workloads: names.map((node, i) => ({ tenantId: 1, name: `w${i}`, identity: "web", node, addresses: [address(i + 1)] })),
    services: [],
    policies: [],
    nodes: names.map((name) => ({ name, zone: "z" })),
    backendIds: new Map(),
    cidrIdentities: new Map(),
  };
  const compiler = createCompiler(snapshot);
  let revision = 1;
  const known = new Set(names);
  const history = new NodeHistory({ appliedRevision: () => revision, hasNode: (n) => known.has(n), compileNode: (n) => compiler.compileNode(n) }, quiet, 64);
  const base = heapMiB();
  let bytes = 0;
  for (const n of names) bytes += fullChunks(history.state(n)!).reduce((sum, c) => sum + c.length, 0);
  const tracked = heapMiB();
  const started = performance.now();
  for (let wave = 1; wave <= WAVES; wave++) {
    const before = revision;
    compiler.apply({ kind: "workload", op: "put", row: { tenantId: 1, name: `extra${wave}`, identity: "web", node: names[0]!, addresses: [address(nodes + wave)] } });
    revision++;
    history.recordLater(null, revision);
    // The slices run on the event loop: let them, then ask every node for its delta as its woken poll would.
    while (history.state(names.at(-1)!)!.revision !== revision) await new Promise((r) => setImmediate(r));
    for (const n of names) {
      const d = history.delta(n, before);
      if (d === null || d === "gone") throw new Error(`no delta for ${n}`);
      deltaChunks(d);
    }
  }
  const waveMs = (performance.now() - started) / WAVES;
  const after = heapMiB();
  const perNodeKiB = ((after - base) * 1024) / nodes;
  return [
    nodes,
    (bytes / nodes / 1024).toFixed(0),
    base.toFixed(1),
    tracked.toFixed(1),
    after.toFixed(1),
    perNodeKiB.toFixed(2),
    ((perNodeKiB * 10_000) / 1024).toFixed(0),
    waveMs.toFixed(0),
  ];
}

const rows: (string | number)[][] = [
  ["nodes", "full body KiB", "heap rows MiB", "heap tracked MiB", `heap after ${WAVES} waves MiB`, "KiB per node", "x 10,000 nodes MiB", "ms per wave (compile+delta)"],
];
for (const n of SIZES) rows.push(await measure(n));
console.log(`\nbench/fanout/memory: heap per tracked node on the poll path (goal: under ${GOAL_MB_AT_10K} MB per replica at 10,000 nodes)\n`);
console.log(table(rows));
