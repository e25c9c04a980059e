import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import { decodeCursor, notModified, page } from "../../http/conventions.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import { DEFAULT_PAGE_SIZE } from "../../http/conventions.ts";
import { DryRunQuery, ListQuery, Page, TenantParams } from "../../http/schemas.ts";
import { tenantOf } from "../../auth/guard.ts";
import { callerOf } from "../../ca/store.ts";
import { isDryRun } from "../../services/context.ts";
import type { TenantDbRow } from "../../services/tenant-directory.ts";
import { NoContent, NotModified, problemResponses } from "../responses.ts";
import { NewTenant, Tenant } from "./schemas.ts";
import { TenantSpec } from "../../mesh/specs.ts";
import { etagOf } from "../../mesh/preconditions.ts";
import { deleteTenant, listTenants, putTenant } from "../../mesh/tenants.ts";

/** The API representation of a stored row, rendered once per row: rows are immutable values (the directory caches them). */
const rendered = new WeakMap<TenantDbRow, Tenant>();
function toTenant(row: TenantDbRow): Tenant {
  let tenant = rendered.get(row);
  if (!tenant) {
    tenant = renderTenant(row);
    rendered.set(row, tenant);
  }
  return tenant;
}

const renderTenant = (row: TenantDbRow): Tenant => ({
  name: row.name,
  displayName: row.displayName,
  labels: row.labels,
  trustDomain: row.trustDomain,
  defaultAction: row.defaultAction,
  defaultTransport: row.defaultTransport,
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

const tags = ["tenants"];
const JSON_TYPE = "application/json; charset=utf-8";
/** A tenant's body as its GET route serializes it, per row: the directory's rows are immutable and shared. */
const serialized = new WeakMap<TenantDbRow, string>();

const tenantRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  const defaultTrustDomain = (name: string) => `${name}.${weft.config.trustDomainSuffix}`;
  /** A new tenant gets its CA at once, so its bundle and SVIDs are ready when creation answers. */
  const bootstrapCa = async (request: FastifyRequest, row: TenantDbRow) => {
    if (!isDryRun(request)) await weft.ca.ensure(String(row.id), row.trustDomain, callerOf(request));
  };

  app.get(
    "/v1/tenants",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "List tenants",
        querystring: ListQuery,
        response: { 200: Page(Tenant), ...problemResponses(400, 401, 403) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
      const rows = await listTenants(weft.db, limit, decodeCursor<string>(request.query.cursor, "string"));
      return page(rows, limit, (r) => r.name, toTenant);
    },
  );

  app.post(
    "/v1/tenants",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "Create a tenant",
        querystring: DryRunQuery,
        body: NewTenant,
        response: { 201: Tenant, ...problemResponses(400, 401, 403, 409) },
      },
    },
    async (request, reply) => {
      const { name, ...spec } = request.body;
      const { row } = await weft.writeFor(request, null, (w) =>
        putTenant(w, name, spec, defaultTrustDomain(name), { createOnly: true }),
      );
      await bootstrapCa(request, row);
      const tenant = toTenant(row);
      return reply.code(201).header("etag", tenant.etag).header("location", `/v1/tenants/${name}`).send(tenant);
    },
  );

  app.get(
    "/v1/tenants/:tenant",
    {
      config: { auth: { who: "tenant", scope: "read" } },
      schema: {
        tags,
        summary: "Read a tenant",
        params: TenantParams,
        headers: PreconditionHeaders,
        response: { 200: Tenant, 304: NotModified, ...problemResponses(400, 401, 403, 404) },
      },
    },
    // The hot read path (bench/api): synchronous, so no promise per request,
    // and the body is serialized once per stored version of the tenant.
    (request, reply) => {
      const row = tenantOf(request);
      const tenant = toTenant(row);
      reply.header("etag", tenant.etag);
      if (notModified(tenant.etag, request.headers["if-none-match"])) {
        reply.code(304).send();
        return;
      }
      let json = serialized.get(row);
      if (json === undefined) {
        json = String(reply.serialize(tenant));
        serialized.set(row, json);
      }
      // A string with a JSON content type goes out as it is: Fastify does not serialize it again.
      (reply as FastifyReply).type(JSON_TYPE).send(json);
    },
  );

  app.put(
    "/v1/tenants/:tenant",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "Create or replace a tenant",
        params: TenantParams,
        querystring: DryRunQuery,
        headers: PreconditionHeaders,
        body: TenantSpec,
        response: { 200: Tenant, 201: Tenant, ...problemResponses(400, 401, 403, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      const name = request.params.tenant;
      const { row, intent } = await weft.writeFor(request, null, (w) =>
        putTenant(w, name, request.body, defaultTrustDomain(name), {
          ifMatch: request.headers["if-match"],
          ifNoneMatch: request.headers["if-none-match"],
        }),
      );
      if (intent === "create") await bootstrapCa(request, row);
      const tenant = toTenant(row);
      return reply.code(intent === "create" ? 201 : 200).header("etag", tenant.etag).send(tenant);
    },
  );

  app.delete(
    "/v1/tenants/:tenant",
    {
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "Delete a tenant and everything it owns",
        params: TenantParams,
        querystring: DryRunQuery,
        headers: PreconditionHeaders,
        response: { 204: NoContent, ...problemResponses(400, 401, 403, 404, 412) },
      },
    },
    async (request, reply) => {
      const revoked = await weft.writeFor(request, null, (w) =>
        deleteTenant(w, request.params.tenant, request.headers["if-match"]),
      );
      if (!isDryRun(request)) for (const t of revoked) weft.tokens.markRevoked(t.id, t.expiresAt.getTime() / 1000);
      return reply.code(204).send();
    },
  );
};

export default tenantRoutes;
