import { randomUUID } from "node:crypto";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyServerOptions,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
  type RouteOptions,
} from "fastify";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { AuthFailureLimiter, DEFAULT_AUTH_FAILURE_LIMITS } from "./auth/failure-limiter.ts";
import { authGuard, type AuthRule } from "./auth/guard.ts";
import { NodeCredentials } from "./auth/node-credentials.ts";
import { OperatorToken } from "./auth/operator-token.ts";
import { TenantTokens, tokenPolicy } from "./auth/tenant-tokens.ts";
import { loadSigningKey } from "./auth/token-keys.ts";
import { CaService } from "./ca/service.ts";
import type { Config } from "./config.ts";
import { addressPlanOf } from "./mesh/addresses.ts";
import { assignMissingPodCidrs } from "./mesh/nodes.ts";
import { openDatabase, type Database } from "./db/client.ts";
import { clientErrorHandler, frameworkErrors, installErrorHandling } from "./http/error-handler.ts";
import { DEFAULT_JSON_LIMITS, jsonBodyParser, type JsonBodyStats } from "./http/json-body.ts";
import { DOCS_TITLE, docsPageOptions, OPENAPI_URL, SERVERS } from "./http/docs-page.ts";
import { Problem } from "./http/problem.ts";
import { ProbeQuietLogController } from "./http/request-logging.ts";
import { FORMATS } from "./http/schemas.ts";
import { buildValidator } from "./http/validation.ts";
import { assertUniqueOperationIds, operationIdOf, withNamedSchemas } from "./openapi.ts";
import { DomainMetrics } from "./plugins/domain-metrics.ts";
import { eventLoopPlugin } from "./plugins/event-loop.ts";
import { metricsPlugin } from "./plugins/metrics.ts";
import { tracingPlugin } from "./plugins/tracing.ts";
import auditRoutes from "./routes/audit/index.ts";
import caRoutes from "./routes/ca/index.ts";
import datapathRoutes from "./routes/datapath/index.ts";
import identityRoutes from "./routes/identities/index.ts";
import policyRoutes from "./routes/policies/index.ts";
import httpRouteRoutes from "./routes/http-routes/index.ts";
import trafficPolicyRoutes from "./routes/traffic-policies/index.ts";
import { BundleEndpoints } from "./mesh/bundle-endpoints.ts";
import { BundleRefresher } from "./mesh/bundle-refresher.ts";
import { jwksProblem } from "./mesh/federations.ts";
import federationRoutes from "./routes/federations/index.ts";
import serviceRoutes from "./routes/services/index.ts";
import workloadRoutes from "./routes/workloads/index.ts";
import nodeRoutes from "./routes/nodes/index.ts";
import systemRoutes from "./routes/system/index.ts";
import tenantRoutes from "./routes/tenants/index.ts";
import tokenRoutes from "./routes/tokens/index.ts";
import { CaRotationScheduler } from "./ca/rotator.ts";
import { LivenessSweeper } from "./mesh/liveness.ts";
import { activeCaExpiries, DrizzleCaStore } from "./ca/store.ts";
import { SigningPool } from "./ca/signing-pool.ts";
import { ChangeFeed } from "./services/change-feed.ts";
import { Follower } from "./follower/follow.ts";
import { resolveKek } from "./ca/kek-source.ts";
import { ServingTls } from "./tls/serving.ts";
import type { Server as TlsServer } from "node:tls";
import { makeSystemWrite, makeWriteFor, type Services } from "./services/context.ts";
import { TenantDirectory } from "./services/tenant-directory.ts";
import { FlowStreams } from "./mesh/flows/follow.ts";
import { flowPruner } from "./mesh/flows/retention.ts";
import { pruneLogs } from "./db/log-retention.ts";
import { PeriodicPruner } from "./db/pruning.ts";
import { DEFAULT_FLOW_STREAMS_PER_TENANT } from "./config.ts";
import flowRoutes from "./routes/flows/index.ts";
import transportRoutes from "./routes/transport/index.ts";
import l7Routes from "./routes/l7/index.ts";

