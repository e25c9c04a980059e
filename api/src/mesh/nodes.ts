import { randomUUID } from "node:crypto";
import { and, asc, eq, getTableColumns, gt, isNotNull, isNull, sql } from "drizzle-orm";
import { NODE_KIND, PLATFORM_TENANT_ID, secretHash } from "../auth/node-credentials.ts";
import type { NodeWorkloadLookup } from "../ca/authz.ts";
import type { Db } from "../db/client.ts";
import { identities, joinTokens, nodes, tenants, workloads } from "../db/schema.ts";
import { read, write, type WriteScope } from "../db/transactions.ts";
import { firstFreeBlock, ipv4ToNumber, type AddressPlan } from "./addresses.ts";
import { formatIPv4 } from "@weft/codec";
import { parsePrefix } from "../compiler/select.ts";
import { withPlatformRead } from "../db/platform-read.ts";
import { fieldRefusal, MeshRefusal, notFound } from "./refusal.ts";
import type { HealthCheck, NodeStatusReport, Registration } from "./specs.ts";

export type NodeDbRow = typeof nodes.$inferSelect;

/** What a node last reported, as stored in its status column. */
export interface StoredStatus {
  counters: Record<string, number>;
  errors: string[];
  /** Absent in reports of agents that predate them: none. */
  unresolved?: NonNullable<NodeStatusReport["unresolved"]>;
  health?: NonNullable<NodeStatusReport["health"]>;
  /** Absent: the agent never reported a transport. */
  transport?: NonNullable<NodeStatusReport["transport"]>;
  /** Absent: the agent never reported its L7 proxy. */
  l7?: NonNullable<NodeStatusReport["l7"]>;
}

/** Parts of a report that, left out, leave what the node reported before (agents without them). */
const KEPT_WHEN_ABSENT = ["transport", "l7"] as const;
type KeptPart = (typeof KEPT_WHEN_ABSENT)[number];

/** What a join token fixes for the node it registers. */
export interface JoinTokenBinding {
  labels?: Record<string, string>;
  name?: string;
  zone?: string;
}

export async function createJoinToken(w: WriteScope, token: string, ttlSeconds: number, binding: JoinTokenBinding = {}) {
  const [row] = await w.tx
    .insert(joinTokens)
    .values({
      id: randomUUID(),
      tokenHash: secretHash(token),
      expiresAt: new Date(Date.now() + ttlSeconds * 1000),
      labels: binding.labels ?? {},
      name: binding.name ?? null,
      zone: binding.zone ?? null,
    })
    .returning();
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: "join-token", name: row!.id, op: "upsert" }, "join-token.create");
  return row!;
}

/**
 * Spends the join token and creates the node, in one transaction. The
 * conditional UPDATE takes the token's row lock: of two registrations with
 * one token, the second waits, re-reads used_at and finds it set. A name
 * conflict rolls the whole write back, so it does not burn the token.
 *
 * The node's labels are the token's, as the operator fixed them: labels
 * select which identities a node may obtain SVIDs for and declare workloads
 * of (identities' nodeSelector), so the registering party must not choose
 * them. A request that sends other labels, or a name or zone other than one
 * the token fixes, is forbidden and rolls back (the token is not spent).
 */
export async function registerNode(w: WriteScope, body: Registration, credential: string, plan: AddressPlan): Promise<NodeDbRow> {
  const [spent] = await w.tx
    .update(joinTokens)
    .set({ usedAt: sql`now()`, usedBy: body.name })
    .where(and(eq(joinTokens.tokenHash, secretHash(body.joinToken)), isNull(joinTokens.usedAt), gt(joinTokens.expiresAt, sql`now()`)))
    .returning({ id: joinTokens.id, labels: joinTokens.labels, name: joinTokens.name, zone: joinTokens.zone });
  // One answer for unknown, used and expired tokens: a caller holding none learns nothing.
  if (!spent) throw new MeshRefusal("unauthorized", "join token invalid, expired or already used");
  if (body.labels !== undefined && !sameLabels(body.labels, spent.labels)) {
    throw fieldRefusal("forbidden", "the join token fixes this node's labels; send none, or exactly the token's", "body.labels", "must equal the join token's labels");
  }
  if (spent.name !== null && body.name !== spent.name) {
    throw fieldRefusal("forbidden", "the join token fixes this node's name", "body.name", "must equal the join token's name");
  }
  if (spent.zone !== null && body.zone !== spent.zone) {
    throw fieldRefusal("forbidden", "the join token fixes this node's zone", "body.zone", "must equal the join token's zone");
  }
  const [row] = await w.tx
    .insert(nodes)
    .values({
      name: body.name,
      zone: body.zone,
      labels: spent.labels,
      podCidr: await freePodCidrBlock(w, plan),
      credentialHash: secretHash(credential),
      revision: w.revision,
    })
    .onConflictDoNothing({ target: nodes.name })
    .returning();
  if (!row) throw new MeshRefusal("conflict", `node "${body.name}" is already registered; delete it first to register it again`);
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name: body.name, op: "upsert" }, "node.register");
  return row;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}

