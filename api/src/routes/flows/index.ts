import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { tenantOf } from "../../auth/guard.ts";
import { DEFAULT_PAGE_SIZE, decodeCursor, page } from "../../http/conventions.ts";
import { DEFAULT_JSON_LIMITS, jsonBodyParser } from "../../http/json-body.ts";
import { badRequest, notFound } from "../../http/problem.ts";
import { Page, TenantParams } from "../../http/schemas.ts";
import { UNSTORABLE_TIME, ingestBatch, storableTime } from "../../mesh/flows/ingest.ts";
import { FlowMetrics } from "../../mesh/flows/metrics.ts";
import { flowSummary, listFlows, parsePosition, positionKey, toFlow, type FlowFilters, type FlowReader } from "../../mesh/flows/query.ts";
import { Flow, FlowBatch, FlowBatchAccepted, MAX_AGGREGATES_PER_BATCH, MAX_FLOWS_PER_BATCH } from "../../mesh/flows/specs.ts";
import { getNode } from "../../mesh/nodes.ts";
import { NodeParams } from "../nodes/schemas.ts";
import { problemResponses } from "../responses.ts";
import { FlowSummary, PlatformFlowQuery, SummaryQuery, TenantFlowQuery, instantOf } from "./schemas.ts";
import { DEFAULT_HEARTBEAT_MS, followFlows } from "./stream.ts";

const tags = ["flows"];

/** A full batch: 5000 aggregates of 13 keys and 2000 flows of up to 19, and a few more. */
const BATCH_MAX_KEYS = MAX_AGGREGATES_PER_BATCH * 13 + MAX_FLOWS_PER_BATCH * 19 + 16;
/** A full batch is about 2 MB of JSON; room for long numbers and whitespace. */
const BATCH_BODY_LIMIT = 4 * 1024 * 1024;

const FlowPage = Page(Flow);
/** A list answers a page as JSON, or with follow=true a stream of events. */
const listResponse = {
  description: "A page of flows, newest first; with follow=true, Server-Sent Events: `event: flow` with one flow as `data`",
  content: {
    "application/json": { schema: FlowPage },
    "text/event-stream": { schema: Type.String({ description: "event: flow\\ndata: <Flow as JSON>\\n\\n, and ': heartbeat' comments" }) },
  },
};

/** since and until as instants; since must not be after until: a window that cannot hold a flow is a mistake, not an empty answer. */
function windowOf(q: { since?: string; until?: string }): { since?: string; until?: string } {
  const now = Date.now();
  const since = q.since === undefined ? undefined : instantOf(q.since, now);
  const until = q.until === undefined ? undefined : instantOf(q.until, now);
  const window = { since, until };
  const unstorable = (["since", "until"] as const).filter((k) => window[k] !== undefined && !storableTime(window[k]));
  if (unstorable.length > 0) throw badRequest(`${unstorable.join(" and ")} out of range`, unstorable.map((k) => ({ field: `query.${k}`, message: UNSTORABLE_TIME })));
  if (since !== undefined && until !== undefined && Date.parse(since) > Date.parse(until)) {
    throw badRequest("since is after until", [{ field: "query.until", message: "must not be before since" }]);
  }
  return { ...(since === undefined ? {} : { since }), ...(until === undefined ? {} : { until }) };
}

const filtersOf = (q: FlowFilters & Record<string, unknown>): FlowFilters => {
  const { identity, sourceIdentity, destinationIdentity, service, hook, verdict, reason, node } = q;
  return Object.fromEntries(
    Object.entries({ identity, sourceIdentity, destinationIdentity, service, hook, verdict, reason, node }).filter(([, v]) => v !== undefined),
  ) as FlowFilters;
};

