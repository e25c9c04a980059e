import { eq, sql } from "drizzle-orm";
import type { LightMyRequestResponse } from "fastify";
import { changeLog } from "../../api/src/db/schema.ts";
import type { WeftApp } from "../../api/src/app.ts";
import { bearer } from "./api.ts";

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

/** Addresses unique per call across suites sharing one Postgres: 10.<a>.<b>.<c> from a counter and a random base. */
let next = Math.floor(Math.random() * 200_000);
export function freshAddress(): string {
  const n = next++ % (250 * 250 * 250);
  return `10.${1 + Math.floor(n / 62_500)}.${Math.floor(n / 250) % 250}.${1 + (n % 250)}`;
}

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

/** A VIP no other run on a shared Postgres is likely to hold: 172.16.0.0/12, at random. */
export const freshVip = (): string =>
  `172.${16 + Math.floor(Math.random() * 16)}.${Math.floor(Math.random() * 256)}.${1 + Math.floor(Math.random() * 254)}`;
