import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  timestamp,
  uuid,
} from "drizzle-orm/pg-core";

const createdAt = () => timestamp("created_at", { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp("updated_at", { withTimezone: true }).notNull().defaultNow();
/** The global revision of the write that last changed a row; its ETag. */
const revision = () => bigint("revision", { mode: "number" }).notNull();
/** Tenant-owned rows: row-level security filters on this column. */
const tenantRef = () =>
  bigint("tenant_id", { mode: "number" })
    .notNull()
    .references(() => tenants.id, { onDelete: "cascade" });

/** Process-wide secrets and flags shared by every replica (operator token hash, token signing key). */
export const settings = pgTable("settings", {
  key: text("key").primaryKey(),
  value: jsonb("value").notNull(),
  updatedAt: updatedAt(),
});

/**
 * One row. Every write increments it inside its transaction, so the row lock
 * orders commits: revisions become visible in the order they were taken,
 * which is what lets readers of the change log resume from a revision.
 */
export const revisionCounter = pgTable("revision_counter", {
  id: integer("id").primaryKey(),
  revision: bigint("revision", { mode: "number" }).notNull(),
});

export const tenants = pgTable("tenants", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  name: text("name").notNull().unique(),
  displayName: text("display_name").notNull().default(""),
  labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
  trustDomain: text("trust_domain").notNull().unique(),
  revision: revision(),
  createdAt: createdAt(),
  updatedAt: updatedAt(),
});

export const apiTokens = pgTable(
  "api_tokens",
  {
    /** Also the JWT's jti. */
    id: uuid("id").primaryKey(),
    tenantId: tenantRef(),
    name: text("name").notNull(),
    scopes: text("scopes").array().notNull(),
    createdBy: text("created_by").notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revision: revision(),
    createdAt: createdAt(),
  },
  (t) => [index("api_tokens_tenant_idx").on(t.tenantId, t.id)],
);

/**
 * Revoked token ids, kept apart from api_tokens so that deleting a tenant
 * (which cascades its tokens away) still leaves the revocation for every
 * replica to pick up. Rows are useless once the token would have expired.
 */
export const revocations = pgTable(
  "revocations",
  {
    tokenId: uuid("token_id").primaryKey(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }).notNull().defaultNow(),
    /** The revision of the revoking write: replicas poll for revisions above the last one seen. */
    revision: bigint("revision", { mode: "number" }).notNull(),
  },
  (t) => [index("revocations_revision_idx").on(t.revision)],
);

export const auditLog = pgTable(
  "audit_log",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    /** No foreign key: the record of a tenant's deletion outlives the tenant row. */
    tenantId: bigint("tenant_id", { mode: "number" }).notNull(),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    resource: text("resource").notNull(),
    requestId: text("request_id").notNull(),
    revision: bigint("revision", { mode: "number" }).notNull(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("audit_log_tenant_idx").on(t.tenantId, t.id)],
);

export const changeLog = pgTable(
  "change_log",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    /** One write may change several resources; they share its revision. */
    revision: bigint("revision", { mode: "number" }).notNull(),
    tenantId: bigint("tenant_id", { mode: "number" }).notNull(),
    kind: text("kind").notNull(),
    name: text("name").notNull(),
    op: text("op", { enum: ["upsert", "delete"] }).notNull(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("change_log_tenant_idx").on(t.tenantId, t.revision)],
);

/** Tables whose rows belong to one tenant: row-level security applies to each. */
export const TENANT_OWNED_TABLES = ["api_tokens", "audit_log", "change_log"] as const;

export const APP_ROLE = "weft_app";
export const TENANT_SETTING = "weft.tenant_id";
export const tenantSettingSql = sql.raw(`current_setting('${TENANT_SETTING}', true)`);
