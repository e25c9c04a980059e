/**
 * Reading flows: a tenant reads its own rows (row-level security binds the
 * read to it, and the rows it can reach were redacted when they were
 * written: views.ts); the operator reads the whole copies of every flow.
 */
import { and, asc, desc, eq, gt, gte, lt, lte, or, sql, type SQL } from "drizzle-orm";
import type { Db } from "../../db/client.ts";
import { platformRead } from "../../db/platform-read.ts";
import { flowAggregates, flows } from "../../db/schema.ts";
import { read, type Tx } from "../../db/transactions.ts";
import { MeshRefusal } from "../refusal.ts";
import { FLOW_VERDICTS, protocolName, type Flow, type FlowEdge, type FlowVerdict } from "./specs.ts";

/** Who reads: a tenant (its rows) or the operator (the whole copies, optionally of one tenant). */
export type FlowReader = { kind: "tenant"; tenantId: number } | { kind: "operator"; tenantId?: number };

export interface FlowFilters {
  identity?: string;
  sourceIdentity?: string;
  destinationIdentity?: string;
  service?: string;
  hook?: string;
  verdict?: string;
  reason?: string;
  node?: string;
  since?: string;
  until?: string;
}

export type FlowDbRow = typeof flows.$inferSelect;

/** Runs a read as the reader: tenant-bound under row-level security, or as the read-only platform role. */
export function readAs<T>(db: Db, reader: FlowReader, body: (tx: Tx) => Promise<T>): Promise<T> {
  return reader.kind === "tenant" ? read(db, reader.tenantId, body) : platformRead(db, body);
}

/** An identity name on one side, of the reader's tenant when there is one. */
function sideIs(tenantId: number | undefined, side: "src" | "dst", name: string): SQL {
  const [tenantCol, identityCol] = side === "src" ? [flows.srcTenantId, flows.srcIdentity] : [flows.dstTenantId, flows.dstIdentity];
  return tenantId === undefined ? eq(identityCol, name) : and(eq(tenantCol, tenantId), eq(identityCol, name))!;
}

/** The rows a reader may see that match the filters (time bounds: since inclusive, until exclusive). */
export function flowConditions(reader: FlowReader, f: FlowFilters): SQL[] {
  const tenantId = reader.tenantId;
  const out: SQL[] = [];
  if (reader.kind === "tenant") out.push(eq(flows.tenantId, reader.tenantId));
  else {
    out.push(eq(flows.whole, true));
    if (tenantId !== undefined) out.push(or(eq(flows.srcTenantId, tenantId), eq(flows.dstTenantId, tenantId))!);
  }
  const src = (name: string) => sideIs(tenantId, "src", name);
  const dst = (name: string) => sideIs(tenantId, "dst", name);
  if (f.identity !== undefined) out.push(or(src(f.identity), dst(f.identity))!);
  if (f.sourceIdentity !== undefined) out.push(src(f.sourceIdentity));
  if (f.destinationIdentity !== undefined) out.push(dst(f.destinationIdentity));
  if (f.service !== undefined) out.push(eq(flows.service, f.service));
  if (f.hook !== undefined) out.push(eq(flows.hook, f.hook));
  if (f.verdict !== undefined) out.push(eq(flows.verdict, f.verdict));
  if (f.reason !== undefined) out.push(eq(flows.reason, f.reason));
  if (f.node !== undefined) out.push(eq(flows.node, f.node));
  if (f.since !== undefined) out.push(gte(flows.time, new Date(f.since)));
  if (f.until !== undefined) out.push(lt(flows.time, new Date(f.until)));
  return out;
}

/** Where a page ends: the last row's time and id; the next page starts strictly after it. */
export interface FlowPosition {
  time: Date;
  id: number;
}

/** The opaque position inside a cursor: "<ms since epoch>.<id>". */
export const positionKey = (row: { time: Date; id: number }): string => `${row.time.getTime()}.${row.id}`;

export function parsePosition(key: string): FlowPosition {
  const m = /^(\d{1,15})\.(\d{1,18})$/.exec(key);
  if (!m) throw new MeshRefusal("malformed", "cursor is not one this API issued", [{ field: "query.cursor", message: "must be a nextCursor value from a previous page" }]);
  return { time: new Date(Number(m[1])), id: Number(m[2]) };
}

