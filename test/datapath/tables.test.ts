/** Compiler output checked entry by entry for small cases worked out by hand. */
import { describe, expect, it } from "vitest";
import { compileNode } from "../../api/src/compiler/compile.ts";
import { createEvaluator } from "./evaluate.ts";
import type { IdentityRow, PolicyRow, ServiceRow, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { snapshot, throughCodec } from "./support.ts";

const acme: TenantRow = { id: 1, name: "acme", defaultAction: "allow" };
const identities: IdentityRow[] = [
  { tenantId: 1, name: "web", numericId: 256, labels: { app: "web", tier: "front" } },
  { tenantId: 1, name: "db", numericId: 257, labels: { app: "db" } },
  { tenantId: 1, name: "batch", numericId: 258, labels: { app: "batch" } },
];
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "web-1", identity: "web", node: "n1", addresses: ["10.0.0.1"] },
  { tenantId: 1, name: "db-1", identity: "db", node: "n1", addresses: ["10.0.0.2"] },
  { tenantId: 1, name: "batch-1", identity: "batch", node: "n2", addresses: ["10.0.0.3"] },
];
const nodes = [
  { name: "n1", zone: "a" },
  { name: "n2", zone: "b" },
  { name: "n3", zone: "c" },
];
const platform = (more: Partial<Snapshot>): Snapshot => snapshot({ tenants: [acme], identities, workloads, nodes, ...more });
const dbPolicy = (ingress: PolicyRow["ingress"]): PolicyRow => ({ id: 1, tenantId: 1, name: "db", subject: { identity: "db" }, ingress });
const marker = (local: number, direction: "ingress" | "egress") => ({
  key: { localIdentity: local, remoteIdentity: 0, port: 0, protocol: 0, direction },
  value: { action: "default-deny", ruleId: 0 },
});
const rule = (local: number, remote: number, port: number, protocol: number, direction: "ingress" | "egress", action: string, ruleId: number) => ({
  key: { localIdentity: local, remoteIdentity: remote, port, protocol, direction },
  value: { action, ruleId },
});