export interface RouteEntry {
  method: string;
  url: string;
  auth: AuthRule | undefined;
  schema: RouteOptions["schema"];
  /** The route's own body limit, when it sets one (the app's is 1 MiB). */
  bodyLimit: number | undefined;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route with its access rule and schema; tests generate their matrices from it. */
    routeTable: RouteEntry[];
    /** Set only on the very first start without WEFT_OPERATOR_TOKEN: print it once. */
    generatedOperatorToken: string | undefined;
    /** How many bodies the JSON parser was handed (never a refused stranger's: the guard runs first). */
    jsonBodyStats: JsonBodyStats;
  }
  interface FastifyRequest {
    /**
     * The client's own x-request-id when it is safe (REQUEST_ID); kept beside
     * the server's id (request.id), never instead of it.
     */
    clientRequestId: string | null;
  }
}

function addFormats<A extends { addFormat(name: string, re: RegExp): unknown }>(ajv: A): A {
  for (const [name, { pattern }] of Object.entries(FORMATS)) ajv.addFormat(name, pattern);
  return ajv;
}

/** What a client's x-request-id must look like to be recorded (as clientRequestId); anything else is ignored. */
export const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const clientRequestIdOf = (headers: Record<string, string | string[] | undefined>): string | null => {
  const given = headers["x-request-id"];
  return typeof given === "string" && REQUEST_ID.test(given) ? given : null;
};

/** Each request's logger: a safe client x-request-id rides beside the server's reqId as clientRequestId. */
const childLoggerFactory: FastifyServerOptions["childLoggerFactory"] = (logger, bindings, options, raw) => {
  const clientRequestId = clientRequestIdOf(raw.headers);
  return logger.child(clientRequestId === null ? bindings : { ...bindings, clientRequestId }, options);
};

export type WeftApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export interface BuildOptions {
  /** Reuse an open database (tests share one across apps); the app then does not close it... */
  database?: Database;
  /** ...unless this says the database was opened for this app alone. */
  closesDatabase?: boolean;
  /** Where log lines go (tests read them); default stdout. Logs only when config.logLevel is not "silent". */
  logStream?: { write(line: string): unknown };
}