/** Flows: agents upload batches; tenants read their own, the operator everything. */
const flowRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  const streams = weft.flowStreams;
  const metrics = new FlowMetrics(app.metrics);

  // A batch holds more keys than any other body (WEFT_JSON_MAX_KEYS bounds those): this plugin's
  // routes parse with a limit of their own, still only after the guard has let the caller in.
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser(
    "application/json",
    { parseAs: "buffer", bodyLimit: BATCH_BODY_LIMIT },
    jsonBodyParser({ maxDepth: weft.config.jsonMaxDepth ?? DEFAULT_JSON_LIMITS.maxDepth, maxKeys: BATCH_MAX_KEYS }, app.jsonBodyStats),
  );

  app.post(
    "/v1/nodes/:node/flows",
    {
      config: { auth: { who: "node" } },
      bodyLimit: BATCH_BODY_LIMIT,
      schema: {
        tags,
        summary: "Upload a batch of flows and aggregates (the node's own credential); a batch id already stored answers 200 duplicate and stores nothing",
        description:
          "Numbers are the datapath's; the API names them as they are now and stores both, all of the batch or nothing. At most 5000 aggregates and 2000 flows; timestamps at most 5 minutes ahead of the API's clock (422 naming the field).",
        params: NodeParams,
        body: FlowBatch,
        response: { 202: FlowBatchAccepted, 200: FlowBatchAccepted, ...problemResponses(400, 401, 403, 404, 413, 422) },
      },
      onError: (_request, _reply, _err, done) => {
        metrics.refused();
        done();
      },
    },
    async (request, reply) => {
      const { node } = request.params;
      await getNode(weft.db, node);
      const accepted = await ingestBatch(weft.db, node, request.body);
      if (accepted.duplicate) {
        metrics.duplicate();
        return reply.code(200).send(accepted);
      }
      metrics.stored(request.body);
      // Streams on this replica read at once; other replicas hear the NOTIFY.
      streams.wakeAll();
      return reply.code(202).send(accepted);
    },
  );

  const follow = {
    streams,
    tokens: weft.tokens,
    heartbeatMs: weft.config.flowHeartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    onOpen: () => metrics.streams.inc(), onClose: () => metrics.streams.dec(),
  };

  const answerList = async (
    request: Parameters<typeof followFlows>[0],
    reply: Parameters<typeof followFlows>[1],
    reader: FlowReader,
    query: TenantFlowQuery,
  ) => {
    const filters = { ...filtersOf(query), ...windowOf(query) };
    if (query.follow === true) return followFlows(request, reply, follow, reader, filters);
    const limit = query.limit ?? DEFAULT_PAGE_SIZE;
    const cursor = decodeCursor<string>(query.cursor, "string");
    const rows = await listFlows(weft.db, reader, filters, limit, cursor === undefined ? undefined : parsePosition(cursor));
    return reply.send(page(rows, limit, positionKey, toFlow));
  };

  app.get(
    "/v1/tenants/:tenant/flows",
    {
      config: { auth: { who: "tenant", scope: "read" } },
      schema: {
        tags,
        summary: "List the tenant's flows, newest first, or follow them (follow=true)",
        description:
          "Flows with the tenant's workload on at least one side. The other side, when another tenant's, shows its address only (reserved: other-tenant). Filters combine with AND; identity names are the tenant's.",
        params: TenantParams,
        querystring: TenantFlowQuery,
        response: { 200: listResponse, ...problemResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request, reply) => answerList(request, reply, { kind: "tenant", tenantId: tenantOf(request).id }, request.query),
  );

  app.get(
    "/v1/flows",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "List every tenant's flows, newest first, or follow them (follow=true) (operator)",
        operationId: "listPlatformFlows",
        querystring: PlatformFlowQuery,
        response: { 200: listResponse, ...problemResponses(400, 401, 403, 404, 429) },
      },
    },
    async (request, reply) => {
      const { tenant, ...query } = request.query;
      let tenantId: number | undefined;
      if (tenant !== undefined) {
        const row = await weft.directory.byName(tenant);
        if (!row) throw notFound(`tenant "${tenant}"`);
        tenantId = row.id;
      }
      return answerList(request, reply, tenantId === undefined ? { kind: "operator" } : { kind: "operator", tenantId }, query);
    },
  );

  app.get(
    "/v1/tenants/:tenant/flows/summary",
    {
      config: { auth: { who: "tenant", scope: "read" } },
      schema: {
        tags,
        summary: "The tenant's service map: one edge per source, destination, port and protocol, with counts per verdict, from the aggregates",
        operationId: "getFlowSummary",
        params: TenantParams,
        querystring: SummaryQuery,
        response: { 200: FlowSummary, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { since, until } = windowOf(request.query);
      return flowSummary(weft.db, { kind: "tenant", tenantId: tenantOf(request).id }, since, until);
    },
  );
};

export default flowRoutes;
