import { and, arrayContains, eq, inArray, ne, or } from "drizzle-orm";
import { formatIPv4, parseIPv4 } from "@weft/codec";
import type { Config } from "../config.ts";
import { services, workloads } from "../db/schema.ts";
import type { WriteScope } from "../db/transactions.ts";
import { withPlatformRead } from "../db/platform-read.ts";
import type { Follower } from "../follower/follow.ts";
import { serviceRowOf } from "../follower/rows.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { meshRows, namedIn, requireIdentities, writeMeshRow } from "./write.ts";
import type { Preconditions, ResourceStore } from "./write.ts";
import { etagOf, putIntent } from "./preconditions.ts";
import { fieldRefusal, MeshRefusal } from "./refusal.ts";
import type { ServiceSpec } from "./specs.ts";
import { addressPlanOf, ipv4ToNumber, specialUse, vipRefusal } from "./addresses.ts";
import { requireUnrouted } from "./http-routes.ts";
import { requireUntargeted } from "./traffic-policies.ts";

export type ServiceDbRow = typeof services.$inferSelect;

// A service an httpRoute or a trafficPolicy names stays until they let it go (http-routes.ts, traffic-policies.ts).
const rows = meshRows(services, "service", {
  beforeDelete: async (w, tenantId, name) => {
    await requireUnrouted(w, tenantId, name, null);
    await requireUntargeted(w, tenantId, name);
  },
});
const { byName } = rows;

/** Shape rules the schema cannot say: one frontend per (port, protocol); workload xor address. */
function checkShape(spec: ServiceSpec): void {
  const seen = new Set<string>();
  spec.ports.forEach((p, i) => {
    const key = `${p.port}/${p.protocol}`;
    if (seen.has(key)) throw new MeshRefusal("malformed", "a port and protocol appear twice", [{ field: `body.ports.${i}`, message: `${key} is already listed` }]);
    seen.add(key);
  });
  if ("explicit" in spec.backends) {
    spec.backends.explicit.forEach((b, i) => {
      if ((b.workload === undefined) === (b.address === undefined)) {
        throw new MeshRefusal("malformed", "a backend names a workload or an address", [
          { field: `body.backends.explicit.${i}`, message: "must have exactly one of workload or address" },
        ]);
      }
    });
  }
}

/**
 * A backend given by address is where the socket LB sends a tenant's own
 * connections: loopback, link-local (the metadata service), multicast and
 * the like are refused as they are for VIPs and workload addresses.
 */
function requireUnicastBackends(spec: ServiceSpec): void {
  if (!("explicit" in spec.backends)) return;
  spec.backends.explicit.forEach((b, i) => {
    if (b.address === undefined) return;
    const n = ipv4ToNumber(b.address);
    const special = n === null ? null : specialUse(n);
    if (special) {
      throw fieldRefusal("invalid", `backend address ${b.address} is ${special}`, `body.backends.explicit.${i}.address`, `is ${special}; no backend may have it`);
    }
  });
}

/** Explicit backends name workloads of the same tenant only. */
async function requireWorkloads(w: WriteScope, tenantId: number, spec: ServiceSpec): Promise<void> {
  if (!("explicit" in spec.backends)) return;
  const named = spec.backends.explicit.flatMap((b, i) => (b.workload === undefined ? [] : [{ i, name: b.workload }]));
  if (named.length === 0) return;
  const found = await w.tx
    .select({ name: workloads.name })
    .from(workloads)
    .where(and(eq(workloads.tenantId, tenantId), inArray(workloads.name, named.map((n) => n.name))));
  const known = new Set(found.map((r) => r.name));
  const missing = named.find((n) => !known.has(n.name));
  if (missing) {
    throw fieldRefusal("invalid", `workload "${missing.name}" does not exist in this tenant`, `body.backends.explicit.${missing.i}.workload`, `no workload "${missing.name}" in this tenant`);
  }
}

