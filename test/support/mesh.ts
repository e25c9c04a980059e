import { eq, sql } from "drizzle-orm";
import type { LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import { changeLog } from "../../api/src/db/schema.ts";
import type { WeftApp } from "../../api/src/app.ts";
import type { Problem } from "../../api/src/http/problem.ts";
import { bearer, expectProblem } from "./api.ts";
import { addressIn } from "./nodes.ts";

/** PUTs a tenant resource with a tenant token; answers the raw response. */
export function putResource(
  app: WeftApp,
  token: string,
  tenant: string,
  path: string,
  payload: unknown,
  opts: { query?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: "PUT",
    url: `/v1/tenants/${tenant}/${path}`,
    headers: { ...bearer(token), ...opts.headers },
    ...(opts.query ? { query: opts.query } : {}),
    payload: payload as object,
  });
}

/** PUTs and insists on 200 or 201: for setting the stage, not for what is under test. */
export async function mustPut(app: WeftApp, token: string, tenant: string, path: string, payload: unknown): Promise<Record<string, unknown>> {
  const res = await putResource(app, token, tenant, path, payload);
  if (res.statusCode !== 200 && res.statusCode !== 201) throw new Error(`PUT ${path}: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** Creates an identity with the given labels. */
export const identity = (app: WeftApp, token: string, tenant: string, name: string, labels: Record<string, string> = {}) =>
  mustPut(app, token, tenant, `identities/${name}`, { path: `/ns/test/sa/${name}`, selectors: labels });

/** A fresh workload address inside a node's pod CIDR block (the podCidr its registration answered, or the node's name). */
export const freshAddress = (blockOrNode: string): string => addressIn(blockOrNode);

/**
 * How many changes a tenant's log holds: "nothing written" for one tenant,
 * which stays true while other suites write to a shared Postgres (the global
 * revision does not).
 */
export async function tenantChanges(app: WeftApp, tenant: string): Promise<number> {
  const row = await app.weft.directory.byName(tenant);
  const [count] = await app.weft.db.select({ n: sql<number>`count(*)::int` }).from(changeLog).where(eq(changeLog.tenantId, row!.id));
  return count!.n;
}

/**
 * Awaits a request that must be refused with `status` (naming `field` among
 * its errors, when given) and checks that it wrote nothing to the logs of
 * `tenants`; answers the problem.
 */
export async function refusedUnwritten(app: WeftApp, tenants: string[], res: Promise<LightMyRequestResponse>, status: number, field?: string): Promise<Problem> {
  const before = await Promise.all(tenants.map((t) => tenantChanges(app, t)));
  const body = expectProblem(await res, status);
  expect(await Promise.all(tenants.map((t) => tenantChanges(app, t)))).toEqual(before);
  if (field !== undefined) expect(body.errors?.map((e) => e.field), JSON.stringify(body)).toContain(field);
  return body;
}

/**
 * A VIP inside the default service CIDR (198.19.0.0/16) that no other run on a
 * shared Postgres is likely to hold: counting up from a random start in its
 * upper half (allocation hands out the lowest free VIPs, from the bottom).
 */
let nextVip = Math.floor(Math.random() * 128 * 254);
export const freshVip = (): string => {
  const n = nextVip++ % (128 * 254);
  return `198.19.${128 + Math.floor(n / 254)}.${1 + (n % 254)}`;
};