/**
 * The lowest block of the pod CIDR that no node holds and no workload still
 * has an address in (a deleted node's block is free again once its workloads
 * are gone). Every write first takes the revision counter's row lock
 * (db/transactions.ts), so across replicas two writes never pick a block at
 * once; the unique column is the backstop (a conflict the caller may retry).
 *
 * This runs under that lock, so it reads little: one aggregate over the
 * nodes' blocks (every block only when they have a gap: nextAfterDense),
 * then whether a workload has an address in the candidate (only one
 * registered before pod CIDRs existed, or under another pool, can). Reading
 * every workload's block as well cost 25-36 ms at 10,000 nodes, every
 * writer's wait.
 */
export async function freePodCidrBlock(w: WriteScope, plan: AddressPlan): Promise<string> {
  return withPlatformRead(w.tx, async () => {
    const afterDense = await nextAfterDense(w, plan);
    let taken: string[] | undefined;
    for (;;) {
      const block = afterDense !== undefined && taken === undefined ? afterDense : firstFreeBlock(plan, (taken ??= await heldBlocks(w)));
      if (block === null) {
        throw new MeshRefusal(
          "unavailable",
          `the pod CIDR ${plan.podCidr} has no free /${plan.podCidrNodePrefix} block left (WEFT_POD_CIDR, WEFT_POD_CIDR_NODE_PREFIX); delete a node or widen the pod CIDR`,
        );
      }
      // The span's index finds the few workloads whose IPv4 addresses come near the block; the
      // unnest checks each of their addresses (migrations/0017).
      const [stray] = await w.tx
        .select({ address: sql<string>`address` })
        .from(sql`${workloads}, unnest(${workloads.addresses}) AS address`)
        .where(sql`weft_ipv4_span(${workloads.addresses}) && ${block}::inet AND address::inet <<= ${block}::inet`)
        .limit(1);
      if (!stray) return block;
      (taken ??= await heldBlocks(w)).push(block);
    }
  });
}

/**
 * Blocks are handed out lowest first, so the held ones are most often every
 * block of the pool's shape from its start up to the highest: then the
 * lowest free one is the next after it (null: none is left), found by one
 * aggregate that sends and parses nothing per node. Undefined otherwise (a
 * deleted node's block, another shape or pool): every block is read then.
 * Reading and parsing 10,000 blocks under the revision lock cost about 1 µs
 * a node for every registration.
 */
async function nextAfterDense(w: WriteScope, plan: AddressPlan): Promise<string | null | undefined> {
  const block = sql`${nodes.podCidr}::inet`;
  const size = 2 ** (32 - plan.podCidrNodePrefix);
  const [held] = await w.tx
    .select({
      highest: sql<string | null>`host(max(${block}))`,
      // Each held block of the pool's shape and inside it, and as many as from its start to the highest.
      dense: sql<boolean>`coalesce(bool_and(masklen(${block}) = ${plan.podCidrNodePrefix} AND ${block} <<= ${plan.podCidr}::inet), true)
        AND count(*) = coalesce((max(${block}) - network(${plan.podCidr}::inet)) / ${size} + 1, 0)`,
    })
    .from(nodes)
    .where(isNotNull(nodes.podCidr));
  if (!held?.dense) return undefined;
  const pool = parsePrefix(plan.podCidr);
  const next = held.highest === null ? pool.addr : ipv4ToNumber(held.highest)! + size;
  return next + size <= pool.addr + 2 ** (32 - pool.len) ? `${formatIPv4(next)}/${plan.podCidrNodePrefix}` : null;
}

