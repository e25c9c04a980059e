/**
 * A generated platform at the scale: 100 tenants, 10,000 identities
 * (100 per tenant), 100,000 workloads (10 per identity), 10,000 services of
 * 10 backends (service j of a tenant selects its identity j; one in ten is
 * an explicit canary list, 9 backends of weight 100 and one of weight 1, a 901-slot table), 20,000 policy rules (100 policies
 * of 2 rules per tenant, one in five a deny, one in ten naming a CIDR), and
 * 1,000 nodes in 3 zones. Each tenant runs on its own pool of 20 nodes, so a
 * node hosts about 2 tenants and 100 workloads: the tenant locality that
 * keeps a node's ipcache (all workloads of its tenants) far below 65,536.
 */
import { formatIPv4 } from "@weft/codec";
import { assignIds } from "../../api/src/compiler/allocate.ts";
import type { IdentityRow, NodeRow, PolicyRow, ServiceRow, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";

export const SCALE = { tenants: 100, identitiesPerTenant: 100, workloadsPerIdentity: 10, nodes: 1000, poolSize: 20, policiesPerTenant: 100 };
const ZONES = ["zone-a", "zone-b", "zone-c"];
const CIDRS = Array.from({ length: 50 }, (_, i) => (i % 10 === 0 ? `${100 + i}.0.0.0/8` : `${100 + i - (i % 10)}.${i}.0.0/16`));

export function platform(): Snapshot {
  const nodes: NodeRow[] = Array.from({ length: SCALE.nodes }, (_, i) => ({ name: `node-${i}`, zone: ZONES[i % 3]! }));
  const tenants: TenantRow[] = [];
  const identities: IdentityRow[] = [];
  const workloads: WorkloadRow[] = [];
  const services: ServiceRow[] = [];
  const policies: PolicyRow[] = [];
  let address = 0x0a000001; // 10.0.0.1
  for (let t = 1; t <= SCALE.tenants; t++) {
    tenants.push({ id: t, name: `tenant-${t}`, defaultAction: t % 4 === 0 ? "deny" : "allow" });
    const pool = (k: number) => nodes[((t - 1) * 10 + (k % SCALE.poolSize)) % SCALE.nodes]!.name;
    for (let i = 0; i < SCALE.identitiesPerTenant; i++) {
      identities.push({ tenantId: t, name: `id-${i}`, numericId: 256 + (t - 1) * SCALE.identitiesPerTenant + i, labels: { app: `app-${i % 20}`, tier: `tier-${i % 3}` } });
      for (let w = 0; w < SCALE.workloadsPerIdentity; w++) {
        workloads.push({ tenantId: t, name: `wl-${i}-${w}`, identity: `id-${i}`, node: pool(i * 7 + w), addresses: [formatIPv4(address++)] });
      }
      const canary = i % 10 === 9;
      services.push({
        id: (t - 1) * SCALE.identitiesPerTenant + i + 1,
        tenantId: t,
        name: `svc-${i}`,
        vip: formatIPv4(0x64400000 + (t - 1) * SCALE.identitiesPerTenant + i), // 100.64.0.0/10
        ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
        backends: canary
          ? { explicit: Array.from({ length: 10 }, (_, w) => ({ workload: `wl-${i}-${w}`, weight: w < 9 ? 100 : 1 })) }
          : { selector: { identity: `id-${i}` } },
        loadBalancing: i % 2 === 0 ? "maglev" : "random",
        preferSameZone: i % 2 === 1,
      });
    }
    for (let p = 0; p < SCALE.policiesPerTenant; p++) {
      const id = (t - 1) * SCALE.policiesPerTenant + p + 1;
      policies.push({
        id,
        tenantId: t,
        name: `pol-${p}`,
        subject: { identity: `id-${p}` },
        ingress: [
          {
            peers: [{ identity: `id-${(p + 1) % SCALE.identitiesPerTenant}` }, { labels: { app: `app-${p % 20}` } }],
            ports: [{ port: 80 + (p % 5), protocol: "tcp" }],
            action: p % 5 === 4 ? "deny" : "allow",
          },
        ],
        egress: [
          {
            peers: p % 10 === 0 ? [{ cidr: CIDRS[(t + p) % CIDRS.length]! }] : [{ labels: { tier: `tier-${p % 3}` } }],
            ports: p % 3 === 0 ? [] : [{ port: 443, protocol: "tcp" }, { port: 53, protocol: "udp" }],
            action: "allow",
          },
        ],
      });
    }
  }
  return assignIds({ tenants, identities, workloads, services, policies, nodes, backendIds: new Map(), cidrIdentities: new Map() });
}
