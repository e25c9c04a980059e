import { Ajv } from "ajv";
import ajvFormats from "ajv-formats";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RouteEntry, WeftApp } from "../../api/src/app.ts";
import {
  BACKENDS,
  backendDatabase,
  currentRevision,
  expectProblem,
  operator,
  skipBackend,
  startApi,
  routeTable,
  tenantWithToken,
} from "../support/api.ts";
import { FORMATS } from "../../api/src/http/schemas.ts";
import { accepts, validValue } from "../support/schema-values.ts";

type Schema = Parameters<typeof validValue>[0];
type RouteSchema = { params?: Schema; querystring?: Schema; body?: Schema };

const RUNS = 40;

/**
 * The oracle for bodies. `accepts` validates as the API validates query
 * strings, coercing text to the schema's types; a JSON body carries its own
 * types and the API takes it as sent (http/validation.ts), so a body is
 * judged here without coercion: {"ttlSeconds": "60"} or {"scopes": "read"}
 * must be refused, not read as 60 or ["read"].
 */
const exact = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: true, strict: false });
ajvFormats.default(exact);
for (const [name, { pattern }] of Object.entries(FORMATS)) exact.addFormat(name, pattern);
const acceptsBody = (schema: unknown, value: unknown): boolean => exact.validate(schema as object, structuredClone(value)) as boolean;

/**
 * Values of another JSON type that ajv's coercion would read as `value`'s:
 * numbers and booleans as text, a scalar wrapped in an array or an array of
 * one unwrapped, null for the zero value.
 */
function impostors(value: unknown): unknown[] {
  const out: unknown[] = [[value], null];
  if (typeof value === "number" || typeof value === "boolean") out.push(String(value));
  if (typeof value === "boolean") out.push(value ? 1 : 0);
  if (typeof value === "number" && (value === 0 || value === 1)) out.push(value === 1);
  if (typeof value === "string" && value !== "" && Number.isFinite(Number(value))) out.push(Number(value));
  if (Array.isArray(value) && value.length === 1) out.push(value[0]);
  return out;
}

/**
 * Bodies valid but for one field of the wrong JSON type that a coercing
 * validator takes as valid: exactly what the API accepted when it coerced bodies.
 */
function wronglyTypedBodies(schema: Schema): { field: string; body: Record<string, unknown> }[] {
  const valid = validValue(schema) as Record<string, unknown>;
  const found: { field: string; body: Record<string, unknown> }[] = [];
  for (const [field, prop] of Object.entries(schema.properties ?? {})) {
    const value = field in valid ? valid[field] : validValue(prop as Schema);
    for (const impostor of impostors(value)) {
      const body = { ...valid, [field]: impostor };
      if (accepts(schema, body) && !acceptsBody(schema, body)) found.push({ field, body });
    }
  }
  return found;
}

const routes = (await routeTable()).filter((r) => r.url.startsWith("/v1/"));
const schemaOf = (r: RouteEntry) => (r.schema ?? {}) as RouteSchema;
const withBody = routes.filter((r) => schemaOf(r).body);
const withQuery = routes.filter((r) => schemaOf(r).querystring);
const label = (r: RouteEntry) => `${r.method} ${r.url}`;

/** Arbitrary JSON the body schema refuses: anything at all, and valid bodies broken one way. */
function badBodies(schema: Schema): fc.Arbitrary<unknown> {
  const valid = validValue(schema) as Record<string, unknown>;
  const known = Object.keys(schema.properties ?? {});
  const field = known.length > 0 ? fc.constantFrom(...known) : fc.constant("name");
  const wild = fc.oneof(
    fc.jsonValue(),
    fc.anything(),
    fc.string({ minLength: 300, maxLength: 5000 }),
    fc.constant("x".repeat(100_000)),
    fc.array(fc.jsonValue(), { minLength: 2, maxLength: 5 }),
  );
  const mutated = fc.oneof(
    fc.tuple(fc.string({ minLength: 1, maxLength: 12 }), fc.jsonValue()).map(([k, v]) => ({ ...valid, [k]: v })),
    fc.tuple(field, wild).map(([k, v]) => ({ ...valid, [k]: v })),
    field.map((k) => Object.fromEntries(Object.entries(valid).filter(([key]) => key !== k))),
  );
  // Judge what goes over the wire: JSON turns undefined into null (or drops it), and the API sees that.
  const sent = (v: unknown): unknown => JSON.parse(JSON.stringify(v) ?? "null");
  return fc.oneof(wild, mutated).map(sent).filter((v) => !acceptsBody(schema, v));
}

