import { sql } from "drizzle-orm";
import type { HealthCheck } from "../mesh/specs.ts";
import type { FlowEndpointView, FlowOriginalDestinationView, FlowPeerView, FlowPolicyView } from "../mesh/flows/specs.ts";
import {
  bigint,
  boolean,
  bigserial,
  foreignKey,
  index,
  integer,
  jsonb,
  serial,
  pgSequence,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
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
  /** Verdict for a workload no policy selects in a direction. */
  defaultAction: text("default_action", { enum: ["allow", "deny"] }).notNull().default("allow"),
  /** Transport of policy rules that name none (compiler/steer.ts). */
  defaultTransport: text("default_transport", { enum: ["plaintext", "mtls"] }).notNull().default("plaintext"),
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
    /**
     * The token that minted this one; null when the operator did. No foreign
     * key: revoking a parent deletes its row and, in the same write, every
     * descendant's (routes/tokens), so none outlives the token that made it.
     */
    parentId: uuid("parent_id"),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    revision: revision(),
    createdAt: createdAt(),
  },
  (t) => [index("api_tokens_tenant_idx").on(t.tenantId, t.id), index("api_tokens_parent_idx").on(t.parentId)],
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
    /** The caller's own x-request-id, when it was safe to keep; beside the server's id, never instead of it. */
    clientRequestId: text("client_request_id"),
    revision: bigint("revision", { mode: "number" }).notNull(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("audit_log_tenant_idx").on(t.tenantId, t.id),
    // Retention finds what is older than WEFT_AUDIT_RETENTION (db/log-retention.ts).
    index("audit_log_at_idx").on(t.at),
  ],
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
  (t) => [
    index("change_log_tenant_idx").on(t.tenantId, t.revision),
    // The follower follows the log across tenants by revision (follower/follow.ts).
    index("change_log_revision_idx").on(t.revision),
    // Retention finds the newest revision older than WEFT_CHANGE_LOG_RETENTION (db/log-retention.ts).
    index("change_log_at_idx").on(t.at),
  ],
);

/**
 * One row: the change log holds every change after `prunedThrough`. Raised
 * before retention deletes anything at or below it, so a reader whose
 * snapshot misses pruned rows also sees the raised mark; a follower whose
 * applied revision is below it cannot catch up from the log and must reload.
 */
export const changeLogHorizon = pgTable("change_log_horizon", {
  id: integer("id").primaryKey(),
  prunedThrough: bigint("pruned_through", { mode: "number" }).notNull(),
});

/** Security identities 0-255 are reserved for system identities (host, world, ...). */
export const FIRST_SECURITY_IDENTITY = 256;
/**
 * Numeric security identities are u32 and unique across all tenants. A
 * sequence never hands out a number twice, which is stronger than "never
 * reused while anything refers to it", and needs no free-list. NO CYCLE: when
 * the space runs out nextval fails instead of wrapping into used numbers.
 */
export const securityIdentitySeq = pgSequence("security_identity_seq", {
  startWith: FIRST_SECURITY_IDENTITY,
  minValue: FIRST_SECURITY_IDENTITY,
  maxValue: 4_294_967_295,
  cycle: false,
});

export const identities = pgTable(
  "identities",
  {
    tenantId: tenantRef(),
    name: text("name").notNull(),
    /** SPIFFE ID path, e.g. /ns/prod/sa/web; the ID is spiffe://<tenant trust domain><path>. */
    path: text("path").notNull(),
    selectors: jsonb("selectors").$type<Record<string, string>>().notNull().default({}),
    /**
     * Which nodes may run this identity, by node labels (all must match); as
     * SPIRE's registration entries name the agents that may hand an identity
     * out. Empty matches every node.
     */
    nodeSelector: jsonb("node_selector").$type<Record<string, string>>().notNull().default({}),
    /** Whether a node credential may declare workloads of this identity itself; false: only the tenant may. */
    allowNodeRegistration: boolean("allow_node_registration").notNull().default(false),
    securityIdentity: bigint("security_identity", { mode: "number" })
      .notNull()
      .unique()
      .default(sql`nextval('security_identity_seq')`),
    /** Null: the CA's default (1 h X.509, 5 min JWT). */
    x509SvidTtlSeconds: integer("x509_svid_ttl_seconds"),
    jwtSvidTtlSeconds: integer("jwt_svid_ttl_seconds"),
    revision: revision(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.name] }),
    // One identity per SPIFFE ID: two names for one ID would give one workload two numeric identities.
    unique("identities_tenant_path_unique").on(t.tenantId, t.path),
  ],
);