/** Every block a node holds. */
async function heldBlocks(w: WriteScope): Promise<string[]> {
  const [held] = await w.tx.select({ blocks: sql<string[]>`coalesce(array_agg(${nodes.podCidr}), '{}')` }).from(nodes).where(isNotNull(nodes.podCidr));
  return held?.blocks ?? [];
}

/**
 * The node's pod CIDR block, assigned now when it has none (a node registered
 * before pod CIDRs existed gets one on first use: the first workload write
 * naming it). Null when no such node exists.
 */
export async function podCidrOf(w: WriteScope, node: string, plan: AddressPlan): Promise<{ podCidr: string } | null> {
  const [row] = await w.tx.select({ podCidr: nodes.podCidr }).from(nodes).where(eq(nodes.name, node));
  if (!row) return null;
  return { podCidr: row.podCidr ?? (await assignPodCidr(w, node, plan)) };
}

/** Gives a node that has none (as read in this write) the lowest free block. */
export async function assignPodCidr(w: WriteScope, node: string, plan: AddressPlan): Promise<string> {
  const block = await freePodCidrBlock(w, plan);
  const [set] = await w.tx
    .update(nodes)
    .set({ podCidr: block })
    .where(and(eq(nodes.name, node), isNull(nodes.podCidr)))
    .returning({ podCidr: nodes.podCidr });
  if (!set) throw new MeshRefusal("conflict", `node "${node}" changed meanwhile; retry`);
  return block;
}

/**
 * Deletes a node and, in the same write, every workload placed on it, of
 * every tenant: a node registered again under the name later starts empty and
 * inherits neither the workloads nor, through them, any identity's SVIDs.
 * Each workload's deletion is recorded in its tenant's change log and audit
 * log (action workload.delete), so agents and the compiler see it.
 */
/**
 * Start-up: nodes registered before pod CIDRs existed get a block now. Safe
 * with several replicas starting at once: the write takes the revision
 * counter's row lock first, so they run one after another, and each assigns
 * only nodes still without a block. Answers what it assigned; when the pod
 * CIDR is exhausted it logs and leaves the rest (their workload writes are refused).
 */
export async function assignMissingPodCidrs(
  db: Db,
  plan: AddressPlan,
  log: { info(msg: string): void; warn(msg: string): void },
): Promise<{ node: string; podCidr: string }[]> {
  const missing = await read(db, null, (tx) => tx.select({ name: nodes.name }).from(nodes).where(isNull(nodes.podCidr)).limit(1));
  if (missing.length === 0) return [];
  const { result } = await write(db, { actor: "system:pod-cidr", requestId: "start-up", dryRun: false }, PLATFORM_TENANT_ID, async (w) => {
    const legacy = await w.tx.select({ name: nodes.name }).from(nodes).where(isNull(nodes.podCidr)).orderBy(asc(nodes.name));
    const assigned: { node: string; podCidr: string }[] = [];
    for (const { name } of legacy) {
      let got: { podCidr: string } | null;
      try {
        got = await podCidrOf(w, name, plan);
      } catch (err) {
        if (!(err instanceof MeshRefusal) || err.kind !== "unavailable") throw err;
        log.warn(`${err.message}: ${legacy.length - assigned.length} node(s) left without a pod CIDR block`);
        break;
      }
      if (got === null) continue;
      assigned.push({ node: name, podCidr: got.podCidr });
      await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name, op: "upsert" }, "node.pod-cidr");
    }
    return assigned;
  });
  if (result.length > 0) log.info(`assigned pod CIDR blocks to ${result.length} node(s) registered before blocks existed`);
  return result;
}

export async function deleteNode(w: WriteScope, name: string): Promise<void> {
  const [deleted] = await w.tx.delete(nodes).where(eq(nodes.name, name)).returning({ name: nodes.name });
  if (!deleted) throw notFound(`node "${name}"`);
  const placed = await withPlatformRead(w.tx, () =>
    w.tx
      .select({ tenantId: workloads.tenantId, name: workloads.name })
      .from(workloads)
      .where(eq(workloads.node, name))
      .orderBy(asc(workloads.tenantId), asc(workloads.name)),
  );
  const byTenant = new Map<number, string[]>();
  for (const p of placed) byTenant.set(p.tenantId, [...(byTenant.get(p.tenantId) ?? []), p.name]);
  for (const [tenantId, names] of byTenant) {
    // Row-level security: each tenant's rows, change log and audit entries under that tenant.
    await w.setTenant(tenantId);
    await w.tx.delete(workloads).where(and(eq(workloads.tenantId, tenantId), eq(workloads.node, name)));
    for (const workload of names) await w.record({ tenantId, kind: "workload", name: workload, op: "delete" }, "workload.delete");
  }
  if (byTenant.size > 0) await w.setTenant(PLATFORM_TENANT_ID);
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name, op: "delete" }, "node.delete");
}

