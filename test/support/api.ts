import { randomBytes } from "node:crypto";
import pg from "pg";
import type { LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import { buildApp, type RouteEntry, type WeftApp } from "../../api/src/app.ts";
import { inProcessConfig, type Config } from "../../api/src/config.ts";
import { openDatabase } from "../../api/src/db/client.ts";
import { revisionCounter } from "../../api/src/db/schema.ts";
import type { Problem } from "../../api/src/http/problem.ts";
import { migratedPglite } from "./pglite-template.ts";
import { skipWithout } from "./prerequisites.ts";

const ALL_BACKENDS = ["pglite", "postgres"] as const;
export type Backend = (typeof ALL_BACKENDS)[number];

/**
 * The backends a run covers: WEFT_TEST_BACKENDS (comma-separated) narrows
 * them. CI's second pass, the unit suite on the oldest Node, names pglite
 * alone: the Postgres half runs on Node 24 in the same CI, and the driver
 * (pure JavaScript over a socket) does not change with the runtime.
 */
function selectedBackends(): readonly Backend[] {
  const wanted = process.env.WEFT_TEST_BACKENDS?.split(",").map((b) => b.trim()).filter(Boolean);
  if (!wanted?.length) return ALL_BACKENDS;
  const unknown = wanted.filter((b) => !(ALL_BACKENDS as readonly string[]).includes(b));
  if (unknown.length) throw new Error(`WEFT_TEST_BACKENDS names ${unknown.join(", ")}; known: ${ALL_BACKENDS.join(", ")}`);
  return ALL_BACKENDS.filter((b) => wanted.includes(b));
}

/** The API suites run once per storage backend. */
export const BACKENDS: readonly Backend[] = selectedBackends();

export const OPERATOR_TOKEN = "weft_op_test-operator-token-0123456789";

/** True when the backend's suite must be skipped (never under CI's WEFT_REQUIRE_ALL=1). */
export function skipBackend(backend: Backend): boolean {
  // Left out on purpose (WEFT_TEST_BACKENDS), not for want of a server: no failure under WEFT_REQUIRE_ALL.
  if (!BACKENDS.includes(backend)) return true;
  if (backend === "pglite") return false;
  return skipWithout("Postgres (DATABASE_URL)", process.env.DATABASE_URL ? null : "DATABASE_URL is not set");
}

/** The database a backend's suite runs on, for naming the block that skipBackend guards. */
export function backendDatabase(backend: Backend): string {
  return backend === "pglite" ? "an in-memory PGlite database" : "the Postgres server at DATABASE_URL";
}

export function testConfig(backend: Backend, overrides: Partial<Config> = {}): Config {
  return inProcessConfig({
    databaseUrl: backend === "postgres" ? process.env.DATABASE_URL : undefined,
    operatorToken: OPERATOR_TOKEN,
    trustDomainSuffix: "test.weft",
    revocationPollMs: 200,
    ...overrides,
  });
}

/** The route table of a freshly built app, read at collection time so each route gets its own test. */
export async function routeTable(): Promise<RouteEntry[]> {
  const app = await startApi("pglite");
  const table = [...app.routeTable];
  await app.close();
  return table;
}

export async function startApi(backend: Backend, overrides: Partial<Config> = {}): Promise<WeftApp> {
  const config = testConfig(backend, overrides);
  return inMemory(config) ? buildApp(config, { database: await migratedPglite(), closesDatabase: true }) : buildApp(config);
}

/** PGlite without a data directory: the suites start it from a migrated dump (test/support/pglite-template.ts). */
const inMemory = (config: Config) => !config.databaseUrl && !config.dataDir;

/**
 * Two replicas over one database, as a deployment runs them: on PGlite they
 * share the one in-memory instance, on Postgres each has its own pool.
 */
export async function twoReplicas(backend: Backend, overrides: Partial<Config> = {}): Promise<{ a: WeftApp; b: WeftApp; close(): Promise<void> }> {
  const config = testConfig(backend, overrides);
  const shared = backend !== "pglite" ? undefined : inMemory(config) ? await migratedPglite() : openDatabase(config);
  const opts = shared ? { database: shared } : {};
  const a = await buildApp(config, opts);
  const b = await buildApp(config, opts);
  return {
    a,
    b,
    async close() {
      await a.close();
      await b.close();
      await shared?.close();
    },
  };
}

/** Names unique per run, so suites sharing one Postgres never collide. */
export const uniqueName = (prefix: string) => `${prefix}-${randomBytes(4).toString("hex")}`;

export const operator = { authorization: `Bearer ${OPERATOR_TOKEN}` };
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Creates a tenant and a token for it with the given scopes. */
export async function tenantWithToken(
  app: WeftApp,
  scopes: ("read" | "write" | "admin")[] = ["admin"],
  name = uniqueName("t"),
): Promise<{ tenant: string; token: string }> {
  const created = await app.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name } });
  if (created.statusCode !== 201) throw new Error(`tenant create failed: ${created.statusCode} ${created.body}`);
  const minted = await app.inject({
    method: "POST",
    url: `/v1/tenants/${name}/tokens`,
    headers: operator,
    payload: { name: "test", scopes },
  });
  if (minted.statusCode !== 201) throw new Error(`token mint failed: ${minted.statusCode} ${minted.body}`);
  return { tenant: name, token: minted.json().token as string };
}

/** The global revision: every committed write takes the next one, so an unchanged value means nothing was written. */
export async function currentRevision(app: WeftApp): Promise<number> {
  const [row] = await app.weft.db.select().from(revisionCounter);
  return row!.revision;
}

/** Asserts an RFC 9457 problem answer with this status and returns its body. */
export function expectProblem(res: LightMyRequestResponse, status: number): Problem {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
  const body = res.json() as Problem;
  expect(body).toMatchObject({ status, type: expect.stringMatching(/^urn:weft:problem:/), title: expect.any(String) });
  expect(body.requestId).toBe(res.headers["x-request-id"]);
  return body;
}

/**
 * A database of its own on the Postgres server at DATABASE_URL, for a suite
 * whose writes reach every row of a table (start-up migrations, a sweep over
 * all nodes) and so must not share the database other suites run in.
 */
export async function freshPostgres(prefix: string): Promise<{ url: string; drop(): Promise<void> }> {
  const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await admin.connect();
  const name = `${prefix}_${randomBytes(4).toString("hex")}`;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (err) {
    await admin.end();
    throw err;
  }
  const url = new URL(process.env.DATABASE_URL!);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      try {
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    },
  };
}
