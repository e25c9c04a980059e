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

/** A tenant and tokens of it: one that writes, one that only reads. */
export interface KindOwner {
  tenant: string;
  token: string;
  readToken: string;
}

/**
 * The conventions every tenant kind's routes keep (routes/tenant-resource.ts),
 * checked end to end on `plural`: PUT answers 201 with the spec as written
 * and an ETag, GET and If-None-Match (304), If-None-Match: * and a stale
 * If-Match refused (412) with nothing written, a replace under If-Match (200,
 * a new ETag, createdAt kept), paging by name, DELETE under a stale If-Match
 * refused, DELETE then GET 404, a second DELETE 404. `items` are two
 * resources of distinct names; the first is also replaced by `replacement`.
 * Both are deleted at the end.
 */
export async function expectResourceConventions(
  app: WeftApp,
  owner: KindOwner,
  plural: string,
  items: [{ name: string; spec: object; replacement: object }, { name: string; spec: object }],
): Promise<void> {
  const { tenant, token, readToken } = owner;
  const [item, other] = items;
  const url = (name: string) => `/v1/tenants/${tenant}/${plural}/${name}`;
  const refused = (res: Promise<LightMyRequestResponse>, status: number) => refusedUnwritten(app, [tenant], res, status);
  const created = await putResource(app, token, tenant, `${plural}/${item.name}`, item.spec);
  expect(created.statusCode, created.body).toBe(201);
  const etag = created.headers.etag as string;
  expect(created.json()).toEqual({ name: item.name, ...item.spec, etag, createdAt: expect.any(String), updatedAt: expect.any(String) });
  const read = await app.inject({ url: url(item.name), headers: bearer(readToken) });
  expect(read.statusCode).toBe(200);
  expect(read.json()).toEqual(created.json());
  expect((await app.inject({ url: url(item.name), headers: { ...bearer(token), "if-none-match": etag } })).statusCode).toBe(304);

  // If-None-Match: * makes a PUT create-only; If-Match must name the current version.
  await refused(putResource(app, token, tenant, `${plural}/${item.name}`, item.spec, { headers: { "if-none-match": "*" } }), 412);
  await refused(putResource(app, token, tenant, `${plural}/${item.name}`, item.spec, { headers: { "if-match": '"1"' } }), 412);
  const replaced = await putResource(app, token, tenant, `${plural}/${item.name}`, item.replacement, { headers: { "if-match": etag } });
  expect(replaced.statusCode, replaced.body).toBe(200);
  expect(replaced.json()).toEqual({ name: item.name, ...item.replacement, etag: replaced.headers.etag, createdAt: created.json().createdAt, updatedAt: expect.any(String) });
  expect(replaced.headers.etag).not.toBe(etag);

  await mustPut(app, token, tenant, `${plural}/${other.name}`, other.spec);
  const [firstName, restName] = [item.name, other.name].sort();
  const first = await app.inject({ url: `/v1/tenants/${tenant}/${plural}?limit=1`, headers: bearer(readToken) });
  expect(first.json()).toMatchObject({ items: [{ name: firstName }], nextCursor: expect.any(String) });
  const rest = await app.inject({ url: `/v1/tenants/${tenant}/${plural}?cursor=${first.json().nextCursor}`, headers: bearer(readToken) });
  expect(rest.json()).toMatchObject({ items: [{ name: restName }], nextCursor: null });

  await refused(app.inject({ method: "DELETE", url: url(item.name), headers: { ...bearer(token), "if-match": etag } }), 412);
  expect((await app.inject({ method: "DELETE", url: url(item.name), headers: { ...bearer(token), "if-match": replaced.headers.etag as string } })).statusCode).toBe(204);
  expectProblem(await app.inject({ url: url(item.name), headers: bearer(token) }), 404);
  await refused(app.inject({ method: "DELETE", url: url(item.name), headers: bearer(token) }), 404);
  expect((await app.inject({ method: "DELETE", url: url(other.name), headers: bearer(token) })).statusCode).toBe(204);
}

