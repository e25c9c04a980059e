/**
 * Backend health as the node's agent reports it (agent/health.ts probes the
 * workload's declared healthCheck from the node's namespace). A node speaks
 * only for probed workloads placed on it: entries naming anything else are
 * ignored. A transition is a write: workload_health changes and the change
 * log names the workload (kind "workload"), so the follower reloads it and
 * every node's LB tables withdraw or restore it (compiler/services.ts). The
 * workload row itself, and so its ETag, does not change.
 */
import { and, eq, isNotNull, sql } from "drizzle-orm";
import { withPlatformRead } from "../db/platform-read.ts";
import { tenants, workloadHealth, workloads } from "../db/schema.ts";
import { read, type Tx, type WriteScope } from "../db/transactions.ts";
import type { Db } from "../db/client.ts";
import { PLATFORM_TENANT_ID } from "../auth/node-credentials.ts";
import type { ReportedHealth } from "./specs.ts";

/** At most one recorded health transition per workload in this long. */
export const HEALTH_HOLD_DOWN_MS = 1_000;

export interface HealthTransition {
  tenantId: number;
  tenant: string;
  workload: string;
  healthy: boolean;
  since: Date;
}

/** The transitions `reported` makes against what is stored, for probed workloads on `node` only. */
export async function healthTransitions(tx: Tx, node: string, reported: readonly ReportedHealth[]): Promise<HealthTransition[]> {
  if (reported.length === 0) return [];
  const probed = await withPlatformRead(tx, () =>
    tx
      .select({
        tenantId: workloads.tenantId,
        tenant: tenants.name,
        name: workloads.name,
        healthy: workloadHealth.healthy,
        by: workloadHealth.node,
        // The database's clock, as it set recorded_at: replicas' clocks may differ.
        heldDown: sql<boolean>`${workloadHealth.recordedAt} > now() - make_interval(secs => ${HEALTH_HOLD_DOWN_MS / 1000})`,
      })
      .from(workloads)
      .innerJoin(tenants, eq(tenants.id, workloads.tenantId))
      .leftJoin(workloadHealth, and(eq(workloadHealth.tenantId, workloads.tenantId), eq(workloadHealth.name, workloads.name)))
      .where(and(eq(workloads.node, node), isNotNull(workloads.healthCheck))),
  );
  const byName = new Map(probed.map((p) => [`${p.tenant}/${p.name}`, p]));
  const now = Date.now();
  const out = new Map<string, HealthTransition>();
  for (const r of reported) {
    const p = byName.get(`${r.tenant}/${r.workload}`);
    if (p === undefined) continue;
    const healthy = r.state === "healthy";
    if (p.healthy === healthy && p.by === node) continue;
    // Hold-down: a node flapping a workload's health in a loop must not turn every report into a write
    // that wakes every node of the tenant; the agent repeats the full set with every report, so the
    // state it settles on is recorded on a later one.
    if (p.heldDown === true && p.by === node) continue;
    const at = Date.parse(r.since);
    out.set(`${r.tenant}/${r.workload}`, { tenantId: p.tenantId, tenant: r.tenant, workload: r.workload, healthy, since: new Date(Number.isFinite(at) ? Math.min(at, now) : now) });
  }
  return [...out.values()];
}

/** healthTransitions in a read of its own: most reports change nothing, and then take no revision. */
export const pendingHealthTransitions = (db: Db, node: string, reported: readonly ReportedHealth[]): Promise<HealthTransition[]> =>
  reported.length === 0 ? Promise.resolve([]) : read(db, null, (tx) => healthTransitions(tx, node, reported));

/** Stores the transitions and records each in its tenant's change and audit log (workload.health). */
export async function recordHealth(w: WriteScope, node: string, transitions: readonly HealthTransition[]): Promise<void> {
  for (const t of transitions) {
    await w.setTenant(t.tenantId);
    await w.tx
      .insert(workloadHealth)
      .values({ tenantId: t.tenantId, name: t.workload, healthy: t.healthy, since: t.since, node, recordedAt: sql`now()` })
      .onConflictDoUpdate({ target: [workloadHealth.tenantId, workloadHealth.name], set: { healthy: t.healthy, since: t.since, node, recordedAt: sql`now()` } });
    await w.record({ tenantId: t.tenantId, kind: "workload", name: t.workload, op: "upsert" }, "workload.health");
  }
  if (transitions.length > 0) await w.setTenant(PLATFORM_TENANT_ID);
}

/**
 * In a workload's write: the stored health no longer says anything about it
 * when it moves to another node or stops being probed.
 */
export async function forgetHealth(w: WriteScope, tenantId: number, name: string, node: string, probed: boolean): Promise<void> {
  await w.tx
    .delete(workloadHealth)
    .where(
      and(
        eq(workloadHealth.tenantId, tenantId),
        eq(workloadHealth.name, name),
        probed ? sql`${workloadHealth.node} <> ${node}` : undefined,
      ),
    );
}

/** A workload's health as stored, or null when the tenant has no such workload. */
export async function healthOf(
  db: Db,
  tenantId: number,
  name: string,
): Promise<{ state: "unknown" | "healthy" | "unhealthy"; since: string | null; node: string | null } | null> {
  const [row] = await read(db, tenantId, (tx) =>
    tx
      .select({ name: workloads.name, healthy: workloadHealth.healthy, since: workloadHealth.since, node: workloadHealth.node })
      .from(workloads)
      .leftJoin(workloadHealth, and(eq(workloadHealth.tenantId, workloads.tenantId), eq(workloadHealth.name, workloads.name)))
      .where(and(eq(workloads.tenantId, tenantId), eq(workloads.name, name))),
  );
  if (row === undefined) return null;
  if (row.healthy === null) return { state: "unknown", since: null, node: null };
  return { state: row.healthy ? "healthy" : "unhealthy", since: row.since!.toISOString(), node: row.node };
}
