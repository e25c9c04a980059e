import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { JOIN_TOKEN_PREFIX, NODE_CREDENTIAL_PREFIX, PLATFORM_TENANT_ID, newSecret } from "../../auth/node-credentials.ts";
import { DEFAULT_PAGE_SIZE, decodeCursor, page } from "../../http/conventions.ts";
import { DryRunQuery, ListQuery, Page } from "../../http/schemas.ts";
import { badRequest, notFound } from "../../http/problem.ts";
import { GroupCommit } from "../../db/group-commit.ts";
import type { NodeState } from "../../follower/history.ts";
import { isDryRun } from "../../services/context.ts";
import { NoContent, problemResponses } from "../responses.ts";
import { l7Answer } from "../l7/answer.ts";
import { addressPlanOf } from "../../mesh/addresses.ts";
import { spiffeId } from "../../ca/spiffe-id.ts";
import { DEFAULT_JOIN_TOKEN_TTL_SECONDS, JoinToken, NewJoinToken, Node, NodeParams, NodeWorkload, RegisteredNode } from "./schemas.ts";
import { NodeStatusReport, Registration } from "../../mesh/specs.ts";
import { healthTransitions, pendingHealthTransitions, recordHealth } from "../../mesh/health.ts";
import { markReachable } from "../../mesh/liveness.ts";
import {
  createJoinToken,
  deleteNode,
  getNode,
  listNodes,
  registerNode,
  recordTransportEndpoint,
  statusWrite,
  storeStatuses,
  workloadsOnNode,
  type NodeDbRow,
  type PlacedWorkload,
  type StatusWrite,
  type StoredStatus,
} from "../../mesh/nodes.ts";

/**
 * What the compiler wants on a node now, or null when it cannot say;
 * failingOpen as its tables see it; l7Etag: its L7 document's ETag, asked
 * only of a node that reported its proxy (null: no document).
 */
type Desired = { revision: number; hash: string; failingOpen: readonly string[]; l7Etag?: string | null } | null;

/** The API representation of a stored row, against what the compiler wants on the node. */
function toNode(row: NodeDbRow, desired: Desired): Node {
  const status = (row.status ?? { counters: {}, errors: [] }) as StoredStatus;
  const applied =
    row.appliedRevision !== null && row.appliedHash !== null && row.statusAt !== null
      ? { revision: row.appliedRevision, hash: row.appliedHash, at: row.statusAt.toISOString() }
      : null;
  const unresolved = status.unresolved ?? [];
  const converged = desired !== null && applied !== null && applied.hash === desired.hash && unresolved.length === 0;
  return {
    name: row.name,
    zone: row.zone,
    labels: row.labels,
    podCidr: row.podCidr,
    createdAt: row.createdAt.toISOString(),
    desired: desired && { revision: desired.revision, hash: desired.hash },
    applied,
    converged,
    // The stored instant was set by the report that first matched; the desired
    // state may have moved since, and then it no longer means anything.
    convergedSince: converged && row.convergedSince ? row.convergedSince.toISOString() : null,
    counters: status.counters,
    errors: status.errors,
    unresolved,
    health: status.health ?? [],
    reachable: row.unreachableSince === null,
    unreachableSince: row.unreachableSince?.toISOString() ?? null,
    failingOpen: [...(desired?.failingOpen ?? [])],
    transport: status.transport ?? null,
    l7: status.l7 === undefined ? null : { ...status.l7, converged: status.l7.appliedEtag !== undefined && status.l7.appliedEtag === desired?.l7Etag },
  };
}

/** A workload as the node's agent needs it: what to attach to and which SVIDs to fetch. */
const toNodeWorkload = (r: PlacedWorkload): NodeWorkload => ({
  tenant: r.tenant,
  name: r.name,
  identity: r.identity,
  addresses: r.addresses,
  ...(r.interface ? { interface: r.interface } : {}),
  spiffeId: spiffeId(r.trustDomain, r.path),
  ...(r.healthCheck ? { healthCheck: r.healthCheck } : {}),
});

const tags = ["nodes"];

const nodeRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  const desiredIn = (current: NodeState | null): Desired =>
    current && { revision: current.revision, hash: current.datapath.hash, failingOpen: current.datapath.failingOpen };
  const desiredOf = async (node: string, glance = false): Promise<Desired> =>
    desiredIn(await (glance ? weft.follower.glance(node) : weft.follower.current(node)));
  /** toNode, with the L7 document's ETag when the node reported its proxy (compiled only then). */
  const present = async (row: NodeDbRow, desired: Desired): Promise<Node> => {
    if (desired === null || (row.status as StoredStatus | null)?.l7 === undefined) return toNode(row, desired);
    return toNode(row, { ...desired, l7Etag: (await l7Answer(weft.follower, row.name))?.etag ?? null });
  };
  // Every agent reports every few seconds (10,000 nodes: 2,000 a second): reports arriving together share one
  // transaction, and each is answered once it is stored.
  const statusReports = new GroupCommit((batch: StatusWrite[]) => storeStatuses(weft.db, batch), 256, weft.config.dbPoolWaitMs);

  app.post(
    "/v1/join-tokens",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "Mint a one-time join token for registering a node (shown once); it fixes the node's labels, and optionally its name and zone",
        querystring: DryRunQuery,
        body: NewJoinToken,
        response: { 201: JoinToken, ...problemResponses(400, 401, 403) },
      },
    },
    async (request, reply) => {
      const token = newSecret(JOIN_TOKEN_PREFIX);
      const { ttlSeconds, labels, name, zone } = request.body;
      const ttl = ttlSeconds ?? DEFAULT_JOIN_TOKEN_TTL_SECONDS;
      const row = await weft.writeFor(request, PLATFORM_TENANT_ID, (w) => createJoinToken(w, token, ttl, { labels, name, zone }));
      return reply.code(201).send({
        id: row.id,
        expiresAt: row.expiresAt.toISOString(),
        labels: row.labels,
        name: row.name,
        zone: row.zone,
        ...(isDryRun(request) ? {} : { token }),
      });
    },
  );

  app.post(
    "/v1/nodes/register",
    {
      // The join token in the body is this route's credential.
      config: { auth: { who: "public" } },
      schema: {
        tags,
        summary: "Register a node with a one-time join token; the node gets the token's labels; answers the node's credential (shown once)",
        body: Registration,
        response: { 201: RegisteredNode, ...problemResponses(400, 401, 403, 409, 503) },
      },
    },
    async (request, reply) => {
      const credential = newSecret(NODE_CREDENTIAL_PREFIX);
      // The audit log names the node as the actor. Nothing commits unless the
      // join token is spent in the same transaction, so the name is vouched for.
      request.principal = { kind: "node", node: request.body.name };
      const row = await weft.writeFor(request, PLATFORM_TENANT_ID, (w) => registerNode(w, request.body, credential, addressPlanOf(weft.config)));
      return reply
        .code(201)
        .header("location", `/v1/nodes/${row.name}`)
        // Not kept in the history (glance): 10,000 registrations must not make every later write compile 10,000 nodes.
        .send({ node: await present(row, await desiredOf(row.name, true)), credential });
    },
  );

  app.get(
    "/v1/nodes",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "List nodes with their desired and applied state",
        querystring: ListQuery,
        response: { 200: Page(Node), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
      const rows = await listNodes(weft.db, limit, decodeCursor<string>(request.query.cursor, "string"));
      const shown = page(rows, limit, (r) => r.name, (r) => r);
      return { ...shown, items: await Promise.all(shown.items.map(async (r) => present(r, await desiredOf(r.name)))) };
    },
  );

  app.get(
    "/v1/nodes/:node",
    {
      config: { auth: { who: "node" } },
      schema: {
        tags,
        summary: "Read a node: desired against applied state, converged or not and since when (operator or the node itself)",
        params: NodeParams,
        response: { 200: Node, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const row = await getNode(weft.db, request.params.node);
      return present(row, await desiredOf(row.name));
    },
  );

  app.get(
    "/v1/nodes/:node/workloads",
    {
      config: { auth: { who: "node" } },
      schema: {
        tags,
        summary: "List the workloads placed on a node, of every tenant, with their SPIFFE IDs (operator or the node itself)",
        params: NodeParams,
        querystring: ListQuery,
        response: { 200: Page(NodeWorkload), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { node } = request.params;
      await getNode(weft.db, node);
      const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
      const cursor = decodeCursor<string>(request.query.cursor, "string");
      const parts = cursor?.split("/");
      if (parts !== undefined && parts.length !== 2) throw badRequest("cursor is not one this API issued", [{ field: "query.cursor", message: "must be a nextCursor value from a previous page" }]);
      const after = parts && { tenant: parts[0]!, name: parts[1]! };
      const rows = await workloadsOnNode(weft.db, node, limit, after);
      return page(rows, limit, (r) => `${r.tenant}/${r.name}`, toNodeWorkload);
    },
  );

  app.put(
    "/v1/nodes/:node/status",
    {
      config: { auth: { who: "node" } },
      schema: {
        tags,
        summary: "Report what the node's agent has applied (the node's own credential)",
        params: NodeParams,
        body: NodeStatusReport,
        response: { 200: Node, ...problemResponses(400, 401, 403, 404, 503) },
      },
    },
    async (request) => {
      const { node } = request.params;
      // As a poll does: the database is asked for the newest revision only when the change feed, or the revision the
      // agent says it applied (perhaps from another replica), is past this replica's; not once per report.
      await weft.follower.settle(request.body.appliedRevision);
      const desired = desiredIn(weft.follower.state(node));
      let row = await statusReports.submit(statusWrite(node, request.body, desired?.hash ?? null));
      if (row === null) throw notFound(`node "${node}"`);
      // Observed state takes no revision, except what other nodes follow: the node's liveness, its workloads' health
      // and its transport endpoint (their transport documents).
      const transitions = await pendingHealthTransitions(weft.db, node, request.body.health ?? []);
      const endpoint = request.body.transport?.endpoint;
      const endpointMoved = endpoint !== undefined && endpoint !== row.transportEndpoint;
      if (row.unreachableSince !== null || transitions.length > 0 || endpointMoved) {
        await weft.writeFor(request, PLATFORM_TENANT_ID, async (w) => {
          await markReachable(w, node);
          if (endpointMoved) await recordTransportEndpoint(w, node, endpoint);
          // Read again under the write's lock: another replica may have recorded some of them meanwhile.
          await recordHealth(w, node, await healthTransitions(w.tx, node, request.body.health ?? []));
        });
        row = await getNode(weft.db, node);
        return present(row, await desiredOf(node));
      }
      return present(row, desired);
    },
  );

  app.delete(
    "/v1/nodes/:node",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "Delete a node; its credential stops working at once, and the workloads placed on it, of every tenant, are deleted in the same write",
        params: NodeParams,
        querystring: DryRunQuery,
        response: { 204: NoContent, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      await weft.writeFor(request, PLATFORM_TENANT_ID, (w) => deleteNode(w, request.params.node));
      return reply.code(204).send();
    },
  );
};

export default nodeRoutes;