export async function getNode(db: Db, name: string): Promise<NodeDbRow> {
  const [row] = await read(db, null, (tx) => tx.select().from(nodes).where(eq(nodes.name, name)));
  if (!row) throw notFound(`node "${name}"`);
  return row;
}

export async function listNodes(db: Db, limit: number, after: string | undefined): Promise<NodeDbRow[]> {
  return read(db, null, (tx) =>
    tx
      .select()
      .from(nodes)
      .where(after === undefined ? undefined : gt(nodes.name, after))
      .orderBy(asc(nodes.name))
      .limit(limit + 1),
  );
}

/**
 * Other nodes' transports open streams to this endpoint, so a node must not
 * point them at loopback, at an unspecified, multicast, broadcast or
 * link-local address (where they would reach something of their own node
 * or nothing), or at port 0.
 */
function checkTransportEndpoint(endpoint: string): void {
  const [address, portText] = endpoint.split(":") as [string, string];
  const octets = address.split(".").map(Number);
  const port = Number(portText);
  const refuse = (message: string) => {
    throw fieldRefusal("malformed", "the transport endpoint is not one peers can reach", "body.transport.endpoint", message);
  };
  if (octets.some((o) => o > 255)) refuse("not an IPv4 address");
  if (port < 1 || port > 65535) refuse("the port must be 1 to 65535");
  const [a, b] = octets as [number, number];
  if (a === 0 || a === 127 || a >= 224 || (a === 169 && b === 254)) refuse("must be a unicast address of the node, not unspecified, loopback, link-local, multicast or broadcast");
}

/**
 * A node's status report as it will be stored. This is observed state, not
 * desired state: it takes no global revision, writes no change log and wakes
 * no long poll (an agent reports after every apply; feeding that back into
 * the change stream would wake every watcher for nothing). converged_since is
 * kept across reports of the same content and restarts when the content
 * changes. The transport endpoint is the exception: other nodes' transport
 * documents name it, so a new one is stored by recordTransportEndpoint, in a
 * write (the stored row still holds the old one: compare it with the report's).
 */
export interface StatusWrite {
  node: string;
  appliedRevision: number;
  hash: string;
  status: StoredStatus;
  /** Parts the report left out, which keep what the node reported before. */
  kept: readonly KeptPart[];
  /** Whether the report says the node holds what the compiler wants (converged). */
  matches: boolean;
}

/**
 * Checks a report and says what storing it writes; throws a field refusal for
 * an endpoint peers could not reach, or for what Postgres cannot store.
 */
export function statusWrite(node: string, report: NodeStatusReport, desiredHash: string | null): StatusWrite {
  const transport = report.transport;
  if (transport?.endpoint != null) checkTransportEndpoint(transport.endpoint);
  checkStorable(report);
  const status: StoredStatus = {
    counters: report.counters,
    errors: report.errors,
    unresolved: report.unresolved ?? [],
    health: report.health ?? [],
    ...(transport === undefined ? {} : { transport }),
    ...(report.l7 === undefined ? {} : { l7: report.l7 }),
  };
  return {
    node,
    appliedRevision: report.appliedRevision,
    hash: report.hash,
    status,
    kept: KEPT_WHEN_ABSENT.filter((k) => report[k] === undefined),
    // A workload the agent could not attach is not enforced: the node has not converged, whatever its maps hold.
    matches: desiredHash !== null && report.hash === desiredHash && (report.unresolved ?? []).length === 0,
  };
}

/**
 * Postgres stores no NUL in text or jsonb (SQLSTATE 22021, 22P05). Refused
 * here, naming the field: in the database, the statement this report shares
 * with other nodes' would fail, and all of them be written again one at a
 * time. (A revision past int8 is the schema's to refuse: specs.ts Revision.)
 */
