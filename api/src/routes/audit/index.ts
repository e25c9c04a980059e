import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { and, asc, eq, gt, isNotNull, sql } from "drizzle-orm";
import { tenantOf } from "../../auth/guard.ts";
import { auditLog, changeLog, changeLogHorizon, svidIssuances } from "../../db/schema.ts";
import { HttpProblem } from "../../http/problem.ts";
import { read } from "../../db/transactions.ts";
import { DEFAULT_PAGE_SIZE, decodeCursor, page } from "../../http/conventions.ts";
import { ListQuery, Page, TenantParams, Timestamp } from "../../http/schemas.ts";
import { problemResponses } from "../responses.ts";

const AuditEntry = Type.Object(
  {
    id: Type.Integer(),
    actor: Type.String({ description: "operator, or token:<id>" }),
    action: Type.String({ description: "<kind>.<verb>, e.g. token.create" }),
    resource: Type.String({ description: "<kind>/<name>" }),
    requestId: Type.String({ description: "The server's own id of the request" }),
    clientRequestId: Type.Union([Type.String(), Type.Null()], { description: "The client's x-request-id, when it was a safe value; null otherwise" }),
    revision: Type.Integer(),
    at: Timestamp,
  },
  { title: "AuditEntry" },
);

const Change = Type.Object(
  {
    revision: Type.Integer(),
    kind: Type.String(),
    name: Type.String(),
    op: Type.Union([Type.Literal("upsert"), Type.Literal("delete")]),
    at: Timestamp,
  },
  { title: "Change" },
);

const ChangesQuery = Type.Composite([
  ListQuery,
  Type.Object({ since: Type.Optional(Type.Integer({ minimum: 0, description: "Changes after this revision" })) }),
], { additionalProperties: false });

/** The two logs every write appends to: who did what (audit), and what changed (changes). */
const logRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;

  app.get(
    "/v1/tenants/:tenant/audit",
    {
      config: { auth: { who: "tenant", scope: "admin" } },
      schema: {
        operationId: "listAuditEntries",
        tags: ["audit"],
        summary: "Read the tenant's audit log, oldest first",
        params: TenantParams,
        querystring: ListQuery,
        response: { 200: Page(AuditEntry), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
      const after = decodeCursor<number>(request.query.cursor, "number");
      // Two tables, one log: an SVID issuance's record is its audit entry (svidIssuances in
      // db/schema.ts), with an id from the same sequence, listed as the row audit_log held for it before.
      const rows = await read(weft.db, tenant.id, (tx) =>
        tx
          .select({
            id: auditLog.id,
            actor: auditLog.actor,
            action: auditLog.action,
            resource: auditLog.resource,
            requestId: auditLog.requestId,
            clientRequestId: auditLog.clientRequestId,
            revision: auditLog.revision,
            at: auditLog.at,
          })
          .from(auditLog)
          .where(and(eq(auditLog.tenantId, tenant.id), after === undefined ? undefined : gt(auditLog.id, after)))
          .unionAll(
            tx
              .select({
                id: svidIssuances.id,
                actor: sql<string>`${svidIssuances.actor}`,
                action: sql<string>`${svidIssuances.kind} || '.issue'`,
                resource: sql<string>`'identity/' || ${svidIssuances.identityName}`,
                requestId: sql<string>`${svidIssuances.requestId}`,
                clientRequestId: svidIssuances.clientRequestId,
                revision: sql<number>`${svidIssuances.revision}`,
                at: svidIssuances.issuedAt,
              })
              .from(svidIssuances)
              // Records from before they carried their audit (migrations/0016) have it in audit_log.
              .where(and(eq(svidIssuances.tenantId, tenant.id), isNotNull(svidIssuances.actor), after === undefined ? undefined : gt(svidIssuances.id, after))),
          )
          .orderBy(asc(sql`id`))
          .limit(limit + 1),
      );
      return page(rows, limit, (r) => r.id, (r) => ({ ...r, at: r.at.toISOString() }));
    },
  );

  app.get(
    "/v1/tenants/:tenant/changes",
    {
      config: { auth: { who: "tenant", scope: "read" } },
      schema: {
        tags: ["audit"],
        summary: "Read the tenant's changes after a revision, in commit order",
        params: TenantParams,
        querystring: ChangesQuery,
        description:
          "Without `since`, the changes the log still holds (WEFT_CHANGE_LOG_RETENTION). With `since` older than what retention kept, 410: a partial answer would read as \"nothing else changed\".",
        response: { 200: Page(Change), ...problemResponses(400, 401, 403, 404, 410) },
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
      const afterId = decodeCursor<number>(request.query.cursor, "number");
      const since = request.query.since;
      const rows = await read(weft.db, tenant.id, async (tx) => {
        // Read in the same snapshot as the rows: retention raises the horizon before it deletes.
        const [horizon] = await tx.select({ prunedThrough: changeLogHorizon.prunedThrough }).from(changeLogHorizon);
        const prunedThrough = horizon?.prunedThrough ?? 0;
        if (since !== undefined && since < prunedThrough) {
          throw new HttpProblem(410, `changes after revision ${since} are no longer kept: the log holds the changes after revision ${prunedThrough}`);
        }
        return tx
          .select()
          .from(changeLog)
          .where(
            and(
              eq(changeLog.tenantId, tenant.id),
              gt(changeLog.revision, since ?? 0),
              afterId === undefined ? undefined : gt(changeLog.id, afterId),
            ),
          )
          .orderBy(asc(changeLog.id))
          .limit(limit + 1);
      });
      return page(rows, limit, (r) => r.id, (r) => ({
        revision: r.revision,
        kind: r.kind,
        name: r.name,
        op: r.op,
        at: r.at.toISOString(),
      }));
    },
  );
};

export default logRoutes;
