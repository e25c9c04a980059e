import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { sql } from "drizzle-orm";
import { HttpProblem } from "../../http/problem.ts";
import { problemResponses } from "../responses.ts";

const tags = ["system"];
const Status = Type.Object({ status: Type.String() });
const READY_TIMEOUT_MS = 2000;

const systemRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  const open = { auth: { who: "public" as const } };

  app.get(
    "/healthz",
    { config: open, schema: { tags, summary: "The process is up", response: { 200: Status } } },
    async () => ({ status: "ok" }),
  );

  app.get(
    "/readyz",
    {
      config: open,
      schema: { tags, summary: "The database answers", response: { 200: Status, ...problemResponses(503) } },
    },
    async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("timed out")), READY_TIMEOUT_MS);
      });
      try {
        await Promise.race([weft.db.execute(sql`SELECT 1`), timeout]);
      } catch (err) {
        throw new HttpProblem(503, `database unreachable: ${(err as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
      return { status: "ready" };
    },
  );

  // Public, as a bundle endpoint is: agents and Terraform pin this root, and it holds nothing secret.
  // Fetched over a connection not yet trusted, so a client must check it out of band (its SHA-256, README "TLS").
  app.get(
    "/v1/system/ca",
    {
      config: open,
      schema: {
        tags,
        summary: "The operator CA that signs the API's own serving certificate (WEFT_TLS=self), PEM; no credential needed",
        response: {
          200: { description: "The operator CA certificate, PEM", content: { "application/x-pem-file": { schema: Type.String() } } },
          ...problemResponses(404),
        },
      },
    },
    async (_request, reply) => {
      const ca = weft.servingTls?.operatorCa;
      if (!ca) throw new HttpProblem(404, "no operator CA: this API does not issue its own serving certificate (WEFT_TLS is not self)");
      return reply.type("application/x-pem-file").send(ca.certPem);
    },
  );

  app.get(
    "/metrics",
    {
      config: open,
      schema: {
        operationId: "getMetrics",
        tags,
        summary: "Prometheus metrics",
        produces: ["text/plain"],
        response: { 200: Type.String({ description: "Prometheus text exposition format" }) },
      },
    },
    async (_request, reply) => {
      reply.type(app.metrics.contentType);
      return app.metrics.metrics();
    },
  );

  app.get(
    "/v1/metrics/tenants",
    {
      // Tenant names and their activity: the operator's, like the tenant list.
      config: { auth: { who: "operator" } },
      schema: {
        tags,
        summary: "Prometheus metrics labelled by tenant (SVIDs issued, CA expiry); operator only",
        operationId: "getTenantMetrics",
        produces: ["text/plain"],
        response: { 200: Type.String({ description: "Prometheus text exposition format" }), ...problemResponses(401, 403) },
      },
    },
    async (_request, reply) => {
      reply.type(app.tenantMetrics.contentType);
      return app.tenantMetrics.metrics();
    },
  );
};

export default systemRoutes;