/** Is the address a VIP of another service, or a workload's? Across every tenant; the owner is never named. */
async function addressTaken(w: WriteScope, vip: string, tenantId: number, name: string): Promise<boolean> {
  const [svc] = await w.tx
    .select({ id: services.id })
    .from(services)
    .where(and(eq(services.vip, vip), or(ne(services.tenantId, tenantId), ne(services.name, name))))
    .limit(1);
  if (svc) return true;
  const [wl] = await w.tx.select({ name: workloads.name }).from(workloads).where(arrayContains(workloads.addresses, [vip])).limit(1);
  return wl !== undefined;
}

/** The lowest free host address of the service range (network and broadcast addresses are never used). */
async function allocateVip(w: WriteScope, cidr: string, tenantId: number, name: string): Promise<string> {
  const [base, lenText] = cidr.split("/") as [string, string];
  const start = parseIPv4(base);
  const size = 2 ** (32 - Number(lenText));
  const used = new Set((await w.tx.select({ vip: services.vip }).from(services)).map((r) => parseIPv4(r.vip)));
  for (let offset = 1; offset < size - 1; offset++) {
    const candidate = start + offset;
    if (used.has(candidate)) continue;
    const vip = formatIPv4(candidate);
    if (!(await addressTaken(w, vip, tenantId, name))) return vip;
  }
  throw fieldRefusal("invalid", `no free VIP is left in ${cidr}`, "body.vip", `the service range ${cidr} (WEFT_SERVICE_CIDR) is full; give a VIP`);
}

function makePut(cidr: string) {
  return async (w: WriteScope, follower: Follower, tenant: TenantDbRow, name: string, spec: ServiceSpec, pre: Preconditions) => {
    checkShape(spec);
    requireUnicastBackends(spec);
    return writeMeshRow(w, follower, {
      kind: "service",
      tenantId: tenant.id,
      name,
      lock: () => rows.lock(w, tenant.id, name),
      apply: async (existing) => {
        const intent = putIntent(existing ? etagOf(existing.revision) : null, pre.ifMatch, pre.ifNoneMatch);
        await requireIdentities(w, tenant.id, "selector" in spec.backends ? namedIn("body.backends.selector", spec.backends.selector) : []);
        await requireWorkloads(w, tenant.id, spec);
        if (existing) await requireUnrouted(w, tenant.id, name, spec.ports);
        // A replace that names no VIP keeps the one the service has: clients are using it.
        const vip = await withPlatformRead(w.tx, async () => {
          if (spec.vip !== undefined) {
            // Before the uniqueness check: 8.8.8.8 is refused for what it is, not for who holds it.
            const refusal = vipRefusal(spec.vip, cidr);
            if (refusal) throw fieldRefusal("invalid", `VIP ${spec.vip} ${refusal}`, "body.vip", refusal);
            if (await addressTaken(w, spec.vip, tenant.id, name)) {
              throw fieldRefusal("conflict", `VIP ${spec.vip} is already in use`, "body.vip", "is the VIP of another service or a workload address");
            }
            return { vip: spec.vip, vipAllocated: false };
          }
          if (existing) return { vip: existing.vip, vipAllocated: existing.vipAllocated };
          return { vip: await allocateVip(w, cidr, tenant.id, name), vipAllocated: true };
        });
        const values = {
          ...vip,
          ports: spec.ports,
          backends: spec.backends,
          loadBalancing: spec.loadBalancing ?? ("random" as const),
          preferSameZone: spec.topology?.preferSameZone ?? false,
          revision: w.revision,
        };
        const [row] = existing
          ? await w.tx.update(services).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
          : await w.tx.insert(services).values({ tenantId: tenant.id, name, ...values }).returning();
        return { change: { kind: "service", op: "put", row: serviceRowOf(row!) }, op: "upsert", action: `service.${intent}`, result: { row: row!, intent } };
      },
    });
  };
}

export const serviceStore = (config: Config): ResourceStore<ServiceSpec, ServiceDbRow> => ({
  ...rows,
  put: makePut(addressPlanOf(config).serviceCidr),
});
