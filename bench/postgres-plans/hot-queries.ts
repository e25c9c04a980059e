/**
 * The statements Weft runs most, shaped as the API builds them (drizzle, from
 * the same schema), each with the role and tenant it runs under: row-level
 * security adds its filter to the plan, so a plan read as the owner would
 * tell nothing about the request's. EXPLAIN runs inside a transaction that is
 * rolled back, so statements that write (an SVID record, the revision
 * counter) leave nothing behind even under ANALYZE.
 */
import { and, arrayOverlaps, asc, desc, eq, gt, inArray, isNotNull, lt, ne, or, sql, type SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import { drizzle } from "drizzle-orm/node-postgres";
import type pg from "pg";
import { batchDelete } from "../../api/src/db/pruning.ts";
import * as schema from "../../api/src/db/schema.ts";
import type { Seeded } from "./seed.ts";

const { APP_ROLE, PLATFORM_ROLE, LOG_PRUNER_ROLE, FLOW_WRITER_ROLE, TENANT_SETTING, auditLog, changeLog, flows, nodes, svidIssuances, workloadHealth, workloads } = schema;

/** Tables whose size grows with nodes, workloads or time: a Seq Scan on one is a finding. */
export const BIG_TABLES = ["nodes", "workloads", "identities", "change_log", "audit_log", "flows", "svid_issuances", "workload_health"] as const;

export interface HotQuery {
  name: string;
  /** Where the API runs it. */
  where: string;
  role: string;
  tenantId: number | null;
  text: string;
  params: unknown[];
}

export function hotQueries(client: pg.Client, k: Seeded): HotQuery[] {
  const db = drizzle(client, { schema });
  const built = (q: { toSQL(): { sql: string; params: unknown[] } }) => {
    const { sql, params } = q.toSQL();
    return { text: sql, params };
  };
  const page = 100;
  const dialect = new PgDialect();
  const rendered = (q: SQL) => {
    const { sql: text, params } = dialect.sqlToQuery(q);
    return { text, params };
  };
  return [
    {
      name: "follower pull (change-log range)",
      where: "follower/follow.ts pull",
      role: PLATFORM_ROLE,
      tenantId: null,
      ...built(
        db
          .select({ revision: changeLog.revision, tenantId: changeLog.tenantId, kind: changeLog.kind, name: changeLog.name })
          .from(changeLog)
          .where(and(gt(changeLog.revision, k.headRevision - 20), lt(changeLog.revision, k.headRevision + 1)))
          .orderBy(asc(changeLog.revision), asc(changeLog.id)),
      ),
    },
    {
      name: "reload by (tenant, name)",
      where: "follower/follow.ts reload (workload)",
      role: PLATFORM_ROLE,
      tenantId: null,
      ...built(
        db
          .select({ w: workloads, healthy: workloadHealth.healthy })
          .from(workloads)
          .leftJoin(workloadHealth, and(eq(workloadHealth.tenantId, workloads.tenantId), eq(workloadHealth.name, workloads.name)))
          .where(and(eq(workloads.tenantId, k.workloadTenantId), eq(workloads.name, k.workload))),
      ),
    },
    {
      name: "node credential lookup",
      where: "auth/node-credentials.ts",
      role: APP_ROLE,
      tenantId: null,
      ...built(db.select({ name: nodes.name, hash: nodes.credentialHash }).from(nodes).where(inArray(nodes.credentialHash, [k.credentialHash]))),
    },
    {
      name: "node by name",
      where: "mesh/nodes.ts",
      role: APP_ROLE,
      tenantId: null,
      ...built(db.select({ podCidr: nodes.podCidr }).from(nodes).where(eq(nodes.name, k.node))),
    },
    {
      name: "workloads on a node",
      where: "mesh/flows/names.ts, mesh/federations.ts",
      role: PLATFORM_ROLE,
      tenantId: null,
      ...built(db.selectDistinct({ tenantId: workloads.tenantId }).from(workloads).where(eq(workloads.node, k.node))),
    },
    {
      name: "workload address clash (a workload write, under the revision lock)",
      where: "mesh/workloads.ts",
      role: PLATFORM_ROLE,
      tenantId: null,
      ...built(
        db
          .select({ addresses: workloads.addresses })
          .from(workloads)
          .where(and(arrayOverlaps(workloads.addresses, ["10.0.7.9"]), or(ne(workloads.tenantId, k.workloadTenantId), ne(workloads.name, k.workload)))),
      ),
    },
    {
      name: "pod CIDR candidate: a workload address in the block (registration, under the revision lock)",
      where: "mesh/nodes.ts freePodCidrBlock",
      role: PLATFORM_ROLE,
      tenantId: null,
      ...rendered(
        sql`SELECT address FROM ${workloads}, unnest(${workloads.addresses}) AS address
            WHERE weft_ipv4_span(${workloads.addresses}) && ${"10.200.7.0/24"}::inet AND address::inet <<= ${"10.200.7.0/24"}::inet LIMIT 1`,
      ),
    },
    {
      name: "workload list by tenant, paged",
      where: "mesh/write.ts list",
      role: APP_ROLE,
      tenantId: k.tenantId,
      ...built(
        db
          .select()
          .from(workloads)
          .where(and(eq(workloads.tenantId, k.tenantId), gt(workloads.name, "w-5")))
          .orderBy(asc(workloads.name))
          .limit(page + 1),
      ),
    },
    {
      name: "flows list (tenant, newest first)",
      where: "mesh/flows/query.ts listFlows",
      role: APP_ROLE,
      tenantId: k.tenantId,
      ...built(db.select().from(flows).where(eq(flows.tenantId, k.tenantId)).orderBy(desc(flows.time), desc(flows.id)).limit(page + 1)),
    },
    {
      name: "audit list (tenant, paged)",
      where: "routes/audit",
      role: APP_ROLE,
      tenantId: k.tenantId,
      // Both tables, as the route reads them: an SVID issuance's audit entry is its record.
      ...built(
        db
          .select({ id: auditLog.id, at: auditLog.at })
          .from(auditLog)
          .where(and(eq(auditLog.tenantId, k.tenantId), gt(auditLog.id, 1000)))
          .unionAll(
            db
              .select({ id: svidIssuances.id, at: svidIssuances.issuedAt })
              .from(svidIssuances)
              .where(and(eq(svidIssuances.tenantId, k.tenantId), isNotNull(svidIssuances.actor), gt(svidIssuances.id, 1000))),
          )
          .orderBy(asc(sql`id`))
          .limit(page + 1),
      ),
    },
    {
      name: "tenant changes since a revision",
      where: "routes/audit /changes",
      role: APP_ROLE,
      tenantId: k.tenantId,
      ...built(
        db
          .select()
          .from(changeLog)
          .where(and(eq(changeLog.tenantId, k.tenantId), gt(changeLog.revision, k.headRevision - 1000)))
          .orderBy(asc(changeLog.id))
          .limit(page + 1),
      ),
    },
    {
      name: "SVID record insert (the record is its audit entry; the slot's high-water mark when raised)",
      where: "ca/store.ts issuance records",
      role: APP_ROLE,
      tenantId: k.tenantId,
      text: `
        WITH raised AS (
          UPDATE ca_slots s SET max_issued_not_after = GREATEST(s.max_issued_not_after, now() + interval '1 hour')
          WHERE s.tenant_id = $1 AND s.id = $2
        )
        INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at,
                                    actor, request_id, client_request_id, revision)
        SELECT $1, $2, 'x509-svid', 'id-1', 'spiffe://seed/id-1', 'ab01', now(), now() + interval '1 hour',
               'token:bench', 'req', NULL, (SELECT revision FROM revision_counter WHERE id = 1)`,
      params: [k.tenantId, k.slotId],
    },
    {
      name: "revision counter update",
      where: "db/transactions.ts write",
      role: APP_ROLE,
      tenantId: k.tenantId,
      text: `UPDATE revision_counter SET revision = revision + 1 WHERE id = 1 RETURNING revision`,
      params: [],
    },
    {
      name: "change-log retention horizon",
      where: "db/log-retention.ts",
      role: LOG_PRUNER_ROLE,
      tenantId: null,
      text: `SELECT revision FROM change_log WHERE at < now() - interval '7 days' ORDER BY at DESC LIMIT 1`,
      params: [],
    },
    {
      name: "audit retention batch",
      where: "db/log-retention.ts",
      role: LOG_PRUNER_ROLE,
      tenantId: null,
      ...rendered(batchDelete("audit_log", "id", sql`at < now() - interval '20 days'`, "at", 1000)),
    },
    {
      name: "SVID issuance retention batch (audit entries)",
      where: "db/log-retention.ts",
      role: LOG_PRUNER_ROLE,
      tenantId: null,
      ...rendered(batchDelete("svid_issuances", "id", sql`issued_at < now() - interval '20 days'`, "issued_at", 1000)),
    },
    {
      name: "change-log retention batch",
      where: "db/log-retention.ts",
      role: LOG_PRUNER_ROLE,
      tenantId: null,
      ...rendered(batchDelete("change_log", "id", sql`revision <= ${Math.floor(k.headRevision / 3)}`, "revision", 1000)),
    },
    {
      name: "flows retention batch",
      where: "mesh/flows/retention.ts",
      role: FLOW_WRITER_ROLE,
      tenantId: null,
      ...rendered(batchDelete("flows", "ctid", sql`time < now() - interval '12 hours'`, "time", 1000)),
    },
  ];
}

/** EXPLAIN with `options` (e.g. "FORMAT JSON" or "ANALYZE, BUFFERS") as the query's role and tenant, rolled back. */
export async function explain(client: pg.Client, q: HotQuery, options: string): Promise<unknown> {
  await client.query("BEGIN");
  try {
    await client.query(`SELECT set_config('role', $1, true), set_config($2, $3, true)`, [q.role, TENANT_SETTING, q.tenantId === null ? "" : String(q.tenantId)]);
    const res = await client.query(`EXPLAIN (${options}) ${q.text}`, q.params);
    return options.includes("JSON") ? res.rows[0]["QUERY PLAN"] : res.rows.map((r) => r["QUERY PLAN"] as string).join("\n");
  } finally {
    await client.query("ROLLBACK");
  }
}

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  Plans?: PlanNode[];
}

/** Relations of BIG_TABLES a plan (EXPLAIN FORMAT JSON) reads with a Seq Scan. */
export function seqScansOnBigTables(plan: unknown): string[] {
  const found: string[] = [];
  const walk = (node: PlanNode) => {
    if (node["Node Type"] === "Seq Scan" && (BIG_TABLES as readonly string[]).includes(node["Relation Name"] ?? "")) found.push(node["Relation Name"]!);
    for (const child of node.Plans ?? []) walk(child);
  };
  for (const top of plan as { Plan: PlanNode }[]) walk(top.Plan);
  return found;
}
