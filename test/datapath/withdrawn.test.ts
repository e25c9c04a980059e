/**
 * Backends withdrawn by health and node liveness, fail open, and zones:
 * slot tables worked out by hand, and the memoizing compiler agreeing with a
 * fresh compile after each liveness or health change.
 */
import { describe, expect, it } from "vitest";
import { compileNode, createCompiler } from "../../api/src/compiler/compile.ts";
import type { IdentityRow, NodeRow, ServiceRow, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { snapshot } from "./support.ts";

const acme: TenantRow = { id: 1, name: "acme", defaultAction: "allow" };
const identities: IdentityRow[] = [
  { tenantId: 1, name: "client", numericId: 300, labels: { app: "client" } },
  { tenantId: 1, name: "web", numericId: 301, labels: { app: "web" } },
];
const nodes: NodeRow[] = [
  { name: "a", zone: "z1" },
  { name: "b", zone: "z1" },
  { name: "c", zone: "z2" },
];
const client: WorkloadRow = { tenantId: 1, name: "client", identity: "client", node: "a", addresses: ["198.19.1.2"] };
const clientZ2: WorkloadRow = { tenantId: 1, name: "client-z2", identity: "client", node: "c", addresses: ["198.19.3.3"] };
const webB: WorkloadRow = { tenantId: 1, name: "web-b", identity: "web", node: "b", addresses: ["198.19.2.2"] };
const webC: WorkloadRow = { tenantId: 1, name: "web-c", identity: "web", node: "c", addresses: ["198.19.3.2"] };

const weighted: ServiceRow = {
  id: 5,
  tenantId: 1,
  name: "web",
  vip: "198.18.200.1",
  ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
  backends: {
    explicit: [
      { workload: "web-b", weight: 90 },
      { workload: "web-c", weight: 10 },
    ],
  },
  loadBalancing: "random",
  preferSameZone: false,
};
const zoned: ServiceRow = { ...weighted, id: 6, name: "web-zoned", vip: "198.18.200.2", backends: { selector: { labels: { app: "web" } } }, preferSameZone: true };

const cluster = (more: Partial<Snapshot> = {}): Snapshot =>
  snapshot({ tenants: [acme], identities, nodes, workloads: [client, clientZ2, webB, webC], services: [weighted, zoned], ...more });

/** Slots per backend address of one service, as node `node` holds them. */
function shares(snap: Snapshot, node: string, vip: string): Record<string, number> {
  const out = compileNode(snap, node).maps;
  const svc = out.svc.find((e) => e.key.vip === vip)!;
  const address = new Map(out.backend.map((e) => [e.key.backendId, e.value.address]));
  const counts: Record<string, number> = {};
  for (const e of out.lb_slot) {
    if (e.key.tableId !== svc.value.tableId) continue;
    const a = address.get(e.value.backendId)!;
    counts[a] = (counts[a] ?? 0) + 1;
  }
  return counts;
}

describe("withdrawn backends", () => {
  it("an unhealthy workload gets no slots while another backend serves", () => {
    const snap = cluster({ workloads: [client, clientZ2, { ...webB, unhealthy: true }, webC] });
    expect(shares(snap, "a", weighted.vip)).toEqual({ "198.19.3.2": 1 });
    expect(compileNode(snap, "a").failingOpen).toEqual([]);
  });

  it("a node marked unreachable withdraws the backends of every workload on it", () => {
    const snap = cluster({ nodes: [nodes[0]!, { ...nodes[1]!, unreachable: true }, nodes[2]!] });
    expect(shares(snap, "a", weighted.vip)).toEqual({ "198.19.3.2": 1 });
    expect(shares(cluster(), "a", weighted.vip)).toEqual({ "198.19.2.2": 9, "198.19.3.2": 1 });
  });

  it("every backend withdrawn: all keep their slots (fail open) and the node's datapath says which service", () => {
    const snap = cluster({ workloads: [client, clientZ2, { ...webB, unhealthy: true }, { ...webC, unhealthy: true }] });
    expect(shares(snap, "a", weighted.vip)).toEqual({ "198.19.2.2": 9, "198.19.3.2": 1 });
    expect(compileNode(snap, "a").failingOpen).toEqual(["acme/web", "acme/web-zoned"]);
  });

  it("weight 0 stays without slots even when failing open", () => {
    const zero: ServiceRow = { ...weighted, backends: { explicit: [{ workload: "web-b", weight: 0 }, { workload: "web-c", weight: 10 }] } };
    const snap = cluster({ services: [zero], workloads: [client, clientZ2, webB, { ...webC, unhealthy: true }] });
    expect(shares(snap, "a", weighted.vip)).toEqual({ "198.19.3.2": 1 });
  });

  it("preferSameZone: z2 reaches z2's backend, and z1's when z2's is unhealthy", () => {
    expect(shares(cluster(), "c", zoned.vip)).toEqual({ "198.19.3.2": 1 });
    expect(shares(cluster(), "a", zoned.vip)).toEqual({ "198.19.2.2": 1 });
    const sick = cluster({ workloads: [client, clientZ2, webB, { ...webC, unhealthy: true }] });
    expect(shares(sick, "c", zoned.vip)).toEqual({ "198.19.2.2": 1 });
  });

  it("the memoizing compiler follows liveness and health changes exactly as a fresh compile", () => {
    const compiler = createCompiler(cluster());
    const same = (snap: Snapshot) => {
      for (const n of ["a", "b", "c"]) {
        const memo = compiler.compileNode(n);
        const fresh = compileNode(snap, n);
        expect(memo.hash).toBe(fresh.hash);
        expect(memo.failingOpen).toEqual(fresh.failingOpen);
      }
    };
    compiler.compileNode("a");
    compiler.compileNode("c");
    compiler.apply({ kind: "node", op: "put", row: { ...nodes[1]!, unreachable: true } });
    same(cluster({ nodes: [nodes[0]!, { ...nodes[1]!, unreachable: true }, nodes[2]!] }));
    compiler.apply({ kind: "workload", op: "put", row: { ...webC, unhealthy: true } });
    same(cluster({ nodes: [nodes[0]!, { ...nodes[1]!, unreachable: true }, nodes[2]!], workloads: [client, clientZ2, webB, { ...webC, unhealthy: true }] }));
    compiler.apply({ kind: "node", op: "put", row: nodes[1]! });
    same(cluster({ workloads: [client, clientZ2, webB, { ...webC, unhealthy: true }] }));
    compiler.apply({ kind: "workload", op: "put", row: webC });
    same(cluster());
  });
});
