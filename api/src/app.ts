import { randomUUID } from "node:crypto";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
  type RouteOptions,
} from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { authGuard, type AuthRule } from "./auth/guard.ts";
import { NodeCredentials } from "./auth/node-credentials.ts";
import { OperatorToken } from "./auth/operator-token.ts";
import { TenantTokens } from "./auth/tenant-tokens.ts";
import { loadSigningKey } from "./auth/token-keys.ts";
import { CaService } from "./ca/service.ts";
import type { Config } from "./config.ts";
import { openDatabase, type Database } from "./db/client.ts";
import { installErrorHandling } from "./http/error-handler.ts";
import { Problem } from "./http/problem.ts";
import { FORMATS } from "./http/schemas.ts";
import { buildValidator } from "./http/validation.ts";
import { metricsPlugin } from "./plugins/metrics.ts";
import auditRoutes from "./routes/audit/index.ts";
import caRoutes from "./routes/ca/index.ts";
import datapathRoutes from "./routes/datapath/index.ts";
import identityRoutes from "./routes/identities/index.ts";
import policyRoutes from "./routes/policies/index.ts";
import serviceRoutes from "./routes/services/index.ts";
import workloadRoutes from "./routes/workloads/index.ts";
import nodeRoutes from "./routes/nodes/index.ts";
import systemRoutes from "./routes/system/index.ts";
import tenantRoutes from "./routes/tenants/index.ts";
import tokenRoutes from "./routes/tokens/index.ts";
import { CaRotationScheduler } from "./services/ca-rotation.ts";
import { DrizzleCaStore } from "./services/ca-store.ts";
import { ChangeFeed } from "./services/change-feed.ts";
import { DatapathService } from "./services/datapath.ts";
import { resolveKek } from "./services/kek-source.ts";
import { makeWriteFor, type Services } from "./services/context.ts";
import { TenantDirectory } from "./services/tenant-directory.ts";

export interface RouteEntry {
  method: string;
  url: string;
  auth: AuthRule | undefined;
  schema: RouteOptions["schema"];
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route with its access rule and schema; tests generate their matrices from it. */
    routeTable: RouteEntry[];
    /** Set only on the very first start without WEFT_OPERATOR_TOKEN: print it once. */
    generatedOperatorToken: string | undefined;
  }
}

