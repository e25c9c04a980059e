import type { BundleEndpoints } from "../mesh/bundle-endpoints.ts";
import type { BundleRefresher } from "../mesh/bundle-refresher.ts";
import type { FastifyRequest } from "fastify";
import { actorOf } from "../auth/principal.ts";
import type { OperatorToken } from "../auth/operator-token.ts";
import type { TenantTokens } from "../auth/tenant-tokens.ts";
import type { CaService } from "../ca/service.ts";
import type { Config } from "../config.ts";
import type { Database, Db } from "../db/client.ts";
import { write, type WriteContext, type WriteScope } from "../db/transactions.ts";
import { PLATFORM_TENANT_ID } from "../auth/node-credentials.ts";
import type { ChangeFeed } from "./change-feed.ts";
import type { Follower } from "../follower/follow.ts";
import type { DomainMetrics } from "../plugins/domain-metrics.ts";
import type { FlowStreams } from "../mesh/flows/follow.ts";
import type { TenantDirectory } from "./tenant-directory.ts";
import type { ServingTls } from "../tls/serving.ts";

/** The app's shared services, built once in buildApp and reached as app.weft. */
export interface Services {
  config: Config;
  database: Database;
  db: Db;
  feed: ChangeFeed;
  directory: TenantDirectory;
  operator: OperatorToken;
  tokens: TenantTokens;
  /** Each tenant's SPIFFE CA (tenant ids as decimal strings). */
  ca: CaService;
  /** The change-log follower: each node's compiled desired state, its history and long polls; capacity admission for writes. */
  follower: Follower;
  /** The API's domain metrics (SVIDs issued, CA expiry, long polls, compile times): plugins/domain-metrics.ts. */
  metrics: DomainMetrics;
  /** Federations' SPIFFE bundle endpoints: fetched under WEFT_FEDERATION_ENDPOINTS, cached per replica (mesh/bundle-endpoints.ts). */
  bundleEndpoints: BundleEndpoints;
  /** Keeps endpoint federations' last good bundles in Postgres for the compiler (mesh/bundle-refresher.ts). */
  bundleRefresher: BundleRefresher;
  /** Open flow follow streams on this replica, woken when any replica stores a batch. */
  flowStreams: FlowStreams;
  /** Runs a write on behalf of a request, honouring ?dryRun, and tells this replica's caches at commit. */
  writeFor<T>(request: FastifyRequest, tenantId: number | null, body: (scope: WriteScope) => Promise<T>): Promise<T>;
  /** The API's TLS (tls/serving.ts) when it serves HTTPS; its operator CA when Weft issues its own certificate. */
  servingTls: ServingTls | undefined;
}

declare module "fastify" {
  interface FastifyInstance {
    weft: Services;
  }
}

export const isDryRun = (request: FastifyRequest): boolean =>
  (request.query as { dryRun?: boolean } | undefined)?.dryRun === true;

/**
 * Runs a write and tells this replica's caches at commit. NOTIFY reaches this
 * replica too, but later: a client that reads right after its own write must
 * not see the old version from a cache.
 */
async function writeAndPublish<T>(db: Db, feed: ChangeFeed, ctx: WriteContext, tenantId: number | null, body: (scope: WriteScope) => Promise<T>): Promise<T> {
  let revision = 0;
  const { result, changes } = await write(db, ctx, tenantId, (scope) => {
    revision = scope.revision;
    return body(scope);
  });
  feed.publish(changes.map((c) => ({ ...c, revision })));
  return result;
}

/** A write on behalf of the API itself (a timer, not a request), as the platform. */
export const makeSystemWrite =
  (db: Db, feed: ChangeFeed, metrics?: DomainMetrics) =>
  <T>(actor: string, body: (scope: WriteScope) => Promise<T>): Promise<T> =>
    writeAndPublish(db, feed, { actor, requestId: `${actor}:${Date.now()}`, dryRun: false, lockHeld: metrics?.lockHeld }, PLATFORM_TENANT_ID, body);

export function makeWriteFor(db: Db, feed: ChangeFeed, metrics?: DomainMetrics): Services["writeFor"] {
  return (request, tenantId, body) => {
    const actor = request.principal ? actorOf(request.principal) : "anonymous";
    const ctx: WriteContext = { actor, requestId: String(request.id), clientRequestId: request.clientRequestId, dryRun: isDryRun(request), lockHeld: metrics?.lockHeld };
    return writeAndPublish(db, feed, ctx, tenantId, body);
  };
}