describe("policy tables", () => {
  it("one allow rule: a marker for the selected direction and one exact entry", () => {
    const out = compileNode(platform({ policies: [dbPolicy([{ peers: [{ identity: "web" }], ports: [{ port: 5432, protocol: "tcp" }], action: "allow" }])] }), "n1");
    expect(out.maps.policy).toEqual([marker(257, "ingress"), rule(257, 256, 5432, 6, "ingress", "allow", 256)]);
    expect(out.maps.endpoint).toEqual([
      { key: { address: "10.0.0.1" }, value: { identity: 256, tenant: 1 } },
      { key: { address: "10.0.0.2" }, value: { identity: 257, tenant: 1 } },
    ]);
    // Peers on other nodes are in the ipcache too: batch-1 runs on n2.
    expect(out.maps.ipcache.map((e) => e.key.prefix)).toEqual(["10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32"]);
  });

  it("a deny overrides a broader allow, and a broader deny overrides a narrower allow", () => {
    const narrowDeny = compileNode(
      platform({
        policies: [
          dbPolicy([
            { peers: [], ports: [], action: "allow" },
            { peers: [{ identity: "web" }], ports: [{ port: 22, protocol: "tcp" }], action: "deny" },
          ]),
        ],
      }),
      "n1",
    );
    // The any/any allow takes the marker's key; the deny stays exact.
    expect(narrowDeny.maps.policy).toEqual([rule(257, 0, 0, 0, "ingress", "allow", 256), rule(257, 256, 22, 6, "ingress", "deny", 257)]);

    const broadDeny = compileNode(
      platform({
        policies: [
          dbPolicy([
            { peers: [{ identity: "web" }], ports: [{ port: 5432, protocol: "tcp" }], action: "allow" },
            { peers: [], ports: [{ protocol: "tcp" }], action: "deny" },
          ]),
        ],
      }),
      "n1",
    );
    // The allow's own key is rewritten as a deny: the datapath's most specific hit must not be an allow.
    expect(broadDeny.maps.policy).toEqual([
      marker(257, "ingress"),
      rule(257, 0, 0, 6, "ingress", "deny", 257),
      rule(257, 256, 5432, 6, "ingress", "deny", 257),
    ]);
    const decide = createEvaluator(throughCodec(broadDeny.maps));
    expect(decide({ local: "10.0.0.2", remote: "10.0.0.1", port: 5432, protocol: 6, direction: "ingress" }).reason).toBe("policy-deny");
    expect(decide({ local: "10.0.0.2", remote: "10.0.0.1", port: 5432, protocol: 17, direction: "ingress" }).reason).toBe("default-deny");
  });

  it("a port selector without a port is a wildcard port for that protocol", () => {
    const out = compileNode(platform({ policies: [dbPolicy([{ peers: [{ labels: { tier: "front" } }], ports: [{ protocol: "udp" }], action: "allow" }])] }), "n1");
    expect(out.maps.policy).toEqual([marker(257, "ingress"), rule(257, 256, 0, 17, "ingress", "allow", 256)]);
    const decide = createEvaluator(throughCodec(out.maps));
    expect(decide({ local: "10.0.0.2", remote: "10.0.0.1", port: 53, protocol: 17, direction: "ingress" }).verdict).toBe("pass");
    expect(decide({ local: "10.0.0.2", remote: "10.0.0.1", port: 53, protocol: 6, direction: "ingress" }).verdict).toBe("drop");
  });

  it("a CIDR peer is an ipcache prefix with its own identity and no tenant", () => {
    const policy: PolicyRow = {
      id: 2,
      tenantId: 1,
      name: "web-out",
      subject: { identity: "web" },
      egress: [{ peers: [{ cidr: "192.0.2.0/24" }], ports: [{ port: 443, protocol: "tcp" }], action: "allow" }],
    };
    const snap = platform({ policies: [policy], cidrIdentities: new Map([["192.0.2.0/24", 1000]]) });
    const out = compileNode(snap, "n1");
    expect(out.maps.ipcache).toContainEqual({ key: { prefix: "192.0.2.0/24" }, value: { identity: 1000, tenant: 0 } });
    expect(out.maps.policy).toEqual([marker(256, "egress"), rule(256, 1000, 443, 6, "egress", "allow", 512)]);
    const decide = createEvaluator(throughCodec(out.maps));
    expect(decide({ local: "10.0.0.1", remote: "192.0.2.9", port: 443, protocol: 6, direction: "egress" }).reason).toBe("policy-allow");
    expect(decide({ local: "10.0.0.1", remote: "198.51.100.1", port: 443, protocol: 6, direction: "egress" }).reason).toBe("default-deny");
    // n2 hosts acme too, but no workload of web: the CIDR is there (tenant-wide), the policy entries are not.
    const n2 = compileNode(snap, "n2");
    expect(n2.maps.ipcache).toContainEqual({ key: { prefix: "192.0.2.0/24" }, value: { identity: 1000, tenant: 0 } });
    expect(n2.maps.policy).toEqual([]);
  });

  it("an unselected workload follows its tenant's default action", () => {
    const allow = compileNode(platform({}), "n1");
    expect(allow.maps.policy).toEqual([]);
    expect(createEvaluator(throughCodec(allow.maps))({ local: "10.0.0.1", remote: "8.8.8.8", port: 53, protocol: 17, direction: "egress" }).reason).toBe("unselected");

    const deny = compileNode(platform({ tenants: [{ ...acme, defaultAction: "deny" }] }), "n1");
    expect(deny.maps.policy).toEqual([marker(256, "ingress"), marker(256, "egress"), marker(257, "ingress"), marker(257, "egress")]);
    expect(createEvaluator(throughCodec(deny.maps))({ local: "10.0.0.1", remote: "8.8.8.8", port: 53, protocol: 17, direction: "egress" }).reason).toBe("default-deny");
  });

  it("a node with no workload of a tenant gets nothing of it", () => {
    const out = compileNode(platform({}), "n3");
    expect(out.counts).toEqual({ ipcache: 0, endpoint: 0, policy: 0, svc: 0, lb_slot: 0, backend: 0, audit: 0, steer: 0, l7: 0 });
  });
});

