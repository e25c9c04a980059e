/**
 * Storing a node's batch of flows: all of it or nothing, once per batch id.
 *
 * Names are read first (names.ts), outside the write; the write then runs as
 * the flow writer role (migrations/0013). Its flows are inserted under one
 * transaction-scoped advisory lock, so flow ids grow in commit order: a
 * follow stream that has read up to id N never misses a row below N
 * committed later (follow.ts). The lock is held from the flows' insert (a
 * few thousand rows as one JSON parameter) to the commit.
 */
import { and, eq, getTableColumns, sql } from "drizzle-orm";
import type { PgTable } from "drizzle-orm/pg-core";
import type { Db } from "../../db/client.ts";
import { FLOW_WRITER_ROLE, flowAggregates, flowBatches, flows } from "../../db/schema.ts";
import type { Tx } from "../../db/transactions.ts";
import { MeshRefusal, type FieldError } from "../refusal.ts";
import { namesOf } from "./names.ts";
import type { FlowBatch, FlowBatchAccepted } from "./specs.ts";
import { aggregateRows, flowRows } from "./views.ts";

/** NOTIFY channel: a batch committed; follow streams on every replica look for new rows. */
export const FLOWS_CHANNEL = "weft_flows";
/** How far ahead of the API's clock an agent's timestamps may be. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;
/** Rows per INSERT statement (a few hundred bytes of JSON each). */
const INSERT_CHUNK = 2000;
/** Any fixed key, the same in every replica ("flow" in ASCII). */
const INGEST_LOCK_KEY = 0x666c6f77;

const FIRST_STORABLE = Date.parse("0001-01-01T00:00:00Z");
const LAST_STORABLE = Date.parse("9999-12-31T23:59:59.999Z");
export const UNSTORABLE_TIME = "must be a time from year 1 to 9999, without a leap second";

/**
 * Whether an RFC 3339 time is one JavaScript and Postgres both hold: the
 * date-time format admits a leap second (23:59:60), which Date.parse reads
 * as NaN, and year 0, which Postgres refuses.
 */
export function storableTime(value: string): boolean {
  const ms = Date.parse(value);
  return ms >= FIRST_STORABLE && ms <= LAST_STORABLE;
}

/** Time rules the schema cannot state; every broken one is named. */
export function timeErrors(batch: FlowBatch, now: number): FieldError[] {
  const errors: FieldError[] = [];
  const latest = now + MAX_CLOCK_SKEW_MS;
  const future = `must not be more than ${MAX_CLOCK_SKEW_MS / 60_000} minutes ahead of the API's clock`;
  const check = (field: string, value: string) => {
    if (!storableTime(value)) errors.push({ field, message: UNSTORABLE_TIME });
    else if (Date.parse(value) > latest) errors.push({ field, message: future });
  };
  batch.flows.forEach((f, i) => check(`body.flows.${i}.time`, f.time));
  batch.aggregates.forEach((a, i) => {
    if (Date.parse(a.start) > Date.parse(a.end)) errors.push({ field: `body.aggregates.${i}.start`, message: "must not be after end" });
    if (!storableTime(a.start)) errors.push({ field: `body.aggregates.${i}.start`, message: UNSTORABLE_TIME });
    check(`body.aggregates.${i}.end`, a.end);
  });
  return errors.slice(0, 20);
}

/** Runs `body` as the flow writer role, the only one that writes flow tables. */
export async function asFlowWriter<T>(db: Db, body: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`SELECT set_config('role', ${FLOW_WRITER_ROLE}, true)`);
    return body(tx);
  });
}

/**
 * Inserts rows (keyed by the table's property names) as one JSON parameter
 * per chunk, unpacked by jsonb_to_recordset: a few times faster than a
 * multi-row VALUES list on both PGlite and Postgres. Columns not in the rows
 * take their defaults.
 */
async function insertRows(tx: Tx, table: PgTable, rows: object[], skip: readonly string[]): Promise<void> {
  const columns = Object.entries(getTableColumns(table)).filter(([key]) => !skip.includes(key));
  const names = sql.join(columns.map(([, c]) => sql.identifier(c.name)), sql`, `);
  const types = sql.join(columns.map(([, c]) => sql`${sql.identifier(c.name)} ${sql.raw(c.getSQLType())}`), sql`, `);
  for (let i = 0; i < rows.length; i += INSERT_CHUNK) {
    const chunk = rows.slice(i, i + INSERT_CHUNK).map((row) => Object.fromEntries(columns.map(([key, c]) => [c.name, (row as Record<string, unknown>)[key] ?? null])));
    await tx.execute(sql`INSERT INTO ${table} (${names}) SELECT ${names} FROM jsonb_to_recordset(${JSON.stringify(chunk)}::jsonb) AS r(${types})`);
  }
}

const alreadyStored = async (db: Db, node: string, batchId: string): Promise<boolean> =>
  asFlowWriter(db, async (tx) =>
    (await tx.select({ node: flowBatches.node }).from(flowBatches).where(and(eq(flowBatches.node, node), eq(flowBatches.batchId, batchId))).limit(1)).length > 0,
  );

export async function ingestBatch(db: Db, node: string, batch: FlowBatch, now = Date.now()): Promise<FlowBatchAccepted> {
  const errors = timeErrors(batch, now);
  if (errors.length > 0) throw new MeshRefusal("invalid", "the batch has timestamps the API cannot take", errors);
  const duplicate: FlowBatchAccepted = { duplicate: true, flows: 0, aggregates: 0 };
  // A retry is the common duplicate: answered without resolving a name.
  if (await alreadyStored(db, node, batch.batchId)) return duplicate;
  const names = await namesOf(db, node, batch);
  const flowRowsOf = batch.flows.flatMap((f) => flowRows(names, node, f));
  const aggregateRowsOf = batch.aggregates.flatMap((a) => aggregateRows(names, node, a));
  return asFlowWriter(db, async (tx) => {
    // The same batch from two requests at once: the second waits for the first's row here, then finds it.
    const claimed = await tx.insert(flowBatches).values({ node, batchId: batch.batchId }).onConflictDoNothing().returning({ node: flowBatches.node });
    if (claimed.length === 0) return duplicate;
    await insertRows(tx, flowAggregates, aggregateRowsOf, ["id"]);
    // Only the flows' ids must follow commit order: the lock is taken as late as it can be.
    await tx.execute(sql`SELECT pg_advisory_xact_lock(${INGEST_LOCK_KEY})`);
    await insertRows(tx, flows, flowRowsOf, ["id"]);
    if (flowRowsOf.length > 0) await tx.execute(sql`SELECT pg_notify(${FLOWS_CHANNEL}, ${node})`);
    return { duplicate: false, flows: batch.flows.length, aggregates: batch.aggregates.length };
  });
}
