import { randomUUID } from "node:crypto";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { and, asc, eq, gt } from "drizzle-orm";
import { tenantOf } from "../../auth/guard.ts";
import { scopeRank, type Scope } from "../../auth/principal.ts";
import { apiTokens, revocations } from "../../db/schema.ts";
import { read } from "../../db/transactions.ts";
import { DEFAULT_PAGE_SIZE, decodeCursor, page } from "../../http/conventions.ts";
import { forbidden, notFound } from "../../http/problem.ts";
import { DryRunQuery, ListQuery, Page, TenantParams } from "../../http/schemas.ts";
import { isDryRun } from "../../services/context.ts";
import { NoContent, problemResponses } from "../responses.ts";
import { IssuedToken, NewToken, TokenInfo, TokenParams } from "./schemas.ts";

const tags = ["tokens"];
type TokenRow = typeof apiTokens.$inferSelect;

const toInfo = (row: TokenRow) => ({
  id: row.id,
  name: row.name,
  scopes: row.scopes as Scope[],
  createdBy: row.createdBy,
  createdAt: row.createdAt.toISOString(),
  expiresAt: row.expiresAt.toISOString(),
});

const tokenRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;

  app.post(
    "/v1/tenants/:tenant/tokens",
    {
      config: { auth: { who: "tenant", scope: "admin" } },
      schema: {
        tags,
        summary: "Mint a tenant token (its secret is shown once)",
        params: TenantParams,
        querystring: DryRunQuery,
        body: NewToken,
        response: { 201: IssuedToken, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const { principal } = request;
      const scopes = request.body.scopes as Scope[];
      // A tenant token can hand out no more than it holds itself.
      if (principal?.kind === "tenant" && scopeRank(scopes) > scopeRank(principal.scopes)) {
        throw forbidden("a token cannot mint a token with wider scopes than its own");
      }
      const id = randomUUID();
      const expiresAt = new Date(Date.now() + (request.body.ttlSeconds ?? 2_592_000) * 1000);
      const row = await weft.writeFor(request, tenant.id, async (w) => {
        const [inserted] = await w.tx
          .insert(apiTokens)
          .values({
            id,
            tenantId: tenant.id,
            name: request.body.name,
            scopes,
            createdBy: principal?.kind === "tenant" ? `token:${principal.tokenId}` : "operator",
            expiresAt,
            revision: w.revision,
          })
          .returning();
        await w.record({ tenantId: tenant.id, kind: "token", name: id, op: "upsert" }, "token.create");
        return inserted!;
      });
      const body = { ...toInfo(row) } as ReturnType<typeof toInfo> & { token?: string };
      if (!isDryRun(request)) {
        body.token = await weft.tokens.mint({
          tokenId: id,
          tenantId: tenant.id,
          scopes,
          expiresAt: Math.floor(expiresAt.getTime() / 1000),
        });
      }
      return reply.code(201).header("location", `/v1/tenants/${tenant.name}/tokens/${id}`).send(body);
    },
  );

  app.get(
    "/v1/tenants/:tenant/tokens",
    {
      config: { auth: { who: "tenant", scope: "admin" } },
      schema: {
        tags,
        summary: "List a tenant's tokens (never their secrets)",
        params: TenantParams,
        querystring: ListQuery,
        response: { 200: Page(TokenInfo), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
      const after = decodeCursor<string>(request.query.cursor, "string");
      const rows = await read(weft.db, tenant.id, (tx) =>
        tx
          .select()
          .from(apiTokens)
          .where(and(eq(apiTokens.tenantId, tenant.id), after === undefined ? undefined : gt(apiTokens.id, after)))
          .orderBy(asc(apiTokens.id))
          .limit(limit + 1),
      );
      return page(rows, limit, (r) => r.id, toInfo);
    },
  );

  app.get(
    "/v1/tenants/:tenant/tokens/:id",
    {
      config: { auth: { who: "tenant", scope: "admin" } },
      schema: {
        tags,
        summary: "Read a token's metadata",
        params: TokenParams,
        response: { 200: TokenInfo, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const [row] = await read(weft.db, tenant.id, (tx) =>
        tx.select().from(apiTokens).where(and(eq(apiTokens.tenantId, tenant.id), eq(apiTokens.id, request.params.id))),
      );
      if (!row) throw notFound(`token "${request.params.id}"`);
      return toInfo(row);
    },
  );

  app.delete(
    "/v1/tenants/:tenant/tokens/:id",
    {
      config: { auth: { who: "tenant", scope: "admin" } },
      schema: {
        tags,
        summary: "Revoke a token",
        params: TokenParams,
        querystring: DryRunQuery,
        response: { 204: NoContent, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const { id } = request.params;
      const row = await weft.writeFor(request, tenant.id, async (w) => {
        const [deleted] = await w.tx
          .delete(apiTokens)
          .where(and(eq(apiTokens.tenantId, tenant.id), eq(apiTokens.id, id)))
          .returning();
        if (!deleted) throw notFound(`token "${id}"`);
        await w.tx.insert(revocations).values({ tokenId: id, expiresAt: deleted.expiresAt, revision: w.revision });
        await w.record({ tenantId: tenant.id, kind: "token", name: id, op: "delete" }, "token.revoke");
        return deleted;
      });
      if (!isDryRun(request)) weft.tokens.markRevoked(id, row.expiresAt.getTime() / 1000);
      return reply.code(204).send();
    },
  );
};

export default tokenRoutes;