/** Builds the API with its storage ready and migrated; never listens. */
export async function buildApp(config: Config, opts: BuildOptions = {}): Promise<WeftApp> {
  const database = opts.database ?? openDatabase(config);
  await database.migrate();
  const db = database.db;
  // The KEK first: it seals the operator CA (for the server's TLS, needed to build it), the token signing key and the CA keys.
  const kek = resolveKek(config);
  const servingTls = config.tls ? await ServingTls.open(config.tls, { db, kek, fileCheckMs: config.tlsFileCheckMs }) : undefined;

  const serverOptions = {
    logger: config.logLevel === "silent" ? false : { level: config.logLevel, ...(opts.logStream ? { stream: opts.logStream } : {}) },
    // The server's own id, always: a client's x-request-id could collide with
    // another's or forge a trail in the audit log. A safe one is kept beside it.
    genReqId: () => randomUUID(),
    logController: new ProbeQuietLogController(),
    requestIdHeader: false,
    // Without logs Fastify skips child loggers altogether, unless a factory of its own is given.
    ...(config.logLevel === "silent" ? {} : { childLoggerFactory }),
    frameworkErrors,
    clientErrorHandler,
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
    ...(servingTls ? tlsServerOptions(servingTls, config.http2 === true) : {}),
  };
  // The server is https or http2 when TLS is on; the routes see Node's request and reply either way (HTTP/2 through its compatibility API).
  const app = Fastify(serverOptions as FastifyServerOptions).withTypeProvider<TypeBoxTypeProvider>();

  const routeTable: RouteEntry[] = [];
  app.decorate("routeTable", routeTable);
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) {
      if (method === "HEAD") continue;
      routeTable.push({ method, url: route.url, auth: route.config?.auth, schema: route.schema, bodyLimit: route.bodyLimit });
    }
  });
  app.decorateRequest("clientRequestId", null);
  // Callback style: the hot read path should not pay for a promise per hook.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    if (request.headers["x-request-id"] !== undefined) request.clientRequestId = clientRequestIdOf(request.headers);
    done();
  });

  const feed = new ChangeFeed();
  await feed.start(database);
  const { operator, generated } = await OperatorToken.establish(db, config.operatorToken);
  app.decorate("generatedOperatorToken", generated);
  app.log[kek.level](kek.note);
  const signing = await loadSigningKey(db, kek.kek, { ephemeral: kek.ephemeral });
  if (signing.otherKeks > 0) app.log.warn("token signing keys sealed under another KEK exist: give every replica the same WEFT_KEK");
  const tokens = new TenantTokens(db, signing.key, { maxTtlSeconds: tokenPolicy(config).maxTtlSeconds, feed });
  await tokens.start(config.revocationPollMs);
  const directory = new TenantDirectory(db, feed);
  // The request path and the database stay on this thread; CSR checks and signing go to the pool.
  const signingPool = config.signingWorkers ? new SigningPool(config.signingWorkers, (err) => app.log.error({ err }, "a signing worker stopped; replaced")) : undefined;
  const ca = new CaService({ store: new DrizzleCaStore(db, feed, config.dbPoolWaitMs), kek: kek.kek, ...(signingPool && { leaves: signingPool }) });
  const rotation = config.caRotation === "auto" ? new CaRotationScheduler(db, ca, app.log) : undefined;
  // Before the follower: its first load compiles every tracked node.
  const domainMetrics = new DomainMetrics();
  const follower = new Follower(db, feed, app.log, { capacity: config.mapCapacity, history: config.datapathHistory, onCompiled: (s) => domainMetrics.compiled(s) });
  await follower.start();
  domainMetrics.watch({
    caExpiries: () => activeCaExpiries(db),
    heldLongPolls: () => follower.heldLongPolls,
    onReadError: (err) => app.log.warn({ err }, "metrics: failed to read the CA expiries"),
  });
  // Nodes registered before pod CIDR blocks existed get one now (mesh/nodes.ts).
  await assignMissingPodCidrs(db, addressPlanOf(config), app.log);
  const flowStreams = new FlowStreams(db, config.flowStreamsPerTenant ?? DEFAULT_FLOW_STREAMS_PER_TENANT, (err) =>
    app.log.warn({ err }, "a flow stream failed to read; it is closed"),
  );
  await flowStreams.start(database);
  const bundleEndpoints = new BundleEndpoints({
    allowed: config.federationEndpoints ?? [],
    timeoutMs: config.federationFetchTimeoutMs,
    minRefreshMs: config.federationMinRefreshMs,
    validate: jwksProblem,
  });
  // Every replica refreshes endpoint federations' stored bundles (mesh/bundle-refresher.ts); in-process apps (tests) only when asked to.
  const bundleRefresher = new BundleRefresher(db, bundleEndpoints, config.federationEndpoints ?? [], makeSystemWrite(db, feed), app.log, config.federationRefreshMs ?? 0);
  const services: Services = {
    config,
    database,
    db,
    feed,
    directory,
    operator,
    tokens,
    ca,
    follower,
    metrics: domainMetrics,
    bundleEndpoints,
    bundleRefresher,
    flowStreams,
    writeFor: makeWriteFor(db, feed, domainMetrics),
    servingTls,
  };
  app.decorate("weft", services);
  // Liveness is the API's to decide (mesh/liveness.ts); in-process apps (tests) sweep only when asked to.
  const grace = config.nodeGraceSeconds ?? 0;
  const liveness = grace > 0 ? new LivenessSweeper(db, makeSystemWrite(db, feed, domainMetrics), grace, app.log) : undefined;
  // Every replica prunes (mesh/flows/retention.ts, db/log-retention.ts); in-process apps (tests) only when asked to.
  const pruner = config.flowRetentionMs === undefined ? undefined : flowPruner(db, config.flowRetentionMs, app.log);
  const logRetention = { changeLogMs: config.changeLogRetentionMs, auditMs: config.auditRetentionMs };
  const logPruner =
    logRetention.changeLogMs === undefined && logRetention.auditMs === undefined
      ? undefined
      : new PeriodicPruner("log entries", async () => {
          const { change_log, audit_log } = await pruneLogs(db, logRetention);
          return { change_log, audit_log };
        }, app.log);
  // Before the server waits for in-flight requests: held long polls answer at once, follow streams end.
  app.addHook("preClose", async () => {
    follower.stop();
    await flowStreams.stop();
  });
  app.addHook("onClose", async () => {
    servingTls?.stop();
    follower.stop();
    tokens.stop();
    await rotation?.stop();
    await liveness?.stop();
    await bundleRefresher.stop();
    await pruner?.stop();
    await logPruner?.stop();
    await flowStreams.stop();
    await signingPool?.close();
    await feed.stop();
    if (!opts.database || opts.closesDatabase) await database.close();
  });

  // Every 401 counts against its client's address (auth/failure-limiter.ts; the guard answers 429 past the limit).
  const failures = new AuthFailureLimiter({
    limit: config.authFailureLimit ?? DEFAULT_AUTH_FAILURE_LIMITS.limit,
    windowMs: config.authFailureWindowMs ?? DEFAULT_AUTH_FAILURE_LIMITS.windowMs,
  });
  installErrorHandling(app, { unauthorized: (request) => failures.failed(request.ip) });
  // Bodies are JSON only: text/plain would reach the schema as a string and read as "must be object"; 415 says why.
  app.removeContentTypeParser("text/plain");
  // Strict UTF-8, no duplicate keys, bounded depth and key count (http/json-body.ts).
  const jsonBodyStats: JsonBodyStats = { parsed: 0 };
  app.decorate("jsonBodyStats", jsonBodyStats);
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser(
    "application/json",
    { parseAs: "buffer" },
    jsonBodyParser(
      { maxDepth: config.jsonMaxDepth ?? DEFAULT_JSON_LIMITS.maxDepth, maxKeys: config.jsonMaxKeys ?? DEFAULT_JSON_LIMITS.maxKeys },
      jsonBodyStats,
    ),
  );
  app.addSchema(Problem);
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: DOCS_TITLE,
        version: "0.1.0",
        description: "Tenants, tokens, identities, services and policies of the Weft service mesh.",
        license: { name: "Apache-2.0", identifier: "Apache-2.0" },
      },
      servers: SERVERS,
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
        { name: "flows", description: "Flows the datapath saw: uploaded by node agents, read per tenant, followed, summarized" },
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
      const operationId = schema.operationId ?? operationIdOf([route.method].flat()[0]!, url);
      return { schema: { ...schema, security, operationId } as typeof schema, url };
    },
    transformObject: (document) => {
      if (!("openapiObject" in document)) return document.swaggerObject;
      assertUniqueOperationIds(document.openapiObject as never);
      return withNamedSchemas(document.openapiObject as never);
    },
  });
  await app.register(swaggerUi, docsPageOptions);
  await app.register(metricsPlugin, { domain: domainMetrics });
  if (config.otlpEndpoint) await app.register(tracingPlugin, { endpoint: config.otlpEndpoint });
  await app.register(eventLoopPlugin);
  await app.register(authGuard, { operator, tokens, directory, nodes: new NodeCredentials(db, feed), failures });

  await app.register(systemRoutes);
  app.get(OPENAPI_URL, { config: { auth: { who: "public" } }, schema: { hide: true } }, async () => app.swagger());
  await app.register(tenantRoutes);
  await app.register(tokenRoutes);
  await app.register(auditRoutes);
  await app.register(identityRoutes);
  await app.register(caRoutes);
  await app.register(nodeRoutes);
  await app.register(workloadRoutes);
  await app.register(serviceRoutes);
  await app.register(policyRoutes);
  await app.register(httpRouteRoutes);
  await app.register(trafficPolicyRoutes);
  await app.register(federationRoutes);
  await app.register(datapathRoutes);
  await app.register(transportRoutes);
  await app.register(l7Routes);
  await app.register(flowRoutes);
  await app.ready();
  rotation?.start();
  liveness?.start();
  if (config.federationRefreshMs !== undefined) bundleRefresher.start();
  pruner?.start();
  logPruner?.start();
  servingTls?.start(app.server as unknown as TlsServer, app.log);
  return app;
}

/**
 * Fastify's server options for TLS. With HTTP/2 the server still offers
 * http/1.1 through ALPN (agents, curl and Terraform's provider speak it);
 * sessions are closed on shutdown (Node before 24 does not), so a held long
 * poll answers at once and the process exits within its grace period.
 */
function tlsServerOptions(tls: ServingTls, http2: boolean): { https: object; http2?: boolean; forceCloseConnections?: boolean } {
  if (!http2) return { https: { ...tls.keyPair } };
  return { https: { ...tls.keyPair, allowHTTP1: true }, http2: true, forceCloseConnections: true };
}

