/**
 * Traffic policies (issue 21): circuit breaking, outlier ejection and a
 * per-identity rate limit for one service's L7 traffic, applied by every
 * node's proxy to the service's frontends (compiler/l7.ts trafficOf).
 *
 * At most one policy names a service: a second would leave the proxy to
 * guess which limits hold (409 naming the one there). The service a policy
 * names must be the tenant's (422), and stays while the policy names it:
 * services.ts asks `requireUntargeted` before deleting one (409).
 */
import { and, eq, ne } from "drizzle-orm";
import { services, trafficPolicies } from "../db/schema.ts";
import type { WriteScope } from "../db/transactions.ts";
import type { Follower } from "../follower/follow.ts";
import { trafficPolicyRowOf } from "../follower/rows.ts";
import { durationMs } from "../compiler/l7.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { meshRows, writeMeshRow } from "./write.ts";
import type { Preconditions, ResourceStore } from "./write.ts";
import { etagOf, putIntent } from "./preconditions.ts";
import { fieldRefusal, MeshRefusal } from "./refusal.ts";
import type { TrafficPolicySpec } from "./specs.ts";

export type TrafficPolicyDbRow = typeof trafficPolicies.$inferSelect;

const rows = meshRows(trafficPolicies, "trafficPolicy");
const { byName } = rows;

/**
 * The longest interval and base ejection time: an ejection grows with each
 * repeat (base times count), so a longer base keeps a recovered backend out
 * for many minutes; Envoy's default cap on an ejection is 300s too.
 */
const MAX_OUTLIER_DURATION_MS = 300_000;

/** Durations of outlier detection: more than 0 (0 would eject for no time or look again at once) and at most 300s. */
function checkShape(spec: TrafficPolicySpec): void {
  for (const key of ["interval", "baseEjectionTime"] as const) {
    const text = spec.outlierDetection?.[key];
    if (text === undefined) continue;
    const ms = durationMs(text) ?? 0;
    const field = `body.outlierDetection.${key}`;
    if (ms === 0) throw fieldRefusal("malformed", `${key} ${text} is no time at all`, field, "must be more than 0 (at most 300s)");
    if (ms > MAX_OUTLIER_DURATION_MS) throw fieldRefusal("malformed", `${key} ${text} is over 300s`, field, "must be at most 300s");
  }
}

/**
 * The target is a service of the policy's own tenant (a service of another
 * tenant reads exactly like one that exists nowhere: 422) that no other
 * policy names (409, naming that policy).
 */
async function requireTarget(w: WriteScope, tenantId: number, name: string, service: string): Promise<void> {
  const [found] = await w.tx
    .select({ name: services.name })
    .from(services)
    .where(and(eq(services.tenantId, tenantId), eq(services.name, service)));
  if (found === undefined) throw fieldRefusal("invalid", `service "${service}" does not exist in this tenant`, "body.targetRef.name", `no service "${service}" in this tenant`);
  const [other] = await w.tx
    .select({ name: trafficPolicies.name })
    .from(trafficPolicies)
    .where(and(eq(trafficPolicies.tenantId, tenantId), eq(trafficPolicies.service, service), ne(trafficPolicies.name, name)));
  if (other !== undefined) {
    throw fieldRefusal(
      "conflict",
      `service "${service}" already has trafficPolicy "${other.name}"`,
      "body.targetRef.name",
      `trafficPolicy "${other.name}" names it (one per service): change that one, or delete it first`,
    );
  }
}

/** Refuses (409, naming the policy) to delete a service a traffic policy of its tenant names. */
export async function requireUntargeted(w: WriteScope, tenantId: number, service: string): Promise<void> {
  const naming = await w.tx
    .select({ name: trafficPolicies.name })
    .from(trafficPolicies)
    .where(and(eq(trafficPolicies.tenantId, tenantId), eq(trafficPolicies.service, service)));
  if (naming.length === 0) return;
  throw new MeshRefusal(
    "conflict",
    `service "${service}" is named by trafficPolicy ${naming.map((p) => `"${p.name}"`).join(", ")}: change or delete the policy first`,
    naming.map((p) => ({ field: `trafficPolicies.${p.name}.targetRef.name`, message: "names this service" })),
  );
}

async function putTrafficPolicy(w: WriteScope, follower: Follower, tenant: TenantDbRow, name: string, spec: TrafficPolicySpec, pre: Preconditions) {
  checkShape(spec);
  return writeMeshRow(w, follower, {
    kind: "trafficPolicy",
    tenantId: tenant.id,
    name,
    lock: () => rows.lock(w, tenant.id, name),
    apply: async (existing) => {
      const intent = putIntent(existing ? etagOf(existing.revision) : null, pre.ifMatch, pre.ifNoneMatch);
      await requireTarget(w, tenant.id, name, spec.targetRef.name);
      const values = {
        targetRef: spec.targetRef,
        service: spec.targetRef.name,
        connectionPool: spec.connectionPool ?? null,
        outlierDetection: spec.outlierDetection ?? null,
        rateLimit: spec.rateLimit ?? null,
        revision: w.revision,
      };
      const [row] = existing
        ? await w.tx.update(trafficPolicies).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
        : await w.tx.insert(trafficPolicies).values({ tenantId: tenant.id, name, ...values }).returning();
      return {
        change: { kind: "trafficPolicy", op: "put", row: trafficPolicyRowOf(row!) },
        op: "upsert",
        action: `trafficPolicy.${intent}`,
        result: { row: row!, intent },
      };
    },
  });
}

export const trafficPolicyStore: ResourceStore<TrafficPolicySpec, TrafficPolicyDbRow> = { ...rows, put: putTrafficPolicy };
