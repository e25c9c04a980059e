import { randomUUID } from "node:crypto";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { and, asc, eq, gt, inArray, sql } from "drizzle-orm";
import { tenantOf } from "../../auth/guard.ts";
import { scopeRank, type Scope } from "../../auth/principal.ts";
import { MintLimiter, tokenPolicy } from "../../auth/tenant-tokens.ts";
import { apiTokens, revocations, tenants } from "../../db/schema.ts";
import { read } from "../../db/transactions.ts";
import { DEFAULT_PAGE_SIZE, decodeCursor, page } from "../../http/conventions.ts";
import { fieldProblem, forbidden, HttpProblem, notFound, unauthorized } from "../../http/problem.ts";
import { DryRunQuery, ListQuery, Page, TenantParams } from "../../http/schemas.ts";
import { isDryRun } from "../../services/context.ts";
import { NoContent, problemResponses } from "../responses.ts";
import { IssuedToken, NewToken, TokenInfo, TokenParams } from "./schemas.ts";

const tags = ["tokens"];
type TokenRow = typeof apiTokens.$inferSelect;
const DEFAULT_TTL_SECONDS = 2_592_000;

/** A foreign-key violation: the tenant was deleted between the guard's lookup and the insert. */
const isForeignKeyViolation = (err: unknown): boolean => {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  return e?.code === "23503" || e?.cause?.code === "23503";
};

const toInfo = (row: TokenRow) => ({
  id: row.id,
  name: row.name,
  scopes: row.scopes as Scope[],
  createdBy: row.createdBy,
  parentId: row.parentId ?? null,
  createdAt: row.createdAt.toISOString(),
  expiresAt: row.expiresAt.toISOString(),
});

const tokenRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  const policy = tokenPolicy(weft.config);
  // Mints by tenant tokens, per tenant, per replica, in memory (bounded): N replicas admit up to N times the limit.
  const mints = new MintLimiter(policy.mintLimit);

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
        response: { 201: IssuedToken, ...problemResponses(400, 401, 403, 404, 409, 422, 429) },
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
      const { ttlSeconds } = request.body;
      if (ttlSeconds !== undefined && ttlSeconds > policy.maxTtlSeconds) {
        throw fieldProblem(422, "the token would outlive the maximum lifetime", "body.ttlSeconds", `must be at most ${policy.maxTtlSeconds} (WEFT_TOKEN_MAX_TTL)`);
      }
      // Tenant tokens' mints are limited (the operator's are not); a dry run
      // answers what the mint would answer, without using up the allowance.
      const wait = principal?.kind !== "tenant" ? 0 : isDryRun(request) ? mints.peek(tenant.id) : mints.take(tenant.id);
      if (wait > 0) {
        throw new HttpProblem(429, `tenant "${tenant.name}" may mint ${policy.mintLimit} per minute; try again in ${wait} s`, undefined, {
          "retry-after": String(wait),
        });
      }
      const id = randomUUID();
      const parentId = principal?.kind === "tenant" ? principal.tokenId : null;
      let row: TokenRow;
      try {
        row = await weft.writeFor(request, tenant.id, async (w) => {
          // Every write takes the revision counter's row lock first, so what is
          // read here is what the tenant delete or the parent's revocation that
          // committed before this write left: neither can commit in between.
          const [alive] = await w.tx.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, tenant.id));
          if (!alive) throw notFound(`tenant "${tenant.name}"`);
          let expiresAt = new Date(Date.now() + (ttlSeconds ?? Math.min(DEFAULT_TTL_SECONDS, policy.maxTtlSeconds)) * 1000);
          if (parentId !== null) {
            const [parent] = await w.tx
              .select({ expiresAt: apiTokens.expiresAt })
              .from(apiTokens)
              .where(and(eq(apiTokens.tenantId, tenant.id), eq(apiTokens.id, parentId)));
            // Revoked since the guard admitted it: it mints nothing.
            if (!parent) throw unauthorized("token revoked");
            // A child never outlives its parent: capped, and the answer's expiresAt says so.
            if (parent.expiresAt < expiresAt) expiresAt = parent.expiresAt;
          }
          const [inserted] = await w.tx
            .insert(apiTokens)
            .values({
              id,
              tenantId: tenant.id,
              name: request.body.name,
              scopes,
              createdBy: parentId !== null ? `token:${parentId}` : "operator",
              parentId,
              expiresAt,
              revision: w.revision,
            })
            .returning();
          await w.record({ tenantId: tenant.id, kind: "token", name: id, op: "upsert" }, "token.create");
          return inserted!;
        });
      } catch (err) {
        if (isForeignKeyViolation(err)) throw notFound(`tenant "${tenant.name}"`);
        throw err;
      }
      const body = { ...toInfo(row) } as ReturnType<typeof toInfo> & { token?: string };
      if (!isDryRun(request)) {
        body.token = await weft.tokens.mint({
          tokenId: id,
          tenantId: tenant.id,
          scopes,
          expiresAt: Math.floor(row.expiresAt.getTime() / 1000),
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
        summary: "Revoke a token and, transitively, every token it minted",
        params: TokenParams,
        querystring: DryRunQuery,
        response: { 204: NoContent, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const { id } = request.params;
      const deleted = await weft.writeFor(request, tenant.id, async (w) => {
        // The token and its descendants. The revision counter's lock (taken
        // first by every write) means no mint under one of them can commit
        // while this runs, nor has one that is not seen here.
        const tree = (await w.tx.execute(sql`
          WITH RECURSIVE tree(id) AS (
            SELECT id FROM api_tokens WHERE tenant_id = ${tenant.id} AND id = ${id}
            UNION
            SELECT c.id FROM api_tokens c JOIN tree ON c.parent_id = tree.id WHERE c.tenant_id = ${tenant.id}
          )
          SELECT id FROM tree`)) as unknown as { rows: { id: string }[] };
        const ids = tree.rows.map((r) => r.id);
        if (ids.length === 0) throw notFound(`token "${id}"`);
        const rows = await w.tx
          .delete(apiTokens)
          .where(and(eq(apiTokens.tenantId, tenant.id), inArray(apiTokens.id, ids)))
          .returning({ id: apiTokens.id, expiresAt: apiTokens.expiresAt });
        await w.tx
          .insert(revocations)
          .values(rows.map((r) => ({ tokenId: r.id, expiresAt: r.expiresAt, revision: w.revision })))
          .onConflictDoNothing();
        // One audit entry per token: the one asked for, then those revoked with it.
        const ordered = [...rows.filter((r) => r.id === id), ...rows.filter((r) => r.id !== id)];
        for (const r of ordered) {
          await w.record({ tenantId: tenant.id, kind: "token", name: r.id, op: "delete" }, r.id === id ? "token.revoke" : "token.revoke.cascade");
        }
        return rows;
      });
      if (!isDryRun(request)) for (const r of deleted) weft.tokens.markRevoked(r.id, r.expiresAt.getTime() / 1000);
      return reply.code(204).send();
    },
  );
};

export default tokenRoutes;