/** One row per tenant with a CA: the bundle's spiffe_sequence and a compare-and-swap counter. */
export const caAuthorities = pgTable("ca_authorities", {
  tenantId: tenantRef().primaryKey(),
  sequence: bigint("sequence", { mode: "number" }).notNull(),
  /** The CA store's own optimistic-concurrency counter (not the global revision). */
  revision: bigint("revision", { mode: "number" }).notNull(),
  updatedAt: updatedAt(),
});

/** A CA slot (ca/rotation.ts): an X.509 CA and a JWT key, private keys sealed under the KEK. */
export const caSlots = pgTable(
  "ca_slots",
  {
    tenantId: tenantRef(),
    id: uuid("id").notNull(),
    status: text("status", { enum: ["prepared", "active", "old"] }).notNull(),
    notBefore: timestamp("not_before", { withTimezone: true }).notNull(),
    notAfter: timestamp("not_after", { withTimezone: true }).notNull(),
    maxIssuedNotAfter: timestamp("max_issued_not_after", { withTimezone: true }),
    caCertDer: text("ca_cert_der").notNull(),
    caKeySealed: text("ca_key_sealed").notNull(),
    jwtKid: text("jwt_kid").notNull(),
    jwtPublicKeySpki: text("jwt_public_key_spki").notNull(),
    jwtKeySealed: text("jwt_key_sealed").notNull(),
    createdAt: createdAt(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.id] })],
);

/**
 * Every SVID issued, for audit. No foreign key to ca_slots: the record of
 * what a CA signed outlives the CA once it is pruned.
 *
 * The record is also the issuance's audit entry (migrations/0016): it
 * carries who asked (actor, request ids) and the global revision it was
 * recorded at (read, not taken: ca/store.ts says why), and takes its id from
 * audit_log's sequence, so GET .../audit lists both tables as one log in one
 * id order. Issuance is the API's hottest write; one row instead of two cut
 * its database cost by about a third (bench/svid).
 * Rows written before 0016 have no actor: their audit row is in audit_log.
 * WEFT_AUDIT_RETENTION prunes them with the audit log (db/log-retention.ts).
 */
export const svidIssuances = pgTable(
  "svid_issuances",
  {
    id: bigint("id", { mode: "number" })
      .primaryKey()
      .default(sql`nextval('audit_log_id_seq')`),
    tenantId: tenantRef(),
    slotId: uuid("slot_id").notNull(),
    kind: text("kind", { enum: ["x509-svid", "jwt-svid"] }).notNull(),
    identityName: text("identity_name").notNull(),
    spiffeId: text("spiffe_id").notNull(),
    /** Hex serial of an X.509-SVID; null for a JWT-SVID. */
    serial: text("serial"),
    issuedAt: timestamp("issued_at", { withTimezone: true }).notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    /** As audit_log's columns of the same names; null on rows from before 0016 (see above). */
    actor: text("actor"),
    requestId: text("request_id"),
    clientRequestId: text("client_request_id"),
    revision: bigint("revision", { mode: "number" }),
  },
  // (tenant, id): the audit listing's order; id order is issuance order too.
  // (issued_at): retention's batches, oldest first.
  (t) => [index("svid_issuances_tenant_idx").on(t.tenantId, t.id), index("svid_issuances_issued_at_idx").on(t.issuedAt)],
);