function checkStorable(report: NodeStatusReport): void {
  const field = nulAt(report, "body");
  if (field !== undefined) throw fieldRefusal("malformed", "the report holds a NUL character, which cannot be stored", field, "must not contain a NUL character (\\u0000)");
}

/** The field of the first string (or object key, naming its object) in `value` that holds a NUL. */
function nulAt(value: unknown, field: string): string | undefined {
  if (typeof value === "string") return value.includes("\0") ? field : undefined;
  if (typeof value !== "object" || value === null) return undefined;
  for (const [key, inner] of Object.entries(value)) {
    const at = key.includes("\0") ? field : nulAt(inner, `${field}.${key}`);
    if (at !== undefined) return at;
  }
  return undefined;
}

/** A node's reports in one batch, folded into the one write that stores them. */
interface FoldedWrite {
  write: StatusWrite;
  /** A report before it in the batch broke the converged period (another hash, or not converged): it restarts. */
  restart: boolean;
}

/**
 * The later of two reports of one node in one batch, stored as it would be
 * after the earlier: a part it leaves out is the earlier's when that had it,
 * and the converged period restarts when the earlier had another hash or did
 * not converge.
 */
function fold(earlier: FoldedWrite, later: StatusWrite): FoldedWrite {
  const carried = later.kept.filter((k) => earlier.write.status[k] !== undefined);
  return {
    write: {
      ...later,
      status: { ...later.status, ...Object.fromEntries(carried.map((k) => [k, earlier.write.status[k]])) },
      kept: later.kept.filter((k) => !carried.includes(k)),
    },
    restart: earlier.restart || !earlier.write.matches || earlier.write.hash !== later.hash,
  };
}

/**
 * How long the batch waits for a node's row locked by another transaction
 * (a write holds it for milliseconds): past it the batch fails with 55P03,
 * and is written again item by item, so that one node's stuck row holds the
 * others' reports for two of these at most, not until it is released.
 */
const STATUS_LOCK_TIMEOUT_MS = 1_000;

/**
 * Stores several nodes' reports in one statement (a replica group-commits
 * them: routes/nodes), answering each node's row as stored, or null for a
 * node that does not exist. Two reports of one node in a batch are stored
 * as the one after the other would be, and both are answered with the row.
 */
export async function storeStatuses(db: Db, batch: readonly StatusWrite[]): Promise<(NodeDbRow | null)[]> {
  const latest = new Map<string, FoldedWrite>();
  for (const w of batch) {
    const earlier = latest.get(w.node);
    latest.set(w.node, earlier ? fold(earlier, w) : { write: w, restart: false });
  }
  // Each report's values as parameters, the way write() binds them; v's columns are prefixed so that
  // the node's own columns stay unambiguous in SET.
  const values = sql.join(
    [...latest.values()].map(
      ({ write: w, restart }) =>
        sql`(${w.node}::text, ${w.appliedRevision}::bigint, ${w.hash}::text, ${JSON.stringify(w.status)}::jsonb, ${JSON.stringify(w.kept)}::jsonb, ${w.matches}::boolean, ${restart}::boolean)`,
    ),
    sql`, `,
  );
  const rows = await read(db, null, (tx) =>
    tx
      .update(nodes)
      .set({
        appliedRevision: sql`v.r_revision`,
        appliedHash: sql`v.r_hash`,
        // A report without transport (or l7) leaves the stored one (and the endpoint column) as they were. Not
        // jsonb_strip_nulls: it strips nested nulls too, and {endpoint: null, state: "off"} would lose its endpoint.
        status: sql`v.r_status || COALESCE((SELECT jsonb_object_agg(k, ${nodes.status} -> k) FROM jsonb_array_elements_text(v.r_kept) AS k WHERE ${nodes.status} -> k IS NOT NULL), '{}'::jsonb)`,
        statusAt: sql`now()`,
        convergedSince: sql`CASE WHEN NOT v.r_matches THEN NULL WHEN NOT v.r_restart AND ${nodes.appliedHash} = v.r_hash AND ${nodes.convergedSince} IS NOT NULL THEN ${nodes.convergedSince} ELSE now() END`,
      })
      .from(sql`(VALUES ${values}) AS v(r_node, r_revision, r_hash, r_status, r_kept, r_matches, r_restart)`)
      .where(sql`${nodes.name} = v.r_node`)
      .returning(getTableColumns(nodes)),
    STATUS_LOCK_TIMEOUT_MS,
  );
  const byName = new Map(rows.map((r) => [r.name, r]));
  return batch.map((w) => byName.get(w.node) ?? null);
}

