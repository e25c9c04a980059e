/**
 * The four routes every tenant-owned mesh resource has (workloads, services,
 * policies), with the conventions of routes/identities: PUT answers 201 or
 * 200 with an ETag, If-Match and If-None-Match: * are honoured, DELETE
 * answers 204, lists page by name, ?dryRun=true writes nothing.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type, type TSchema } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { tenantOf } from "../auth/guard.ts";
import type { Config } from "../config.ts";
import { DEFAULT_PAGE_SIZE, decodeCursor, notModified, page } from "../http/conventions.ts";
import { PreconditionHeaders } from "../http/headers.ts";
import { notFound } from "../http/problem.ts";
import { DryRunQuery, ListQuery, Page, TenantParams } from "../http/schemas.ts";
import { Name } from "../mesh/specs.ts";
import type { ResourceStore } from "../mesh/write.ts";
import { NoContent, NotModified, problemResponses } from "./responses.ts";

export interface ResourceDefinition<Spec, Row, Out extends { etag: string }> {
  /** URL segment and tag, e.g. "workloads". */
  plural: string;
  /** For summaries and 404s, e.g. "workload". */
  noun: string;
  spec: TSchema;
  resource: TSchema;
  /** The store, or how to build it from the configuration (e.g. the service VIP range). */
  store: ResourceStore<Spec, Row> | ((config: Config) => ResourceStore<Spec, Row>);
  show(row: Row): Out;
  /** What a PUT can refuse besides the shared statuses (e.g. 409 for a taken address). */
  putNote: string;
  /** When a DELETE is refused with 409 (another resource still names this one); absent: never. */
  deleteConflict?: string;
  /**
   * Node agents may PUT and DELETE this kind on their own node, with their
   * node credential, in any tenant (workloads: the agent declares what it
   * runs). The store must then honour Preconditions.node and remove's node.
   */
  nodeWrites?: { note: string };
}

/** The node whose credential made the request, if a node's. */
const writingNode = (request: FastifyRequest): string | undefined =>
  request.principal?.kind === "node" ? request.principal.node : undefined;

export function resourceRoutes<Spec, Row, Out extends { etag: string }>(def: ResourceDefinition<Spec, Row, Out>): FastifyPluginAsyncTypebox {
  return async (app) => {
    const { weft } = app;
    const store = typeof def.store === "function" ? def.store(weft.config) : def.store;
    const tags = [def.plural];
    const Params = Type.Object({ tenant: Name, name: Name });
    const collection = `/v1/tenants/:tenant/${def.plural}`;
    const item = `${collection}/:name`;
    const nameOf = (request: FastifyRequest) => (request.params as { name: string }).name;
    const find = async (request: FastifyRequest) => {
      const tenant = tenantOf(request);
      const row = await store.find(weft.db, tenant.id, nameOf(request));
      if (row === null) throw notFound(`${def.noun} "${nameOf(request)}"`);
      return def.show(row);
    };

    app.get(
      collection,
      {
        config: { auth: { who: "tenant", scope: "read" } },
        schema: {
          tags,
          summary: `List ${def.plural}`,
          params: TenantParams,
          querystring: ListQuery,
          response: { 200: Page(def.resource), ...problemResponses(400, 401, 403, 404) },
        },
      },
      async (request) => {
        const tenant = tenantOf(request);
        const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
        const rows = await store.list(weft.db, tenant.id, limit, decodeCursor<string>(request.query.cursor, "string"));
        return page(rows, limit, (r) => (r as { name: string }).name, def.show);
      },
    );

    app.get(
      item,
      {
        config: { auth: { who: "tenant", scope: "read" } },
        schema: {
          tags,
          summary: `Read a ${def.noun}`,
          params: Params,
          headers: PreconditionHeaders,
          response: { 200: def.resource, 304: NotModified, ...problemResponses(400, 401, 403, 404) },
        },
      },
      async (request, reply) => {
        const shown = await find(request);
        reply.header("etag", shown.etag);
        if (notModified(shown.etag, request.headers["if-none-match"])) return reply.code(304).send();
        return shown;
      },
    );

    // Node credentials reach the write routes only where the definition allows them; the store decides per row.
    const writeRule = def.nodeWrites ? ({ who: "tenant", scope: "write", nodes: true } as const) : ({ who: "tenant", scope: "write" } as const);
    const nodeNote = def.nodeWrites ? ` ${def.nodeWrites.note}` : "";
    const deleteNote = [def.deleteConflict, def.nodeWrites?.note].filter(Boolean).join(" ");

    app.put(
      item,
      {
        config: { auth: writeRule },
        schema: {
          tags,
          summary: `Create or replace a ${def.noun}`,
          description: `${def.putNote} Refused with 422, naming the map and the node, if any node's datapath map would overflow.${nodeNote}`,
          params: Params,
          querystring: DryRunQuery,
          headers: PreconditionHeaders,
          body: def.spec,
          response: { 200: def.resource, 201: def.resource, ...problemResponses(400, 401, 403, 404, 409, 412, 422) },
        },
      },
      async (request, reply) => {
        const tenant = tenantOf(request);
        const { row, intent } = await weft.writeFor(request, tenant.id, (w) =>
          store.put(w, weft.follower, tenant, nameOf(request), request.body as Spec, {
            ifMatch: request.headers["if-match"],
            ifNoneMatch: request.headers["if-none-match"],
            node: writingNode(request),
          }),
        );
        const shown = def.show(row);
        return reply.code(intent === "create" ? 201 : 200).header("etag", shown.etag).send(shown);
      },
    );

    app.delete(
      item,
      {
        config: { auth: writeRule },
        schema: {
          tags,
          summary: `Delete a ${def.noun}`,
          ...(deleteNote ? { description: deleteNote } : {}),
          params: Params,
          querystring: DryRunQuery,
          headers: PreconditionHeaders,
          response: { 204: NoContent, ...problemResponses(400, 401, 403, 404, ...(def.deleteConflict ? [409] : []), 412, 422) },
        },
      },
      async (request, reply) => {
        const tenant = tenantOf(request);
        await weft.writeFor(request, tenant.id, (w) =>
          store.remove(w, weft.follower, tenant.id, nameOf(request), request.headers["if-match"], writingNode(request)),
        );
        return reply.code(204).send();
      },
    );
  };
}