/**
 * Workloads, services and policies keep their nested specs as jsonb: the
 * route schemas (TypeBox) validate their shape, and the compiler reads them
 * whole; nothing queries inside them.
 */
export const workloads = pgTable(
  "workloads",
  {
    tenantId: tenantRef(),
    name: text("name").notNull(),
    /** Name of an identity of the same tenant. */
    identity: text("identity").notNull(),
    node: text("node").notNull(),
    addresses: text("addresses").array().notNull(),
    /** Host-side veth the agent attaches the policy program to. */
    interface: text("interface"),
    /** What the node's agent probes (routes/workloads/schemas.ts HealthCheck, defaults filled); null: not probed. */
    healthCheck: jsonb("health_check").$type<HealthCheck>(),
    revision: revision(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  // Both indexes serve checks that run under the revision lock, once per write.
  // addresses (GIN): a workload write's clash check (`addresses && $1`, mesh/workloads.ts) runs under the
  // revision lock; without it the check reads every workload (2-3 ms at 10,000, every writer's wait).
  (t) => [
    primaryKey({ columns: [t.tenantId, t.name] }),
    index("workloads_node_idx").on(t.node),
    index("workloads_addresses_idx").using("gin", t.addresses),
    // The smallest IPv4 network holding a workload's IPv4 addresses (migrations/0017 defines the function):
    // choosing a free pod CIDR block (mesh/nodes.ts) asks which workloads have an address in the candidate.
    index("workloads_ipv4_span_idx").using("gist", sql`weft_ipv4_span(${t.addresses}) inet_ops`),
  ],
);

export const services = pgTable(
  "services",
  {
    /** Stable for the service's life: the high bits of its lookup-table ids (< 2^28). */
    id: serial("id").primaryKey(),
    tenantId: tenantRef(),
    name: text("name").notNull(),
    /** Unique across the platform: one VIP, one service. */
    vip: text("vip").notNull().unique(),
    vipAllocated: boolean("vip_allocated").notNull().default(false),
    ports: jsonb("ports").notNull(),
    backends: jsonb("backends").notNull(),
    loadBalancing: text("load_balancing", { enum: ["maglev", "random"] }).notNull().default("random"),
    preferSameZone: boolean("prefer_same_zone").notNull().default(false),
    revision: revision(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [unique("services_tenant_name_unique").on(t.tenantId, t.name)],
);

export const policies = pgTable(
  "policies",
  {
    /** Stable: the high bits of every rule id the policy writes (< 2^24). */
    id: serial("id").primaryKey(),
    tenantId: tenantRef(),
    name: text("name").notNull(),
    subject: jsonb("subject").notNull(),
    /** Null: the policy does not govern that direction. */
    ingress: jsonb("ingress"),
    egress: jsonb("egress"),
    /** "audit": staged; its rules go to the datapath's audit map only (compiler/policy.ts). */
    mode: text("mode").$type<"enforce" | "audit">().notNull().default("enforce"),
    revision: revision(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [unique("policies_tenant_name_unique").on(t.tenantId, t.name)],
);

/** HTTP routes (issue 21): the Gateway API HTTPRoute in its mesh form; a service a route names is an L7 service. */
export const httpRoutes = pgTable(
  "http_routes",
  {
    /** Stable: names the route's HAProxy sections (compiler/l7.ts). */
    id: serial("id").primaryKey(),
    tenantId: tenantRef(),
    name: text("name").notNull(),
    /** HttpRouteSpec["parentRefs"]: the services (and ports) the route takes. */
    parentRefs: jsonb("parent_refs").notNull(),
    /** HttpRouteSpec["rules"], as written. */
    rules: jsonb("rules").notNull(),
    revision: revision(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [unique("http_routes_tenant_name_unique").on(t.tenantId, t.name)],
);

/**
 * Traffic policies (issue 21): circuit breaking, outlier ejection and a
 * per-identity rate limit for one service's L7 traffic. One per service:
 * the unique (tenant, service) is the database's wall behind the API's 409.
 */
export const trafficPolicies = pgTable(
  "traffic_policies",
  {
    id: serial("id").primaryKey(),
    tenantId: tenantRef(),
    name: text("name").notNull(),
    /** TrafficPolicySpec["targetRef"], as written. */
    targetRef: jsonb("target_ref").notNull(),
    /** targetRef.name, the service: a column so that one policy per service is a unique key. */
    service: text("service").notNull(),
    /** TrafficPolicySpec["connectionPool"], as written; null when absent. */
    connectionPool: jsonb("connection_pool"),
    /** TrafficPolicySpec["outlierDetection"], as written; null when absent. */
    outlierDetection: jsonb("outlier_detection"),
    /** TrafficPolicySpec["rateLimit"], as written; null when absent. */
    rateLimit: jsonb("rate_limit"),
    revision: revision(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [unique("traffic_policies_tenant_name_unique").on(t.tenantId, t.name), unique("traffic_policies_tenant_service_unique").on(t.tenantId, t.service)],
);

/** Backend ids by "address:port", handed out once and never reused, so adding a backend renumbers none. */
export const backendIds = pgTable("backend_ids", {
  endpoint: text("endpoint").primaryKey(),
  id: serial("id").notNull().unique(),
});

/** Numeric identities of CIDR peers named by policies; from the same sequence as workload identities. */
export const cidrIdentities = pgTable("cidr_identities", {
  cidr: text("cidr").primaryKey(),
  numericId: bigint("numeric_id", { mode: "number" })
    .notNull()
    .unique()
    .default(sql`nextval('security_identity_seq')`),
});

/** Nodes belong to the platform, not to a tenant. */
export const nodes = pgTable("nodes", {
  name: text("name").primaryKey(),
  zone: text("zone").notNull(),
  labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
  /**
   * The block of WEFT_POD_CIDR this node's workload addresses come from,
   * assigned at registration; unique, so no two nodes share one. Null only
   * for nodes registered before pod CIDRs existed (they get one at start-up).
   */
  podCidr: text("pod_cidr").unique(),
  /** sha256 of the node's bearer credential; the credential itself is shown once, at registration. */
  credentialHash: text("credential_hash").notNull().unique(),
  revision: revision(),
  createdAt: createdAt(),
  appliedRevision: bigint("applied_revision", { mode: "number" }),
  appliedHash: text("applied_hash"),
  /** When the node last reached the desired state; null while it has not. */
  convergedSince: timestamp("converged_since", { withTimezone: true }),
  status: jsonb("status"),
  statusAt: timestamp("status_at", { withTimezone: true }),
  /**
   * Set by the API when no status came from the node's agent within the grace
   * period (WEFT_NODE_GRACE_SECONDS), cleared by its next report: while set,
   * backends on the node are withdrawn from every LB table.
   */
  unreachableSince: timestamp("unreachable_since", { withTimezone: true }),
  /** "IPV4:PORT" where the node's transport takes peers' streams, as its agent last reported; null: none running. */
  transportEndpoint: text("transport_endpoint"),
});

/**
 * Health of probed workloads, as their node's agent reports it. Kept apart
 * from workloads: it is observed, not declared, so a health change moves
 * neither the workload's revision nor its ETag (a tenant's conditional PUT
 * never fails on a flapping probe). A change is a write all the same (change
 * log kind "workload"), so every node's LB tables follow it.
 */
export const workloadHealth = pgTable(
  "workload_health",
  {
    tenantId: tenantRef(),
    name: text("name").notNull(),
    healthy: boolean("healthy").notNull(),
    since: timestamp("since", { withTimezone: true }).notNull(),
    /** When the API recorded the last transition (its clock): the hold-down in mesh/health.ts counts from it. */
    recordedAt: timestamp("recorded_at", { withTimezone: true }).notNull().defaultNow(),
    /** The node whose agent reported it: a report from another node never overrides it. */
    node: text("node").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.name] }),
    foreignKey({ columns: [t.tenantId, t.name], foreignColumns: [workloads.tenantId, workloads.name] }).onDelete("cascade"),
  ],
);

/** One-time tokens that buy a node credential. */
export const joinTokens = pgTable("join_tokens", {
  id: uuid("id").primaryKey(),
  tokenHash: text("token_hash").notNull().unique(),
  expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
  usedAt: timestamp("used_at", { withTimezone: true }),
  usedBy: text("used_by"),
  /**
   * What the operator fixed for the node this token registers: its labels
   * (which identities' nodeSelector it matches) and, when set, its name and
   * zone. Registration takes them from here, never from the caller.
   */
  labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
  name: text("name"),
  zone: text("zone"),
  createdAt: createdAt(),
});

/** Tables whose rows belong to one tenant: row-level security applies to each. */
export const TENANT_OWNED_TABLES = [
  "api_tokens",
  "audit_log",
  "change_log",
  "identities",
  "ca_authorities",
  "ca_slots",
  "svid_issuances",
  "workloads",
  "services",
  "policies",
  "flows",
  "flow_aggregates",
] as const;

export const APP_ROLE = "weft_app";
/** Read-only, sees every tenant: platform-wide reads switch to it (migrations/0008); nothing a request sets turns it on. */
export const PLATFORM_ROLE = "weft_platform";
/**
 * Writes flows and prunes them (migrations/0013): the one role that may
 * insert and delete rows of the flow tables, for any tenant. Request
 * transactions (weft_app) only read flows, bound to their tenant.
 */
export const FLOW_WRITER_ROLE = "weft_flow_writer";
/** Deletes change-log and audit rows past their retention, across tenants (migrations/0016). */
export const LOG_PRUNER_ROLE = "weft_log_pruner";
export const TENANT_SETTING = "weft.tenant_id";
export const tenantSettingSql = sql.raw(`current_setting('${TENANT_SETTING}', true)`);

/**
 * Trust a tenant declares in another trust domain (issue #16): another Weft
 * tenant's CA, read live and served only once that tenant declares the
 * reverse federation (mesh/federations.ts), or a SPIFFE bundle pasted as a
 * JWK set. Nothing here reaches the datapath.
 */
export const federations = pgTable(
  "federations",
  {
    tenantId: tenantRef(),
    name: text("name").notNull(),
    trustDomain: text("trust_domain").notNull(),
    /** {tenant: name} or {spiffeBundle: JWK set as pasted, validated}. */
    bundle: jsonb("bundle").notNull(),
    revision: revision(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.name] }), unique("federations_tenant_trust_domain_unique").on(t.tenantId, t.trustDomain)],
);

/**
 * The last good bundle fetched from a federation's SPIFFE bundle endpoint
 * (mesh/bundle-refresher.ts), kept apart from federations as workload_health
 * is from workloads: it is observed, not declared, so a refresh moves neither
 * the federation's revision nor its ETag. The compiler reads its jwt-svid
 * keys for the L7 proxy (follower/jwt-keys.ts). `source` names the endpoint
 * it came from (bundle-endpoints.ts sourceKey): a federation pointed
 * elsewhere does not use it. A failed fetch leaves it as it is.
 */
export const federationEndpointBundles = pgTable(
  "federation_endpoint_bundles",
  {
    tenantId: tenantRef(),
    name: text("name").notNull(),
    source: text("source").notNull(),
    /** The endpoint's keys as fetched and checked: {keys: [...]}. */
    bundle: jsonb("bundle").notNull(),
    /** When a fetch last changed it. */
    updatedAt: updatedAt(),
  },
  (t) => [
    primaryKey({ columns: [t.tenantId, t.name] }),
    foreignKey({ columns: [t.tenantId, t.name], foreignColumns: [federations.tenantId, federations.name] }).onDelete("cascade"),
  ],
);

/**
 * Upload batches already stored, per node (mesh/flows/ingest.ts): an agent
 * retrying a batch it had no answer for stores it once. Kept as long as the
 * flows themselves (WEFT_FLOW_RETENTION).
 */
export const flowBatches = pgTable(
  "flow_batches",
  {
    node: text("node").notNull(),
    batchId: uuid("batch_id").notNull(),
    receivedAt: timestamp("received_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.node, t.batchId] }), index("flow_batches_received_idx").on(t.receivedAt)],
);

/**
 * Sampled flows, one row per viewer (mesh/flows/views.ts): a flow within one
 * tenant is one row of that tenant, shown whole to the operator too; a flow
 * between two tenants is one whole row for the operator (tenant_id null) and
 * one row per tenant with the other side already redacted, so no query of a
 * tenant, whatever its filters, can read another tenant's names. Filterable
 * facts are columns; what is only shown is jsonb, shaped by the API schema.
 */
export const flows = pgTable(
  "flows",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    /** The tenant this row is shown to; null: the operator only. */
    tenantId: bigint("tenant_id", { mode: "number" }).references(() => tenants.id, { onDelete: "cascade" }),
    /** The operator's copy: every name resolved, nothing redacted. */
    whole: boolean("whole").notNull(),
    node: text("node").notNull(),
    time: timestamp("time", { withTimezone: true, precision: 3 }).notNull(),
    hook: text("hook").notNull(),
    verdict: text("verdict").notNull(),
    reason: text("reason").notNull(),
    protocol: integer("protocol").notNull(),
    /** Tenants of each side as this viewer may know them (null: none, or redacted). */
    srcTenantId: bigint("src_tenant_id", { mode: "number" }),
    dstTenantId: bigint("dst_tenant_id", { mode: "number" }),
    srcIdentity: text("src_identity"),
    dstIdentity: text("dst_identity"),
    /** The service whose VIP the connection asked for (sock hook), as named when the flow arrived. */
    service: text("service"),
    source: jsonb("source").$type<FlowEndpointView>().notNull(),
    destination: jsonb("destination").$type<FlowEndpointView>().notNull(),
    originalDestination: jsonb("original_destination").$type<FlowOriginalDestinationView>(),
    policy: jsonb("policy").$type<FlowPolicyView>(),
  },
  (t) => [
    index("flows_tenant_time_idx").on(t.tenantId, t.time, t.id),
    index("flows_time_idx").on(t.time, t.id),
  ],
);

/** Per-interval counts from the agents, one row per viewer as for flows; what the service map is drawn from. */
export const flowAggregates = pgTable(
  "flow_aggregates",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    tenantId: bigint("tenant_id", { mode: "number" }).references(() => tenants.id, { onDelete: "cascade" }),
    whole: boolean("whole").notNull(),
    node: text("node").notNull(),
    start: timestamp("start", { withTimezone: true, precision: 3 }).notNull(),
    end: timestamp("end", { withTimezone: true, precision: 3 }).notNull(),
    source: jsonb("source").$type<FlowPeerView>().notNull(),
    destination: jsonb("destination").$type<FlowPeerView>().notNull(),
    port: integer("port").notNull(),
    protocol: integer("protocol").notNull(),
    verdict: text("verdict").notNull(),
    reason: text("reason").notNull(),
    count: bigint("count", { mode: "number" }).notNull(),
    bytes: bigint("bytes", { mode: "number" }).notNull(),
  },
  (t) => [index("flow_aggregates_tenant_end_idx").on(t.tenantId, t.end), index("flow_aggregates_end_idx").on(t.end, t.id)],
);