/**
 * In the write of a status report: stores the node's new transport endpoint
 * (null: none) and announces it, so that the follower (which serves the
 * transport documents from memory) reads it again. Answers whether it changed:
 * another replica may have stored the same one meanwhile.
 */
export async function recordTransportEndpoint(w: WriteScope, node: string, endpoint: string | null): Promise<boolean> {
  const [changed] = await w.tx
    .update(nodes)
    .set({ transportEndpoint: endpoint })
    .where(and(eq(nodes.name, node), sql`${nodes.transportEndpoint} IS DISTINCT FROM ${endpoint}`))
    .returning({ name: nodes.name });
  if (!changed) return false;
  await w.record({ tenantId: PLATFORM_TENANT_ID, kind: NODE_KIND, name: node, op: "upsert" }, "node.transport-endpoint");
  return true;
}

/**
 * The SVID rule's lookup: a workload of this tenant and identity registered
 * on this node, with the identity's node selector and the node's labels as
 * stored now. One statement, read on every request: nothing is cached, so a
 * selector change stops issuance with the next request (ca/authz.ts decides).
 */
export const workloadsCarrying =
  (db: Db): NodeWorkloadLookup =>
  async (node, identity) => {
    const tenantId = Number(identity.tenantId);
    const rows = await read(db, tenantId, (tx) =>
      tx
        .select({ identity: workloads.identity, nodeSelector: identities.nodeSelector, labels: nodes.labels })
        .from(workloads)
        .innerJoin(identities, and(eq(identities.tenantId, workloads.tenantId), eq(identities.name, workloads.identity)))
        .innerJoin(nodes, eq(nodes.name, workloads.node))
        .where(and(eq(workloads.tenantId, tenantId), eq(workloads.node, node), eq(workloads.identity, identity.identityName)))
        .limit(1),
    );
    return {
      labels: rows[0]?.labels ?? {},
      workloads: rows.map((r) => ({ tenantId: identity.tenantId, identityName: r.identity, nodeSelector: r.nodeSelector })),
    };
  };

/**
 * Whether `node` runs a workload of the tenant now: what lets its credential
 * obtain the node proxy's SVID in that tenant (routes/identities). Read from
 * the database on every call, as workloadsCarrying is.
 */
export async function nodeHostsTenant(db: Db, node: string, tenantId: number): Promise<boolean> {
  const rows = await read(db, tenantId, (tx) =>
    tx.select({ name: workloads.name }).from(workloads).where(and(eq(workloads.tenantId, tenantId), eq(workloads.node, node))).limit(1),
  );
  return rows.length > 0;
}

/** A workload placed on a node, with its tenant's trust domain and its identity's path. */
export interface PlacedWorkload {
  tenant: string;
  trustDomain: string;
  name: string;
  identity: string;
  addresses: string[];
  interface: string | null;
  healthCheck: HealthCheck | null;
  path: string;
}

/**
 * The workloads placed on one node, across tenants (the node serves them
 * all): a platform read, the same exception to tenant isolation the
 * compiler makes, answered only to the operator or that node.
 */
export async function workloadsOnNode(
  db: Db,
  node: string,
  limit: number,
  after: { tenant: string; name: string } | undefined,
): Promise<PlacedWorkload[]> {
  return read(db, null, (tx) =>
    withPlatformRead(tx, () =>
      tx
        .select({
          tenant: tenants.name,
          trustDomain: tenants.trustDomain,
          name: workloads.name,
          identity: workloads.identity,
          addresses: workloads.addresses,
          interface: workloads.interface,
          healthCheck: workloads.healthCheck,
          path: identities.path,
        })
        .from(workloads)
        .innerJoin(tenants, eq(tenants.id, workloads.tenantId))
        .innerJoin(identities, and(eq(identities.tenantId, workloads.tenantId), eq(identities.name, workloads.identity)))
        .where(
          and(
            eq(workloads.node, node),
            // Row comparison: the same order as ORDER BY, whatever the collation.
            after === undefined ? undefined : sql`(${tenants.name}, ${workloads.name}) > (${after.tenant}, ${after.name})`,
          ),
        )
        .orderBy(asc(tenants.name), asc(workloads.name))
        .limit(limit + 1),
    ),
  );
}