/** Newest first: by time, then by id among flows of the same millisecond. */
export async function listFlows(db: Db, reader: FlowReader, filters: FlowFilters, limit: number, after?: FlowPosition): Promise<FlowDbRow[]> {
  const where = flowConditions(reader, filters);
  if (after) where.push(or(lt(flows.time, after.time), and(eq(flows.time, after.time), lt(flows.id, after.id)))!);
  return readAs(db, reader, (tx) =>
    tx.select().from(flows).where(and(...where)).orderBy(desc(flows.time), desc(flows.id)).limit(limit + 1),
  );
}

/**
 * Rows committed after `afterId`, oldest first, and the id the next read
 * starts after: past every row this read could see when it took fewer than
 * `limit`, so rows the filters skip are not read again.
 */
export async function flowsAfter(db: Db, reader: FlowReader, filters: FlowFilters, afterId: number, limit: number): Promise<{ rows: FlowDbRow[]; upTo: number }> {
  return readAs(db, reader, async (tx) => {
    const upTo = await maxId(tx, reader);
    if (upTo <= afterId) return { rows: [], upTo: afterId };
    const rows = await tx
      .select()
      .from(flows)
      .where(and(...flowConditions(reader, filters), gt(flows.id, afterId), lte(flows.id, upTo)))
      .orderBy(asc(flows.id))
      .limit(limit);
    return { rows, upTo: rows.length === limit ? rows[rows.length - 1]!.id : upTo };
  });
}

const maxId = async (tx: Tx, reader: FlowReader): Promise<number> => {
  const where = reader.kind === "tenant" ? eq(flows.tenantId, reader.tenantId) : eq(flows.whole, true);
  const [row] = await tx.select({ id: sql<string | null>`max(${flows.id})` }).from(flows).where(where);
  return Number(row?.id ?? 0);
};

/** The id a follow stream starts after: the newest row the reader can see now. */
export const lastFlowId = (db: Db, reader: FlowReader): Promise<number> => readAs(db, reader, (tx) => maxId(tx, reader));

export function toFlow(row: FlowDbRow): Flow {
  return {
    id: String(row.id),
    time: row.time.toISOString(),
    node: row.node,
    hook: row.hook as Flow["hook"],
    verdict: row.verdict as Flow["verdict"],
    reason: row.reason as Flow["reason"],
    protocol: protocolName(row.protocol),
    source: row.source,
    destination: row.destination,
    ...(row.originalDestination ? { originalDestination: row.originalDestination } : {}),
    policy: row.policy,
  };
}

/** Most edges a summary answers, busiest (latest) first. */
export const MAX_SUMMARY_EDGES = 2000;

/** The service map: one edge per (source, destination, port, protocol) of the aggregates overlapping [since, until). */
export async function flowSummary(db: Db, reader: FlowReader, since?: string, until?: string): Promise<{ edges: FlowEdge[]; truncated: boolean }> {
  const where: SQL[] = [reader.kind === "tenant" ? eq(flowAggregates.tenantId, reader.tenantId) : eq(flowAggregates.whole, true)];
  if (since !== undefined) where.push(gte(flowAggregates.end, new Date(since)));
  if (until !== undefined) where.push(lt(flowAggregates.start, new Date(until)));
  const countOf = (v: FlowVerdict) => sql<string>`coalesce(sum(${flowAggregates.count}) FILTER (WHERE ${flowAggregates.verdict} = ${v}), 0)`;
  const rows = await readAs(db, reader, (tx) =>
    tx
      .select({
        source: flowAggregates.source,
        destination: flowAggregates.destination,
        port: flowAggregates.port,
        protocol: flowAggregates.protocol,
        forwarded: countOf("forwarded"),
        dropped: countOf("dropped"),
        audit: countOf("audit"),
        translated: countOf("translated"),
        bytes: sql<string>`sum(${flowAggregates.bytes})`,
        lastSeen: sql<Date | string>`max(${flowAggregates.end})`,
      })
      .from(flowAggregates)
      .where(and(...where))
      .groupBy(flowAggregates.source, flowAggregates.destination, flowAggregates.port, flowAggregates.protocol)
      .orderBy(sql`max(${flowAggregates.end}) DESC`, flowAggregates.port)
      .limit(MAX_SUMMARY_EDGES + 1),
  );
  const edges = rows.slice(0, MAX_SUMMARY_EDGES).map((r) => ({
    source: r.source,
    destination: r.destination,
    port: r.port,
    protocol: protocolName(r.protocol),
    counts: Object.fromEntries(FLOW_VERDICTS.map((v) => [v, Number(r[v])])) as FlowEdge["counts"],
    bytes: Number(r.bytes),
    lastSeen: new Date(r.lastSeen).toISOString(),
  }));
  return { edges, truncated: rows.length > MAX_SUMMARY_EDGES };
}
