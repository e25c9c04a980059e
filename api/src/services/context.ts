import type { FastifyRequest } from "fastify";
import { actorOf } from "../auth/principal.ts";
import type { OperatorToken } from "../auth/operator-token.ts";
import type { TenantTokens } from "../auth/tenant-tokens.ts";
import type { CaService } from "../ca/service.ts";
import type { Config } from "../config.ts";
import type { Database, Db } from "../db/client.ts";
import { write, type WriteScope } from "../db/transactions.ts";
import type { ChangeFeed } from "./change-feed.ts";
import type { Follower } from "../follower/follow.ts";
import type { TenantDirectory } from "./tenant-directory.ts";

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
  /** Runs a write on behalf of a request, honouring ?dryRun, and tells this replica's caches at commit. */
  writeFor<T>(request: FastifyRequest, tenantId: number | null, body: (scope: WriteScope) => Promise<T>): Promise<T>;
}

declare module "fastify" {
  interface FastifyInstance {
    weft: Services;
  }
}

export const isDryRun = (request: FastifyRequest): boolean =>
  (request.query as { dryRun?: boolean } | undefined)?.dryRun === true;

export function makeWriteFor(db: Db, feed: ChangeFeed): Services["writeFor"] {
  return async (request, tenantId, body) => {
    const dryRun = isDryRun(request);
    const actor = request.principal ? actorOf(request.principal) : "anonymous";
    let revision = 0;
    const { result, changes } = await write(db, { actor, requestId: String(request.id), clientRequestId: request.clientRequestId, dryRun }, tenantId, (scope) => {
      revision = scope.revision;
      return body(scope);
    });
    // NOTIFY reaches this replica too, but later: a client that reads right
    // after its own write must not see the old version from a cache.
    feed.publish(changes.map((c) => ({ ...c, revision })));
    return result;
  };
}