describe("service tables", () => {
  const weighted: ServiceRow = {
    id: 7,
    tenantId: 1,
    name: "api",
    vip: "10.96.0.1",
    ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
    backends: {
      explicit: [
        { address: "10.0.0.1", weight: 90 },
        { address: "10.0.0.2", weight: 10 },
      ],
    },
    loadBalancing: "random",
    preferSameZone: false,
  };

  it("two backends weighted 90/10 get 9 slots and 1 of a 10-slot table", () => {
    const snap = platform({ services: [weighted], backendIds: new Map([["10.0.0.1:8080", 1], ["10.0.0.2:8080", 2]]) });
    const out = compileNode(snap, "n1");
    expect(out.maps.svc).toEqual([{ key: { vip: "10.96.0.1", port: 80, protocol: 6 }, value: { tableId: 7 * 16, slots: 10 } }]);
    expect(out.maps.lb_slot.map((e) => e.key)).toEqual(Array.from({ length: 10 }, (_, slot) => ({ tableId: 112, slot })));
    const share = (id: number) => out.maps.lb_slot.filter((e) => e.value.backendId === id).length;
    expect([share(1), share(2)]).toEqual([9, 1]);
    expect(out.maps.backend).toEqual([
      { key: { backendId: 1 }, value: { address: "10.0.0.1", port: 8080 } },
      { key: { backendId: 2 }, value: { address: "10.0.0.2", port: 8080 } },
    ]);
  });

  it("weights 0 everywhere write the frontend with no slots", () => {
    const zero: ServiceRow = { ...weighted, backends: { explicit: [{ address: "10.0.0.1", weight: 0 }] } };
    const out = compileNode(platform({ services: [zero] }), "n1");
    expect(out.maps.svc).toEqual([{ key: { vip: "10.96.0.1", port: 80, protocol: 6 }, value: { tableId: 112, slots: 0 } }]);
    expect(out.maps.lb_slot).toEqual([]);
    expect(out.maps.backend).toEqual([]);
  });

  it("preferSameZone gives slots to same-zone backends only, and to all when the zone has none", () => {
    const local: ServiceRow = { ...weighted, preferSameZone: true, backends: { selector: { labels: { app: "web" } } } };
    const more: WorkloadRow = { tenantId: 1, name: "web-2", identity: "web", node: "n2", addresses: ["10.0.0.4"] };
    const snap = platform({ services: [local], workloads: [...workloads, more] });
    const idOf = (key: string) => snap.backendIds.get(key);
    const slotsOn = (node: string) => compileNode(snap, node).maps.lb_slot.map((e) => e.value.backendId);
    expect(slotsOn("n1")).toEqual([idOf("10.0.0.1:8080")]); // web-1, zone a
    expect(slotsOn("n2")).toEqual([idOf("10.0.0.4:8080")]); // web-2, zone b
    // n3 (zone c) hosts no acme workload: add one of batch so the tenant is present there.
    const onC: WorkloadRow = { tenantId: 1, name: "batch-2", identity: "batch", node: "n3", addresses: ["10.0.0.5"] };
    const snapC = platform({ services: [local], workloads: [...workloads, more, onC] });
    expect(compileNode(snapC, "n3").maps.lb_slot.map((e) => e.value.backendId).sort()).toEqual(
      [snapC.backendIds.get("10.0.0.1:8080"), snapC.backendIds.get("10.0.0.4:8080")].sort(),
    );
  });
});