function addFormats<A extends { addFormat(name: string, re: RegExp): unknown }>(ajv: A): A {
  for (const [name, { pattern }] of Object.entries(FORMATS)) ajv.addFormat(name, pattern);
  return ajv;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export type WeftApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export interface BuildOptions {
  /** Reuse an open database (tests share one across apps); the app then does not close it. */
  database?: Database;
}

/** Builds the API with its storage ready and migrated; never listens. */
export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<WeftApp> {
  const database = opts.database ?? openDatabase(config);
  await database.migrate();
  const db = database.db;

  const app = Fastify({
    logger: config.logLevel === "silent" ? false : { level: config.logLevel },
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
    },
    requestIdHeader: false,
    bodyLimit: 1024 * 1024,
    connectionTimeout: 30_000,
    requestTimeout: 120_000,
    return503OnClosing: true,
    ajv: {
      // Unknown fields are an error, not silently dropped: automation must learn of its typos.
      // coerceTypes applies to query strings, path parameters and headers; bodies are never coerced (http/validation.ts).
      customOptions: { removeAdditional: false, coerceTypes: "array", allErrors: true },
      plugins: [addFormats],
    },
    // Also refuses non-finite numbers (1e400) in every part, as validation errors.
    schemaController: { compilersFactory: { buildValidator } },
    // The response serializer checks formats too (in anyOf branches): it must know ours.
    serializerOpts: { ajv: { formats: Object.fromEntries(Object.entries(FORMATS).map(([n, f]) => [n, f.pattern])) } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const routeTable: RouteEntry[] = [];
  app.decorate("routeTable", routeTable);
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) {
      if (method === "HEAD") continue;
      routeTable.push({ method, url: route.url, auth: route.config?.auth, schema: route.schema });
    }
  });
  // Callback style: the hot read path should not pay for a promise per hook.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    done();
  });

  const feed = new ChangeFeed();
  await feed.start(database);
  const { operator, generated } = await OperatorToken.establish(db, config.operatorToken);
  app.decorate("generatedOperatorToken", generated);
  const tokens = new TenantTokens(db, await loadSigningKey(db));
  await tokens.start(config.revocationPollMs);
  const directory = new TenantDirectory(db, feed);
  const kek = resolveKek(config);
  app.log[kek.level](kek.note);
  const ca = new CaService({ store: new DrizzleCaStore(db, feed), kek: kek.kek });
  const rotation = config.caRotation === "auto" ? new CaRotationScheduler(db, ca, app.log) : undefined;
  const datapath = new DatapathService(db, feed, app.log, { capacity: config.mapCapacity, history: config.datapathHistory });
  await datapath.start();
  const services: Services = {
    config,
    database,
    db,
    feed,
    directory,
    operator,
    tokens,
    ca,
    datapath,
    writeFor: makeWriteFor(db, feed),
  };
  app.decorate("weft", services);
  // Before the server waits for in-flight requests: held long polls answer at once.
  app.addHook("preClose", async () => datapath.stop());
  app.addHook("onClose", async () => {
    datapath.stop();
    tokens.stop();
    await rotation?.stop();
    await feed.stop();
    if (!opts.database) await database.close();
  });

  installErrorHandling(app);
  // Bodies are JSON only: text/plain would reach the schema as a string and read as "must be object"; 415 says why.
  app.removeContentTypeParser("text/plain");
  app.addSchema(Problem);
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "Weft control API",
        version: "0.1.0",
        description: "Tenants, tokens, identities, services and policies of the Weft service mesh.",
        license: { name: "Apache-2.0", identifier: "Apache-2.0" },
      },
      servers: [{ url: "http://127.0.0.1:8080", description: "local" }],
      tags: [
        { name: "system", description: "Health, readiness, metrics" },
        { name: "tenants", description: "Tenants (operator)" },
        { name: "tokens", description: "Tenant API tokens" },
        { name: "audit", description: "Audit and change logs" },
        { name: "identities", description: "SPIFFE identities and their SVIDs" },
        { name: "ca", description: "Each tenant's CA: trust bundle and rotation" },
        { name: "nodes", description: "Join tokens, node registration and node status" },
        { name: "workloads", description: "Workloads: a tenant's endpoints on a node" },
        { name: "services", description: "Services: VIPs, ports and backends" },
        { name: "policies", description: "Network policies between identities and CIDRs" },
        { name: "datapath", description: "Each node's compiled desired state (for node agents)" },
      ],
      components: {
        securitySchemes: {
          bearer: { type: "http", scheme: "bearer", description: "Operator token, tenant token (JWT) or node credential" },
        },
      },
    },
    refResolver: { buildLocalReference: (json, _base, _fragment, i) => String(json.$id ?? `def-${i}`) },
    transform: ({ schema, url, route }) => {
      const rule = route.config?.auth as AuthRule | undefined;
      const security = !rule || rule.who === "public" ? [] : [{ bearer: [] }];
      return { schema: { ...schema, security, operationId: operationIdOf(route.method, url) } as typeof schema, url };
    },
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  await app.register(metricsPlugin);
  await app.register(authGuard, { operator, tokens, directory, nodes: new NodeCredentials(db, feed) });

  await app.register(systemRoutes);
  app.get("/openapi.json", { config: { auth: { who: "public" } }, schema: { hide: true } }, async () => app.swagger());
  await app.register(tenantRoutes);
  await app.register(tokenRoutes);
  await app.register(auditRoutes);
  await app.register(identityRoutes);
  await app.register(caRoutes);
  await app.register(nodeRoutes);
  await app.register(workloadRoutes);
  await app.register(serviceRoutes);
  await app.register(policyRoutes);
  await app.register(datapathRoutes);
  await app.ready();
  rotation?.start();
  return app;
}

/** get /v1/tenants/:tenant/tokens -> getTenantsTenantTokens: stable, unique per route. */
function operationIdOf(method: string | string[], url: string): string {
  const words = url
    .split("/")
    .filter((p) => p && p !== "v1")
    .map((p) => p.replace(/^:/, "").replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? "").toUpperCase()))
    .map((p) => p.charAt(0).toUpperCase() + p.slice(1));
  return [method].flat()[0]!.toLowerCase() + words.join("");
}