/** Query strings the route's schema refuses: known keys with wrong values, unknown keys, huge values. */
function badQueries(schema: Schema): fc.Arbitrary<Record<string, string>> {
  const known = Object.keys(schema.properties ?? {});
  const key = fc.oneof(fc.constantFrom(...known, "dryrun", "Limit"), fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9]{0,9}$/));
  const value = fc.oneof(
    fc.string({ maxLength: 20 }),
    fc.integer().map(String),
    fc.double().map(String),
    fc.constantFrom("true", "false", "", "null", "1e3", "0x10", "-0"),
    fc.constant("9".repeat(600)),
  );
  return fc.dictionary(key, value, { minKeys: 1, maxKeys: 4 }).filter((q) => !accepts(schema, q));
}

describe.each(BACKENDS)("bad input on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let tenant: string;
    beforeAll(async () => {
      app = await startApi(backend);
      ({ tenant } = await tenantWithToken(app, ["admin"]));
    });
    afterAll(async () => app?.close());

    /** The route's URL with its path parameters filled with values that exist or at least validate. */
    function urlOf(route: RouteEntry): string {
      const params = (schemaOf(route).params ? validValue(schemaOf(route).params!) : {}) as Record<string, string>;
      return route.url.replace(/:(\w+)/g, (_m, p: string) => (p === "tenant" ? tenant : String(params[p])));
    }

    /** Sends one request and checks it was refused with a 4xx problem and wrote nothing. */
    async function refused(opts: { method: string; url: string; query?: Record<string, string>; payload?: string; contentType?: string }) {
      const before = await currentRevision(app);
      const res = await app.inject({
        method: opts.method as "POST",
        url: opts.url,
        ...(opts.query ? { query: opts.query } : {}),
        headers: { ...operator, ...(opts.payload !== undefined ? { "content-type": opts.contentType ?? "application/json" } : {}) },
        ...(opts.payload !== undefined ? { payload: opts.payload } : {}),
      });
      expect(res.statusCode, `${opts.method} ${opts.url} ${JSON.stringify(opts.query)} ${opts.payload?.slice(0, 200)}: ${res.body}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, res.body).toBeLessThan(500);
      expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
      expect(await currentRevision(app)).toBe(before);
      return res;
    }

    it("has routes with bodies and query strings to fuzz", () => {
      expect(withBody.length).toBeGreaterThanOrEqual(3);
      expect(withQuery.length).toBeGreaterThanOrEqual(7);
      // Most body routes have a field that coercion would have misread: the next test is not empty.
      expect(withBody.filter((r) => wronglyTypedBodies(schemaOf(r).body!).length > 0).length).toBeGreaterThanOrEqual(withBody.length / 2);
    });

    it.each(withBody.map((r) => [label(r), r] as const))("%s refuses a field of the wrong JSON type, naming it, even where coercion would read it", async (_l, route) => {
      for (const { field, body } of wronglyTypedBodies(schemaOf(route).body!)) {
        const res = await refused({ method: route.method, url: urlOf(route), payload: JSON.stringify(body) });
        expectProblem(res, 400);
        const fields = (res.json().errors as { field: string }[]).map((e) => e.field);
        expect(fields.some((f) => f === `body.${field}` || f.startsWith(`body.${field}.`)), `${JSON.stringify(body)}: ${res.body}`).toBe(true);
      }
    });

    it.each(withBody.map((r) => [label(r), r] as const))("%s refuses bodies its schema refuses", async (_l, route) => {
      const schema = schemaOf(route).body!;
      await fc.assert(
        fc.asyncProperty(badBodies(schema), async (body) => {
          const res = await refused({ method: route.method, url: urlOf(route), payload: JSON.stringify(body) ?? "null" });
          expect(res.statusCode).toBe(400);
        }),
        { numRuns: RUNS },
      );
    });

    it.each(withQuery.map((r) => [label(r), r] as const))("%s refuses query strings its schema refuses", async (_l, route) => {
      const { querystring, body } = schemaOf(route);
      const payload = body ? JSON.stringify(validValue(body)) : undefined;
      await fc.assert(
        fc.asyncProperty(badQueries(querystring!), async (query) => {
          const res = await refused({ method: route.method, url: urlOf(route), query, ...(payload ? { payload } : {}) });
          expect(res.statusCode).toBe(400);
        }),
        { numRuns: RUNS },
      );
    });

    it.each(withBody.map((r) => [label(r), r] as const))("%s refuses malformed JSON, other media types and bodies over its limit (1 MiB unless the route sets one)", async (_l, route) => {
      const url = urlOf(route);
      const valid = JSON.stringify(validValue(schemaOf(route).body!));
      expectProblem(await refused({ method: route.method, url, payload: valid.slice(0, -1) }), 400);
      expectProblem(await refused({ method: route.method, url, payload: "{'name': 1}" }), 400);
      expectProblem(await refused({ method: route.method, url, payload: valid, contentType: "text/plain" }), 415);
      expectProblem(await refused({ method: route.method, url, payload: valid, contentType: "application/x-www-form-urlencoded" }), 415);
      const huge = JSON.stringify({ name: "a", pad: "x".repeat(route.bodyLimit ?? 1024 * 1024) });
      expectProblem(await refused({ method: route.method, url, payload: huge }), 413);
    });
  });
});