/**
 * A create, a replace and a delete of `plural`/`name` are audited as
 * `<noun>.create|replace|delete` on `<noun>/<name>` and logged as changes of
 * kind `noun`, each at a revision of its own: what the compiler and agents follow.
 */
export async function expectAuditedAndLogged(app: WeftApp, owner: Pick<KindOwner, "tenant" | "token">, plural: string, noun: string, name: string, spec: object): Promise<void> {
  const { tenant, token } = owner;
  const changesOf = async () => (await app.inject({ url: `/v1/tenants/${tenant}/changes`, headers: bearer(token) })).json().items as { kind: string; name: string; op: string; revision: number }[];
  const changesBefore = (await changesOf()).length;
  await mustPut(app, token, tenant, `${plural}/${name}`, spec);
  await mustPut(app, token, tenant, `${plural}/${name}`, spec);
  expect((await app.inject({ method: "DELETE", url: `/v1/tenants/${tenant}/${plural}/${name}`, headers: bearer(token) })).statusCode).toBe(204);
  const audit = (await app.inject({ url: `/v1/tenants/${tenant}/audit?limit=1000`, headers: bearer(token) })).json().items as { action: string; resource: string }[];
  expect(audit.filter((e) => e.resource === `${noun}/${name}`).map((e) => e.action)).toEqual([`${noun}.create`, `${noun}.replace`, `${noun}.delete`]);
  const logged = (await changesOf()).slice(changesBefore);
  expect(logged.map((c) => [c.kind, c.name, c.op])).toEqual([
    [noun, name, "upsert"],
    [noun, name, "upsert"],
    [noun, name, "delete"],
  ]);
  expect(new Set(logged.map((c) => c.revision)).size).toBe(3);
}

/** A read-scoped token of the owner's tenant, minted with its write token. */
export async function readToken(app: WeftApp, owner: Pick<KindOwner, "tenant" | "token">): Promise<string> {
  const minted = await app.inject({ method: "POST", url: `/v1/tenants/${owner.tenant}/tokens`, headers: bearer(owner.token), payload: { name: "reader", scopes: ["read"] } });
  expect(minted.statusCode, minted.body).toBe(201);
  return minted.json().token as string;
}

/**
 * The walls around `plural`/`name` (written with `spec`, and left in place
 * as it was): the owner's read token reads it but may not replace or delete
 * it (403); another tenant can neither read, list, replace nor delete it
 * (404, as if it did not exist), and finds nothing of it in its own
 * collection. Every refusal writes nothing in either tenant.
 */
export async function expectTenantWalls(
  app: WeftApp,
  owner: KindOwner,
  other: Pick<KindOwner, "tenant" | "token">,
  plural: string,
  name: string,
  spec: object,
): Promise<void> {
  const url = `/v1/tenants/${owner.tenant}/${plural}/${name}`;
  const refused = (res: Promise<LightMyRequestResponse>, status: number) => refusedUnwritten(app, [owner.tenant, other.tenant], res, status);
  const stored = await mustPut(app, owner.token, owner.tenant, `${plural}/${name}`, spec);
  expect((await app.inject({ url, headers: bearer(owner.readToken) })).statusCode).toBe(200);
  await refused(putResource(app, owner.readToken, owner.tenant, `${plural}/${name}`, spec), 403);
  await refused(app.inject({ method: "DELETE", url, headers: bearer(owner.readToken) }), 403);

  expectProblem(await app.inject({ url, headers: bearer(other.token) }), 404);
  expectProblem(await app.inject({ url: `/v1/tenants/${owner.tenant}/${plural}`, headers: bearer(other.token) }), 404);
  await refused(putResource(app, other.token, owner.tenant, `${plural}/${name}`, spec), 404);
  await refused(app.inject({ method: "DELETE", url, headers: bearer(other.token) }), 404);
  const own = await app.inject({ url: `/v1/tenants/${other.tenant}/${plural}`, headers: bearer(other.token) });
  expect(own.json().items.map((r: { name: string }) => r.name)).not.toContain(name);
  expect((await app.inject({ url, headers: bearer(owner.token) })).json()).toEqual(stored);
}
