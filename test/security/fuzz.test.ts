// Schema-driven fuzz of every route in the app's route table, with every kind
// of caller. Each request is bounded in time, and each answer is checked:
//   - no 5xx, no hang (TIMEOUT_MS);
//   - every 4xx is application/problem+json;
//   - a 4xx stored nothing (tenant A's and B's change and audit logs, and on
//     PGlite, which no other suite shares, the global revision, are unchanged),
//     nor did a 2xx under ?dryRun=true;
//   - the route's access rule holds: no 2xx/3xx without a valid token, for a
//     tenant token on another tenant's path or lacking the scope, for a node
//     on another node's path or a tenant route, for a non-operator on an
//     operator route.
// The run is bounded by a seed (WEFT_FUZZ_SEED; random when unset outside CI, and printed),
// a number of requests (WEFT_FUZZ_REQUESTS) and a time budget per backend
// (WEFT_FUZZ_BUDGET_MS). Failures are grouped by what went wrong (and route),
// each with the shortest request that showed it, and reported together at the
// end with the seed. Run it alone: npx vitest run test/security/fuzz.test.ts
// (WEFT_FUZZ_SEED=<n> replays a run's requests; the state they meet may differ).
import { randomInt } from "node:crypto";
import { parse as parseQuery } from "node:querystring";
import { inArray, sql } from "drizzle-orm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RouteEntry, WeftApp } from "../../api/src/app.ts";
import type { AuthRule } from "../../api/src/auth/guard.ts";
import { NODE_CREDENTIAL_PREFIX } from "../../api/src/auth/node-credentials.ts";
import { auditLog } from "../../api/src/db/schema.ts";
import { hasScope, type Scope } from "../../api/src/auth/principal.ts";
import { makeCsr, tempDir } from "../ca/helpers.ts";
import { BACKENDS, backendDatabase, currentRevision, OPERATOR_TOKEN, operator, skipBackend, startApi, tenantWithToken, uniqueName } from "../support/api.ts";
import { rawBytes, rawRequest } from "../support/fuzz-http.ts";
import {
  dnsLabel,
  encodeComponent,
  fieldPaths,
  hostileSegment,
  hostileString,
  hostileValue,
  RAW_NUMBER_LITERALS,
  setPath,
  validArb,
  type FuzzContext,
  type Schema,
} from "../support/fuzz-values.ts";
import { freshVip, mustPut, tenantChanges } from "../support/mesh.ts";
import { addressIn, joinToken, registeredNode } from "../support/nodes.ts";

// CI replays one fixed seed, so that a landing is judged on the same requests
// every time; a developer's run explores a new one each time and prints it.
const SEED = process.env.WEFT_FUZZ_SEED ? Number(process.env.WEFT_FUZZ_SEED) : process.env.CI ? 20_261_206 : randomInt(2 ** 31 - 1);
const REQUESTS = Number(process.env.WEFT_FUZZ_REQUESTS ?? 4000);
const BUDGET_MS = Number(process.env.WEFT_FUZZ_BUDGET_MS ?? 60_000);
const TIMEOUT_MS = 5_000;
/** Races: the same valid-ish request BURST_SIZE times at once, BURSTS times. */
const BURSTS = Number(process.env.WEFT_FUZZ_BURSTS ?? 100);
const BURST_SIZE = 6;
/** Long polls (`?wait=`) are held on purpose: the fuzz asks for at most this many seconds. */
const MAX_WAIT_S = 2;
const ONE_MIB = 1024 * 1024;

type RouteSchema = { params?: Schema; querystring?: Schema; headers?: Schema; body?: Schema };
const schemaOf = (r: RouteEntry) => (r.schema ?? {}) as RouteSchema;
const routeLabel = (r: RouteEntry) => `${r.method} ${r.url}`;

type PrincipalKind = "none" | "malformed" | "operator" | "tenant" | "node";
interface Principal {
  label: string;
  kind: PrincipalKind;
  /** The Authorization header; for "malformed", one from the pool per request. */
  header?: string;
  tenant?: string;
  scopes?: Scope[];
  node?: string;
  /**
   * Each principal its own addresses, a new one every request: the limit on
   * failed authentications per address (429) would otherwise answer every
   * request of the no-token and malformed-token callers after their first
   * few dozen, and the fuzz would stop reaching anything behind it.
   */
  ip: (n: number) => string;
}

/** A body as described by the generator; big ones are only built when sent. */
type BodySpec =
  | { kind: "none" }
  | { kind: "text"; text: string; contentType: string | null }
  | { kind: "bytes"; hex: string; contentType: string }
  | { kind: "huge"; bytes: number; contentType: string };

interface Spec {
  route: number;
  principal: number;
  /** The malformed Authorization header to use when the principal is "malformed". */
  malformed: number;
  /** Per path parameter, the segment as sent (already percent-encoded, or deliberately not). */
  params: Record<string, string>;
  query: string;
  headers: Record<string, string>;
  body: BodySpec;
}

const CONTENT_TYPES = [
  "application/json; charset=utf-8",
  "application/json; charset=latin1",
  "application/json; charset=utf-16",
  "APPLICATION/JSON",
  "application/problem+json",
  "application/json-patch+json",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/octet-stream",
  "",
  "application/json\u0000",
  ";;;",
];

const ETAG = "\u0000etag";
/** Stands for a nextCursor an earlier answer gave (URL-safe, so it survives in a query string). */
const CURSOR = "CURSOR-FROM-AN-EARLIER-PAGE";

/** Cursors the API never issued but that decode: base64url of JSON arrays holding anything. */
const forgedCursor = (): fc.Arbitrary<string> =>
  fc.oneof(
    hostileValue().map((v) => Buffer.from(JSON.stringify([v]) ?? "[]").toString("base64url")),
    fc.constantFrom<unknown>(1e20, -1, 1.5, 2 ** 63, -(2 ** 63), 9007199254740993, "\u0000", "\ud800", "", "'", "a".repeat(400)).map((v) => Buffer.from(JSON.stringify([v])).toString("base64url")),
    fc.constantFrom("[1e400]", "[1]garbage", "[[1]]", "{}", "[1,2]", "\u0000").map((t) => Buffer.from(t).toString("base64url")),
    fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b).toString("base64url")),
  );

/** Bodies JSON.stringify cannot produce, built around a valid body's text. */
function rawBodies(validText: string, fields: string[]): fc.Arbitrary<BodySpec> {
  const json = (text: string): BodySpec => ({ kind: "text", text, contentType: "application/json" });
  const inner = validText.startsWith("{") && validText.length > 2 ? validText.slice(1, -1) : "";
  const field = fields.length > 0 ? fc.constantFrom(...fields) : fc.constant("name");
  return fc.oneof(
    // Duplicate keys: a hostile value first, the valid one last (JSON.parse keeps the last), and the reverse.
    fc.tuple(field, hostileValue()).map(([f, v]) => json(`{${JSON.stringify(f)}:${JSON.stringify(v) ?? "null"}${inner ? `,${inner}` : ""}}`)),
    fc.tuple(field, hostileValue()).map(([f, v]) => json(`{${inner ? `${inner},` : ""}${JSON.stringify(f)}:${JSON.stringify(v) ?? "null"}}`)),
    fc.tuple(field, fc.integer({ min: 2, max: 2000 })).map(([f, n]) => json(`{${Array.from({ length: n }, (_, i) => `${JSON.stringify(f)}:${i}`).join(",")}}`)),
    fc.tuple(field, fc.constantFrom(...RAW_NUMBER_LITERALS)).map(([f, n]) => json(`{${inner ? `${inner},` : ""}${JSON.stringify(f)}:${n}}`)),
    // Deep nesting, as text (a parser that recurses would overflow its stack).
    fc.integer({ min: 1000, max: 400_000 }).map((d) => json(`${"[".repeat(d)}${"]".repeat(d)}`)),
    fc.integer({ min: 1000, max: 100_000 }).map((d) => json(`${'{"a":'.repeat(d)}1${"}".repeat(d)}`)),
    fc.tuple(field, fc.integer({ min: 100, max: 50_000 })).map(([f, d]) => json(`{${inner ? `${inner},` : ""}${JSON.stringify(f)}:${"[".repeat(d)}${"]".repeat(d)}}`)),
    // Prototype keys.
    fc.constantFrom(
      json(`{"__proto__":{"admin":true}${inner ? `,${inner}` : ""}}`),
      json(`{"constructor":{"prototype":{"admin":true}}${inner ? `,${inner}` : ""}}`),
      json(`{${inner ? `${inner},` : ""}"__proto__":null}`),
    ),
    // Broken or odd JSON text.
    fc.constantFrom(
      json(validText.slice(0, -1)),
      json(`\ufeff${validText}`),
      json(`${validText}${validText}`),
      json(`${validText} // comment`),
      json(validText.replace(/"/g, "'")),
      json(""),
      json(" "),
      json("null"),
      json("0"),
      json('"text"'),
      json("[]"),
      json(`[${validText}]`),
      json("{,}"),
      json('{"a":1,}'),
      json("\u0000"),
      json(`{"\\ud800":"\\udfff"}`),
      json(`{${inner ? `${inner},` : ""}"x":"\\u0000"}`),
      { kind: "text", text: validText, contentType: null } as BodySpec,
    ),
    // Not UTF-8: a valid body with one string's bytes replaced, stray continuation bytes, overlong forms, UTF-16.
    fc.constantFrom("ff", "fe", "c0ae", "80", "ed a0 80", "f8888080 80", "c3", "e282").map((bad): BodySpec => {
      const text = Buffer.from(validText);
      const at = Math.max(1, text.indexOf('":"') + 3);
      const hex = `${text.subarray(0, at).toString("hex")}${bad.replace(/ /g, "")}${text.subarray(at).toString("hex")}`;
      return { kind: "bytes", hex, contentType: "application/json" };
    }),
    fc.constant<BodySpec>({ kind: "bytes", hex: Buffer.from(validText, "utf16le").toString("hex"), contentType: "application/json" }),
    // Sizes: just under the 1 MiB limit (valid JSON), and over it.
    fc.constant<BodySpec>({ kind: "huge", bytes: ONE_MIB - 64, contentType: "application/json" }),
    fc.integer({ min: ONE_MIB + 1, max: 3 * ONE_MIB }).map((bytes): BodySpec => ({ kind: "huge", bytes, contentType: "application/json" })),
  );
}

function bodyArb(route: RouteEntry, ctx: FuzzContext): fc.Arbitrary<BodySpec> {
  const schema = schemaOf(route).body;
  const json = (v: unknown): BodySpec => ({ kind: "text", text: JSON.stringify(v) ?? "null", contentType: "application/json" });
  if (!schema) {
    return fc.oneof(
      { weight: 10, arbitrary: fc.constant<BodySpec>({ kind: "none" }) },
      { weight: 1, arbitrary: hostileValue().map(json) },
      { weight: 1, arbitrary: fc.tuple(hostileValue(), fc.constantFrom(...CONTENT_TYPES)).map(([v, ct]): BodySpec => ({ kind: "text", text: JSON.stringify(v) ?? "", contentType: ct })) },
    );
  }
  const valid = validArb(schema, ctx);
  const paths = fieldPaths(schema);
  const fields = Object.keys(schema.properties ?? {});
  const pathArb: fc.Arbitrary<string[]> = paths.length > 0 ? fc.constantFrom(...paths) : fc.constant(["name"]);
  return fc.oneof(
    { weight: 5, arbitrary: valid.map(json) },
    { weight: 5, arbitrary: fc.tuple(valid, pathArb, hostileValue()).map(([v, p, h]) => json(setPath(v, p, h))) },
    { weight: 1, arbitrary: fc.tuple(valid, fc.oneof(dnsLabel(), hostileString()), hostileValue()).map(([v, k, h]) => json(setPath(v, [k], h))) },
    { weight: 1, arbitrary: hostileValue().map(json) },
    { weight: 3, arbitrary: valid.chain((v) => rawBodies(JSON.stringify(v), fields)) },
    { weight: 1, arbitrary: fc.tuple(valid, fc.constantFrom(...CONTENT_TYPES)).map(([v, ct]): BodySpec => ({ kind: "text", text: JSON.stringify(v), contentType: ct })) },
    { weight: 1, arbitrary: fc.constantFrom<BodySpec>({ kind: "none" }, { kind: "text", text: "", contentType: null }) },
  );
}

function queryArb(route: RouteEntry, ctx: FuzzContext): fc.Arbitrary<string> {
  const schema = schemaOf(route).querystring ?? { type: "object", properties: {} };
  const props = schema.properties ?? {};
  const known = Object.keys(props);
  const key = fc.oneof(
    { weight: known.length > 0 ? 6 : 0, arbitrary: known.length > 0 ? fc.constantFrom(...known) : fc.constant("x") },
    { weight: 1, arbitrary: fc.constantFrom("dryRun", "dryrun", "DryRun", "limit", "cursor", "since", "wait", "__proto__", "constructor", "a[b]", "limit[]", "", "x".repeat(300)) },
    { weight: 1, arbitrary: hostileString().map(encodeComponent) },
  );
  const valueFor = (k: string): fc.Arbitrary<string> =>
    fc.oneof(
      { weight: k === "cursor" ? 6 : 0, arbitrary: fc.oneof(fc.constant(CURSOR), forgedCursor()) },
      // Own properties only: a key like "constructor" must not find Object's members.
      { weight: 4, arbitrary: Object.hasOwn(props, k) ? validArb(props[k]!, ctx).map((v) => encodeComponent(String(v))) : fc.constant("1") },
      { weight: 2, arbitrary: hostileString().map((s) => encodeComponent(s.slice(0, 3000))) },
      { weight: 1, arbitrary: fc.constantFrom("%ff", "%", "%zz", "%00", "%E2%80%AE", "%ED%A0%80", "1e400", "-1", "1.5", "0x10", "9".repeat(600), "true", "false", "", "a=b", "[]", "{}") },
    );
  const pair = key.chain((k) => fc.oneof({ weight: 8, arbitrary: valueFor(k).map((v) => `${k}=${v}`) }, { weight: 1, arbitrary: fc.constant(k) }));
  const dryRun = known.includes("dryRun");
  return fc
    .tuple(fc.array(pair, { maxLength: 4 }), fc.boolean())
    .map(([pairs, addDryRun]) => [...pairs, ...(dryRun && addDryRun ? ["dryRun=true"] : [])].join("&"));
}

function headersArb(route: RouteEntry): fc.Arbitrary<Record<string, string>> {
  const declared = Object.keys(schemaOf(route).headers?.properties ?? {});
  const headerValue = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(ETAG, "*", '"1"', 'W/"1"', '"', "", " *", `${ETAG}, *`, '"a", "b"', "W/", "null") },
    { weight: 2, arbitrary: hostileString() },
  );
  const model: Record<string, fc.Arbitrary<string>> = {};
  for (const h of declared) model[h] = headerValue;
  model["x-request-id"] = fc.oneof(fc.constantFrom("fuzz-1", "a".repeat(128), "a".repeat(129), "../x", "id\u0000"), hostileString());
  model["accept"] = fc.constantFrom("*/*", "application/xml", "text/html", "application/json;q=0", "\u00ff");
  model["accept-encoding"] = fc.constantFrom("gzip", "br", "identity;q=0", "*;q=0");
  return fc.record(model, { requiredKeys: [] }) as fc.Arbitrary<Record<string, string>>;
}

function paramArb(name: string, schema: Schema | undefined, ctx: FuzzContext, tenants: string[], nodes: string[]): fc.Arbitrary<string> {
  const named: Record<string, string[]> = { tenant: tenants, node: nodes };
  const own = named[name];
  const valid = own ? fc.constantFrom(...own) : schema ? validArb(schema, ctx, name).map((v) => encodeComponent(String(v))) : dnsLabel();
  return fc.oneof(
    { weight: 6, arbitrary: valid },
    { weight: 1, arbitrary: dnsLabel() },
    { weight: 3, arbitrary: hostileSegment() },
  );
}

/** Requests a route should accept from a principal its rule lets through: they reach handlers and the database. */
function validSpecParts(route: RouteEntry, ctx: FuzzContext, tenants: string[], nodes: string[]) {
  const schema = schemaOf(route);
  const names = [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
  const params: Record<string, fc.Arbitrary<string>> = {};
  for (const n of names) {
    const own = n === "tenant" ? tenants : n === "node" ? nodes : undefined;
    const s = schema.params?.properties?.[n];
    params[n] = own ? fc.constantFrom(...own) : s ? validArb(s, ctx, n).map((v) => encodeComponent(String(v))) : dnsLabel();
  }
  const props = schema.querystring?.properties ?? {};
  // Follow streams never answer by design (test/api/flows-follow.test.ts covers them).
  const known = Object.keys(props).filter((k) => k !== "wait" && k !== "follow");
  const validValue = (k: string) => (k === "cursor" ? fc.constant(CURSOR) : validArb(props[k]!, ctx, k).map((v) => encodeComponent(String(v))));
  const query = known.length === 0
    ? fc.constant("")
    : fc.subarray(known).chain((keys) => fc.tuple(...keys.map((k) => validValue(k).map((v) => `${k}=${v}`)))).map((p) => p.join("&"));
  const declared = Object.keys(schema.headers?.properties ?? {});
  const headers = declared.length === 0
    ? fc.constant<Record<string, string>>({})
    : fc.oneof(fc.constant<Record<string, string>>({}), fc.tuple(fc.constantFrom(...declared), fc.constantFrom(ETAG, "*")).map(([h, v]) => ({ [h]: v })));
  const body: fc.Arbitrary<BodySpec> = schema.body
    ? validArb(schema.body, ctx).map((v) => ({ kind: "text", text: JSON.stringify(v), contentType: "application/json" }))
    : fc.constant({ kind: "none" });
  return { params: fc.record(params), query, headers, body };
}

function specArb(routes: RouteEntry[], principals: number, malformed: number, ctx: FuzzContext, tenants: string[], nodes: string[]): fc.Arbitrary<Spec> {
  return fc.integer({ min: 0, max: routes.length - 1 }).chain((i) => {
    const route = routes[i]!;
    const names = [...route.url.matchAll(/:(\w+)/g)].map((m) => m[1]!);
    const params: Record<string, fc.Arbitrary<string>> = {};
    for (const n of names) params[n] = paramArb(n, schemaOf(route).params?.properties?.[n], ctx, tenants, nodes);
    const valid = validSpecParts(route, ctx, tenants, nodes);
    const common = {
      route: fc.constant(i),
      principal: fc.integer({ min: 0, max: principals - 1 }),
      malformed: fc.integer({ min: 0, max: malformed - 1 }),
    };
    return fc.oneof(
      // Hostile: every part drawn from everything.
      { weight: 2, arbitrary: fc.record({ ...common, params: fc.record(params), query: queryArb(route, ctx), headers: headersArb(route), body: bodyArb(route, ctx) }) },
      // Valid-ish: every part valid.
      { weight: 1, arbitrary: fc.record({ ...common, ...valid }) },
      // Valid but for the body, or but for the query and headers.
      { weight: 1, arbitrary: fc.record({ ...common, ...valid, body: bodyArb(route, ctx) }) },
      { weight: 1, arbitrary: fc.record({ ...common, ...valid, query: queryArb(route, ctx), headers: headersArb(route) }) },
    );
  });
}

/** The request as sent: the URL with its segments, the body built. */
function materialize(spec: Spec, route: RouteEntry, victims: Record<string, string>, protectedValues: Set<string>) {
  let url = route.url;
  for (const [name, seg] of Object.entries(spec.params)) {
    // Deleting a tenant or node the fuzz runs as would end the run: it deletes a victim instead.
    const last = route.url.endsWith(`:${name}`);
    const value = route.method === "DELETE" && last && protectedValues.has(seg) && victims[name] ? victims[name]! : seg;
    url = url.replace(`:${name}`, value);
  }
  if (spec.query !== "") url += `?${spec.query}`;
  let payload: string | Buffer | undefined;
  let contentType: string | null = null;
  const b = spec.body;
  if (b.kind === "text") [payload, contentType] = [b.text, b.contentType];
  if (b.kind === "bytes") [payload, contentType] = [Buffer.from(b.hex, "hex"), b.contentType];
  if (b.kind === "huge") {
    const pad = Math.max(0, b.bytes - 12);
    [payload, contentType] = [`{"name":"${"x".repeat(pad)}"}`, b.contentType];
  }
  return { url, payload, contentType };
}

/** The route the server will match for this URL, as light-my-request normalizes it, with decoded parameters. */
function matchRoute(routes: RouteEntry[], method: string, url: string): { route: RouteEntry; params: Record<string, string> } | null {
  let path: string;
  try {
    path = new URL(url, "http://localhost").pathname;
  } catch {
    return null;
  }
  const candidates = routes
    .filter((r) => r.method === method)
    .sort((a, b) => (a.url.match(/:/g)?.length ?? 0) - (b.url.match(/:/g)?.length ?? 0));
  for (const r of candidates) {
    const names: string[] = [];
    const re = new RegExp(`^${r.url.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:(\w+)/g, (_m, n: string) => (names.push(n), "([^/]+)"))}$`);
    const m = re.exec(path);
    if (!m) continue;
    const params: Record<string, string> = {};
    try {
      names.forEach((n, i) => (params[n] = decodeURIComponent(m[i + 1]!)));
    } catch {
      return null;
    }
    return { route: r, params };
  }
  return null;
}

/** Why the access rule must refuse this principal here, or null when it may be let through. */
function mustRefuse(p: Principal, rule: AuthRule | undefined, params: Record<string, string>): string | null {
  if (!rule || rule.who === "public") return null;
  if (p.kind === "none" || p.kind === "malformed") return "unauthenticated";
  if (p.kind === "operator") return null;
  if (rule.who === "operator") return "not the operator";
  if (rule.who === "node") {
    if (p.kind === "tenant") return "tenant token on a node route";
    return params.node !== undefined && params.node !== p.node ? "another node's path" : null;
  }
  if (p.kind === "node") return rule.nodes ? null : "node credential on a tenant route";
  if (params.tenant !== undefined && params.tenant !== p.tenant) return "another tenant's path";
  return hasScope(p.scopes ?? [], rule.scope) ? null : `lacks the ${rule.scope} scope`;
}

interface Failure {
  what: string;
  count: number;
  routes: Set<string>;
  principals: Set<string>;
  example: string;
}

/**
 * Failures grouped by what went wrong: kind and status, and for a 4xx that is
 * not a problem the error code the body names (one framework path answers for
 * every route), else the route. Each keeps its shortest example.
 */
function recorder(seed: number, backend: string) {
  const failures = new Map<string, Failure>();
  return {
    failures,
    add(what: string, route: string, principal: string, example: string, byRoute = true) {
      const key = byRoute ? `${what} on ${route}` : what;
      const f = failures.get(key) ?? { what: key, count: 0, routes: new Set(), principals: new Set(), example };
      f.count++;
      f.routes.add(route);
      f.principals.add(principal);
      if (example.length < f.example.length) f.example = example;
      failures.set(key, f);
    },
    report(): string {
      const lines = [...failures.values()].map((f) => {
        const routes = [...f.routes];
        const on = routes.length > 3 ? `${routes.slice(0, 3).join("; ")} and ${routes.length - 3} more routes` : routes.join("; ");
        return `- ${f.what} (${f.count}x; ${on}; as ${[...f.principals].join(", ")})\n    e.g. ${f.example}`;
      });
      return `fuzz on ${backend}, WEFT_FUZZ_SEED=${seed}: ${failures.size} distinct failures\n${lines.join("\n")}`;
    },
  };
}

/** The `code` (or else `message`) a non-problem JSON error body names, to group by. */
function errorCodeOf(body: string): string {
  try {
    const b = JSON.parse(body) as { code?: unknown; message?: unknown };
    return String(b.code ?? b.message ?? "?");
  } catch {
    return "not JSON";
  }
}

const sleep = (ms: number) => new Promise<"timeout">((r) => setTimeout(() => r("timeout"), ms).unref());
const clip = (s: string, n = 300) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);

describe.each(BACKENDS)("schema-driven fuzz on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let principals: Principal[];
    let malformedHeaders: string[];
    let ctx: FuzzContext;
    let tenants: { a: string; b: string };
    let tenantIds: { a: number; b: number };
    let nodeNames: { own: string; other: string };
    let victims: Record<string, string>;
    const etags: string[] = [];
    const cursors: string[] = [];
    const tmp = tempDir();

    beforeAll(async () => {
      const setupStarted = Date.now();
      app = await startApi(backend);
      const a = await tenantWithToken(app, ["admin"]);
      const b = await tenantWithToken(app, ["admin"]);
      tenants = { a: a.tenant, b: b.tenant };
      tenantIds = { a: (await app.weft.directory.byName(a.tenant))!.id, b: (await app.weft.directory.byName(b.tenant))!.id };
      const mint = async (tenant: string, scopes: Scope[]) => {
        const res = await app.inject({ method: "POST", url: `/v1/tenants/${tenant}/tokens`, headers: operator, payload: { name: "fuzz", scopes } });
        if (res.statusCode !== 201) throw new Error(`mint: ${res.statusCode} ${res.body}`);
        return res.json() as { id: string; token: string };
      };
      const [aRead, bRead, aSpare, bSpare, aRevoked] = [await mint(a.tenant, ["read"]), await mint(b.tenant, ["read"]), await mint(a.tenant, ["read"]), await mint(b.tenant, ["read"]), await mint(a.tenant, ["admin"])];
      const revoke = await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/tokens/${aRevoked.id}`, headers: operator });
      if (revoke.statusCode !== 204) throw new Error(`revoke: ${revoke.statusCode}`);
      const own = await registeredNode(app, { zone: "zone-a" });
      const other = await registeredNode(app, { zone: "zone-b" });
      const victimNode = await registeredNode(app);
      // Workload addresses: in the node's pod CIDR block where the API hands out blocks, else anywhere in 10/8.
      const podCidrs = [own, other].map((n) => (n as { podCidr?: string }).podCidr).filter((c): c is string => typeof c === "string");
      const workloadAddress = () => (podCidrs[0] ? addressIn(podCidrs[0]) : `10.${randomInt(256)}.${randomInt(256)}.${1 + randomInt(254)}`);
      nodeNames = { own: own.name, other: other.name };
      const victimTenant = uniqueName("victim");
      const created = await app.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name: victimTenant } });
      if (created.statusCode !== 201) throw new Error(`victim: ${created.statusCode}`);
      victims = { tenant: victimTenant, node: victimNode.name };
      for (const t of [a, b]) {
        await mustPut(app, t.token, t.tenant, "identities/web", { path: "/ns/prod/sa/web", selectors: { app: "web" } });
        await mustPut(app, t.token, t.tenant, "workloads/w1", { identity: "web", node: own.name, addresses: [workloadAddress()] });
        await mustPut(app, t.token, t.tenant, "services/svc", { vip: freshVip(), ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { identity: "web" } } });
        await mustPut(app, t.token, t.tenant, "policies/pol", { subject: { identity: "web" }, ingress: [{ action: "allow" }] });
        await mustPut(app, t.token, t.tenant, "httpRoutes/route", { parentRefs: [{ name: "svc" }], rules: [{ backendRefs: [{}] }] });
        await mustPut(app, t.token, t.tenant, "trafficPolicies/tp", { targetRef: { name: "svc" }, outlierDetection: {}, rateLimit: { requestsPerSecond: 10 } });
      }
      const jwtParts = a.token.split(".");
      const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
      const claims = jwtParts.length === 3 ? (JSON.parse(Buffer.from(jwtParts[1]!, "base64url").toString()) as Record<string, unknown>) : {};
      const bClaims = b.token.split(".").length === 3 ? (JSON.parse(Buffer.from(b.token.split(".")[1]!, "base64url").toString()) as Record<string, unknown>) : {};
      malformedHeaders = [
        "Bearer",
        "Bearer ",
        `bearer ${OPERATOR_TOKEN}`,
        `Basic ${Buffer.from(`op:${OPERATOR_TOKEN}`).toString("base64")}`,
        `Bearer ${OPERATOR_TOKEN}x`,
        `Bearer ${OPERATOR_TOKEN.slice(0, -1)}`,
        `Bearer weft_op_${"a".repeat(40)}`,
        `Bearer ${NODE_CREDENTIAL_PREFIX}bogus`,
        `Bearer ${own.credential}x`,
        `Bearer ${a.token.slice(0, -2)}${a.token.endsWith("AA") ? "BB" : "AA"}`,
        `Bearer ${jwtParts[0]}.${b64({ ...claims, ...Object.fromEntries(Object.entries(bClaims).filter(([k]) => k !== "exp" && k !== "iat")) })}.${jwtParts[2]}`,
        `Bearer ${b64({ alg: "none", typ: "JWT" })}.${jwtParts[1]}.`,
        `Bearer ${b64({ alg: "HS256", typ: "JWT" })}.${jwtParts[1]}.${jwtParts[2]}`,
        `Bearer ${a.token} extra`,
        `Bearer  ${a.token}`,
        `Bearer ${aRevoked.token}`,
        `Bearer ${"a".repeat(10_000)}`,
        "Bearer \u00ff\u00fe",
        `Bearer ${OPERATOR_TOKEN}\u0000`,
        "Bearer ../../../etc/passwd",
        `Bearer ${a.token}, Bearer ${OPERATOR_TOKEN}`,
      ];
      const joins = [await joinToken(app), await joinToken(app), await joinToken(app)].map((j) => j.token);
      principals = [
        { label: "no token", kind: "none", ip: (n) => `10.201.${(n >> 8) & 255}.${n & 255}` },
        { label: "malformed token", kind: "malformed", ip: (n) => `10.202.${(n >> 8) & 255}.${n & 255}` },
        { label: "operator", kind: "operator", header: `Bearer ${OPERATOR_TOKEN}`, ip: (n) => `10.203.${(n >> 8) & 255}.${n & 255}` },
        { label: "A admin", kind: "tenant", header: `Bearer ${a.token}`, tenant: a.tenant, scopes: ["admin"], ip: (n) => `10.204.${(n >> 8) & 255}.${n & 255}` },
        { label: "A read", kind: "tenant", header: `Bearer ${aRead.token}`, tenant: a.tenant, scopes: ["read"], ip: (n) => `10.205.${(n >> 8) & 255}.${n & 255}` },
        { label: "B admin", kind: "tenant", header: `Bearer ${b.token}`, tenant: b.tenant, scopes: ["admin"], ip: (n) => `10.206.${(n >> 8) & 255}.${n & 255}` },
        { label: "B read", kind: "tenant", header: `Bearer ${bRead.token}`, tenant: b.tenant, scopes: ["read"], ip: (n) => `10.207.${(n >> 8) & 255}.${n & 255}` },
        { label: "node", kind: "node", header: `Bearer ${own.credential}`, node: own.name, ip: (n) => `10.208.${(n >> 8) & 255}.${n & 255}` },
      ];
      ctx = {
        labels: [a.tenant, b.tenant, own.name, other.name, "web", "w1", "svc", "pol", "route", "tp"],
        nodes: [own.name, other.name],
        identities: ["web", "web", "nobody"],
        workloads: ["w1", "w2"],
        csr: makeCsr(tmp.dir).csrPem,
        joinTokens: joins,
        uuids: [aSpare.id, bSpare.id, aRevoked.id],
        podCidrs,
      };
      console.log(`fuzz ${backend}: setup in ${((Date.now() - setupStarted) / 1000).toFixed(1)} s`);
    }, 120_000);

    afterAll(async () => {
      tmp.cleanup();
      await app?.close();
    });

    /** The state a refused request must leave as it was: A's and B's change logs and audit logs, and on PGlite every write. */
    async function snapshot(): Promise<string> {
      const ids = [tenantIds.a, tenantIds.b];
      const [audit] = await app.weft.db.select({ n: sql<number>`count(*)::int` }).from(auditLog).where(inArray(auditLog.tenantId, ids));
      const parts = [await tenantChanges(app, tenants.a), await tenantChanges(app, tenants.b), audit!.n];
      // The global revision only where nothing else writes: other suites may share the Postgres server.
      if (backend === "pglite") parts.push(await currentRevision(app));
      return parts.join("/");
    }

    type Prepared = ReturnType<typeof prepare>;

    /** The request a spec stands for, as sent by its principal (the n-th request of the run). */
    function prepare(spec: Spec, n: number, routes: RouteEntry[], protectedValues: Set<string>) {
      const route = routes[spec.route]!;
      const principal = principals[spec.principal]!;
      const { url: rawUrl, payload, contentType } = materialize(spec, route, victims, protectedValues);
      const url = clampWait(rawUrl).replace(CURSOR, encodeURIComponent(cursors[n % Math.max(1, cursors.length)] ?? ""));
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(spec.headers)) headers[k] = v.includes(ETAG) ? v.replace(ETAG, etags[(n * 7) % Math.max(1, etags.length)] ?? '"0"') : v;
      const auth = principal.kind === "malformed" ? malformedHeaders[spec.malformed] : principal.header;
      if (auth !== undefined) headers.authorization = auth;
      if (contentType !== null && payload !== undefined) headers["content-type"] = contentType;
      const matched = matchRoute(routes, route.method, url);
      const where = matched ? routeLabel(matched.route) : `${routeLabel(route)} (unmatched)`;
      const body = spec.body.kind === "huge" ? `<${spec.body.bytes} bytes>` : clip(JSON.stringify(spec.body), 300);
      const example = `${route.method} ${clip(url, 200)} as ${principal.label}${principal.kind === "malformed" ? ` (${clip(JSON.stringify(auth), 60)})` : ""} headers=${clip(JSON.stringify(spec.headers), 150)} body=${body}`;
      const inject = { method: route.method as "GET", url, headers, remoteAddress: principal.ip(n), ...(payload !== undefined ? { payload } : {}) };
      return { route, principal, url, matched, where, example, inject };
    }

    /**
     * Sends one request within TIMEOUT_MS and checks what needs no other
     * state: no 5xx, a problem for every 4xx, the access rule. Null when
     * there was no answer (recorded as a failure).
     */
    async function fire(p: Prepared, rec: ReturnType<typeof recorder>, statuses: Map<string, number>, byPrincipal?: Map<string, Map<string, number>>) {
      const count = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
      let res: Awaited<ReturnType<WeftApp["inject"]>> | "timeout";
      try {
        res = await Promise.race([app.inject(p.inject), sleep(TIMEOUT_MS)]);
      } catch (err) {
        count(statuses, "inject threw");
        rec.add(`inject threw (${(err as Error).message.slice(0, 60)})`, p.where, p.principal.label, p.example);
        return null;
      }
      if (res === "timeout") {
        count(statuses, "no answer");
        rec.add(`no answer within ${TIMEOUT_MS} ms`, p.where, p.principal.label, p.example);
        return null;
      }
      const status = res.statusCode;
      count(statuses, String(status));
      if (byPrincipal) {
        const perP = byPrincipal.get(p.principal.label) ?? new Map<string, number>();
        count(perP, `${Math.floor(status / 100)}xx`);
        byPrincipal.set(p.principal.label, perP);
      }
      if (typeof res.headers.etag === "string" && etags.length < 64) etags.push(res.headers.etag);
      if (status < 300 && cursors.length < 64 && res.body.includes('"nextCursor":"')) {
        const next = (JSON.parse(res.body) as { nextCursor?: unknown }).nextCursor;
        if (typeof next === "string") cursors.push(next);
      }
      const shown = `${p.example} -> ${clip(res.body, 200)}`;
      if (status >= 500) rec.add(`${status}`, p.where, p.principal.label, shown);
      if (status >= 400 && status < 500 && !/^application\/problem\+json/.test(String(res.headers["content-type"]))) {
        rec.add(`${status} not application/problem+json but ${String(res.headers["content-type"])} (${errorCodeOf(res.body)})`, p.where, p.principal.label, shown, false);
      }
      if (p.matched && status < 400) {
        const why = mustRefuse(p.principal, p.matched.route.auth, p.matched.params);
        if (why) rec.add(`${status} though the access rule refuses: ${why}`, p.where, p.principal.label, shown);
      }
      return res;
    }

    it(
      "answers every generated request in time, without a 5xx, with a problem for every 4xx, storing nothing for it, and as the route's access rule says",
      async () => {
        const routes = app.routeTable.filter((r) => r.auth !== undefined);
        const withBody = routes.filter((r) => schemaOf(r).body).length;
        expect(routes.length).toBeGreaterThanOrEqual(40);
        expect(withBody).toBeGreaterThanOrEqual(10);
        const specs = fc.sample(
          specArb(routes, principals.length, malformedHeaders.length, ctx, [tenants.a, tenants.b], [nodeNames.own, nodeNames.other]),
          { seed: SEED, numRuns: REQUESTS },
        );
        const protectedValues = new Set([tenants.a, tenants.b, nodeNames.own]);
        const rec = recorder(SEED, backend);
        const statuses = new Map<string, number>();
        const byPrincipal = new Map<string, Map<string, number>>();
        const started = Date.now();
        let tried = 0;
        let before = await snapshot();
        for (const spec of specs) {
          if (Date.now() - started > BUDGET_MS) break;
          tried++;
          const sent = prepare(spec, tried, routes, protectedValues);
          const res = await fire(sent, rec, statuses, byPrincipal);
          if (res === null) {
            before = await snapshot();
            continue;
          }
          const status = res.statusCode;
          const { where, principal, example, matched, url } = sent;
          const after = await snapshot();
          if (status >= 400 && after !== before) rec.add(`${status} but stored (${before} -> ${after})`, where, principal.label, example);
          const q = parseQuery(url.split("?").slice(1).join("?"));
          const dryRun = q.dryRun === "true" && matched !== null && schemaOf(matched.route).querystring?.properties?.dryRun !== undefined;
          if (status < 300 && dryRun && after !== before) rec.add(`${status} to a dry run but stored (${before} -> ${after})`, where, principal.label, example);
          before = after;
        }
        const seconds = ((Date.now() - started) / 1000).toFixed(1);
        const dist = [...statuses.entries()].sort(([x], [y]) => x.localeCompare(y)).map(([s, n]) => `${s}: ${n}`).join(", ");
        const perPrincipal = [...byPrincipal.entries()].map(([p, m]) => `${p} {${[...m.entries()].sort().map(([s, n]) => `${s}: ${n}`).join(", ")}}`).join("; ");
        console.log(
          `fuzz ${backend}: seed ${SEED}, ${tried} of ${specs.length} requests in ${seconds} s over ${routes.length} routes (budget ${BUDGET_MS} ms; ${etags.length} ETags and ${cursors.length} cursors reused)\n` +
            `  statuses: ${dist}\n  by principal: ${perPrincipal}`,
        );
        expect(rec.failures.size, rec.report()).toBe(0);
        // The fuzz must have reached handlers, not only validation and the guard.
        expect([...statuses.keys()].some((s) => s.startsWith("2"))).toBe(true);
      },
      BUDGET_MS + 60_000,
    );

    it("answers bursts of the same valid-ish request sent at once, in time and without a 5xx", async () => {
      const routes = app.routeTable.filter((r) => r.auth !== undefined);
      // Callers the routes mostly let through: races are behind the guard.
      const callers = principals.map((p, i) => [p, i] as const).filter(([p]) => p.kind === "operator" || p.kind === "node" || p.scopes?.includes("admin")).map(([, i]) => i);
      const writes = routes.map((r, i) => [r, i] as const).filter(([r]) => r.method !== "GET").map(([, i]) => i);
      const bursts = fc.sample(
        fc
          .tuple(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...writes) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: routes.length - 1 }) }), fc.constantFrom(...callers))
          .chain(([i, principal]) => {
            const v = validSpecParts(routes[i]!, ctx, [tenants.a, tenants.b], [nodeNames.own, nodeNames.other]);
            return fc.record({ route: fc.constant(i), principal: fc.constant(principal), malformed: fc.constant(0), ...v });
          })
          // Only callers the route's rule lets through.
          .filter((spec) => mustRefuse(principals[spec.principal]!, routes[spec.route]!.auth, Object.fromEntries(Object.entries(spec.params).map(([k, v]) => [k, decodeURIComponent(v)]))) === null),
        { seed: SEED + 1, numRuns: BURSTS },
      );
      const protectedValues = new Set([tenants.a, tenants.b, nodeNames.own]);
      const rec = recorder(SEED, `${backend} (bursts)`);
      const statuses = new Map<string, number>();
      const started = Date.now();
      let n = 0;
      for (const spec of bursts) {
        if (Date.now() - started > BUDGET_MS / 4) break;
        await Promise.all(Array.from({ length: BURST_SIZE }, () => fire(prepare(spec, ++n, routes, protectedValues), rec, statuses)));
      }
      const dist = [...statuses.entries()].sort(([x], [y]) => x.localeCompare(y)).map(([s, k]) => `${s}: ${k}`).join(", ");
      console.log(`fuzz ${backend} bursts: ${n} requests (${BURST_SIZE} at once) in ${((Date.now() - started) / 1000).toFixed(1)} s; statuses: ${dist}`);
      expect(rec.failures.size, rec.report()).toBe(0);
    }, BUDGET_MS / 4 + 60_000);

    it("answers raw HTTP requests with bytes inject cannot send, in time and without a 5xx", async () => {
      await app.listen({ port: 0, host: "127.0.0.1" });
      const port = (app.server.address() as { port: number }).port;
      const { a, b } = tenants;
      const aAuth = principals[3]!.header!;
      const bytes = (hex: string) => Buffer.from(hex.replace(/ /g, ""), "hex");
      const idBody = JSON.stringify({ path: "/ns/raw/sa/x" });
      const cases: { label: string; req: Buffer }[] = [
        { label: "invalid UTF-8 in the path", req: rawBytes({ method: "GET", target: Buffer.concat([Buffer.from(`/v1/tenants/${a}/identities/`), bytes("ff fe")]), headers: [["Authorization", aAuth]] }) },
        { label: "latin1 byte in the path", req: rawBytes({ method: "GET", target: Buffer.concat([Buffer.from(`/v1/tenants/${a}/identities/`), bytes("e9")]), headers: [["Authorization", aAuth]] }) },
        { label: "bad escape and a quote in the path", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}/identities/%ff"}`, headers: [["Authorization", aAuth]] }) },
        { label: "latin1 byte and a bad escape in the path", req: rawBytes({ method: "GET", target: Buffer.concat([Buffer.from(`/v1/tenants/${a}/identities/%ff`), bytes("e9 e9 e9")]), headers: [["Authorization", aAuth]] }) },
        { label: "invalid UTF-8 in the query", req: rawBytes({ method: "GET", target: Buffer.concat([Buffer.from(`/v1/tenants/${a}/identities?cursor=`), bytes("c0 ae ff")]), headers: [["Authorization", aAuth]] }) },
        { label: "dot segments, not normalized", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}/../${b}/identities`, headers: [["Authorization", aAuth]] }) },
        { label: "encoded dot segments", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}/%2e%2e/${b}/identities`, headers: [["Authorization", aAuth]] }) },
        { label: "encoded slash in the tenant", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}%2f..%2f${b}/identities`, headers: [["Authorization", aAuth]] }) },
        { label: "backslashes", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}\\..\\${b}/identities`, headers: [["Authorization", aAuth]] }) },
        { label: "absolute-form target naming another path", req: rawBytes({ method: "GET", target: `http://127.0.0.1/v1/tenants/${b}/identities`, headers: [["Authorization", aAuth]] }) },
        { label: "double slash", req: rawBytes({ method: "GET", target: `//v1/tenants/${b}/identities`, headers: [["Authorization", aAuth]] }) },
        { label: "NUL in the path", req: rawBytes({ method: "GET", target: Buffer.concat([Buffer.from(`/v1/tenants/${a}/identities/a`), bytes("00")]), headers: [["Authorization", aAuth]] }) },
        { label: "invalid UTF-8 in Authorization", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}`, headers: [["Authorization", Buffer.concat([Buffer.from("Bearer "), bytes("ff fe c0")])]] }) },
        { label: "NUL in Authorization", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}`, headers: [["Authorization", Buffer.concat([Buffer.from(aAuth), bytes("00")])]] }) },
        { label: "latin1 in If-None-Match", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}/identities/web`, headers: [["Authorization", aAuth], ["If-None-Match", bytes("22 e9 ff 22")]] }) },
        { label: "latin1 in If-Match on a write", req: rawBytes({ method: "PUT", target: `/v1/tenants/${a}/identities/web`, headers: [["Authorization", aAuth], ["If-Match", bytes("22 e9 ff 22")], ["Content-Type", "application/json"]], body: idBody }) },
        { label: "invalid UTF-8 in the body", req: rawBytes({ method: "PUT", target: `/v1/tenants/${a}/identities/raw1`, headers: [["Authorization", aAuth], ["Content-Type", "application/json"]], body: Buffer.concat([Buffer.from('{"path":"/ns/'), bytes("ff c0 ae"), Buffer.from('/sa/x"}')]) }) },
        { label: "invalid UTF-8 in a label value", req: rawBytes({ method: "PUT", target: `/v1/tenants/${a}/identities/raw2`, headers: [["Authorization", aAuth], ["Content-Type", "application/json"]], body: Buffer.concat([Buffer.from('{"path":"/ns/a/sa/b","selectors":{"k":"'), bytes("ed a0 80"), Buffer.from('"}}')]) }) },
        { label: "chunked body with invalid UTF-8", req: rawBytes({ method: "PUT", target: `/v1/tenants/${a}/identities/raw3`, headers: [["Authorization", aAuth], ["Content-Type", "application/json"], ["Transfer-Encoding", "chunked"]], body: Buffer.concat([Buffer.from("5\r\n{\"a\":\r\n2\r\n"), bytes("ff fe"), Buffer.from("\r\n1\r\n}\r\n0\r\n\r\n")]) }) },
        { label: "Content-Length and Transfer-Encoding both", req: rawBytes({ method: "PUT", target: `/v1/tenants/${a}/identities/raw4`, headers: [["Authorization", aAuth], ["Content-Type", "application/json"], ["Content-Length", "2"], ["Transfer-Encoding", "chunked"]], body: "0\r\n\r\n" }) },
        { label: "two Content-Length headers", req: rawBytes({ method: "PUT", target: `/v1/tenants/${a}/identities/raw5`, headers: [["Authorization", aAuth], ["Content-Type", "application/json"], ["Content-Length", String(idBody.length)], ["Content-Length", "1"]], body: idBody }) },
        { label: "huge header", req: rawBytes({ method: "GET", target: `/v1/tenants/${a}`, headers: [["Authorization", aAuth], ["X-Pad", "x".repeat(70_000)]] }) },
        { label: "declared body over 1 MiB", req: rawBytes({ method: "PUT", target: `/v1/tenants/${a}/identities/raw6`, headers: [["Authorization", aAuth], ["Content-Type", "application/json"]], body: `{"path":"${"x".repeat(ONE_MIB + 10)}"}` }) },
        { label: "two Authorization headers", req: rawBytes({ method: "GET", target: `/v1/tenants/${b}`, headers: [["Authorization", aAuth], ["Authorization", principals[5]!.header!]] }) },
        { label: "unknown method", req: rawBytes({ method: "FUZZ", target: `/v1/tenants/${a}`, headers: [["Authorization", aAuth]] }) },
        { label: "garbage request line", req: Buffer.from("\u0000\u0001GET / HTTP/9.9\r\n\r\n", "latin1") },
        { label: "HTTP/1.0 without Host", req: Buffer.from(`GET /v1/tenants/${a} HTTP/1.0\r\nAuthorization: ${aAuth}\r\n\r\n`) },
      ];
      const rec = recorder(SEED, `${backend} (raw HTTP)`);
      const outcomes: string[] = [];
      const show = (req: Buffer) => clip(JSON.stringify(req.toString("latin1").split("\r\n")[0]), 200);
      const statuses = new Map<string, number>();
      const started = Date.now();
      for (const c of cases) {
        const before = await snapshot();
        let res: Awaited<ReturnType<typeof rawRequest>>;
        try {
          res = await rawRequest(port, c.req, TIMEOUT_MS);
        } catch (err) {
          rec.add(`no answer: ${(err as Error).message.slice(0, 80)}`, c.label, "raw", show(c.req));
          continue;
        }
        if (res === "closed-without-response") {
          statuses.set("closed", (statuses.get("closed") ?? 0) + 1);
          outcomes.push(`${c.label}: closed`);
          continue;
        }
        statuses.set(String(res.status), (statuses.get(String(res.status)) ?? 0) + 1);
        outcomes.push(`${c.label}: ${res.status}`);
        const example = `${show(c.req)} -> ${res.status} ${clip(res.body.toString("latin1"), 200)}`;
        const text = c.req.toString("latin1");
        if (!(res.status >= 200 && res.status < 500)) rec.add(`status ${res.status}`, c.label, "raw", example);
        if (res.status >= 400 && res.status < 500 && !/^application\/problem\+json/.test(res.headers["content-type"] ?? "")) {
          const what = `${res.status} not application/problem+json but ${res.headers["content-type"]} (${errorCodeOf(res.body.toString("latin1"))})`;
          rec.add(what, c.label, "raw", example, false);
        }
        const length = res.headers["content-length"];
        if (length !== undefined && Number(length) !== res.body.length) rec.add(`Content-Length ${length} but ${res.body.length} body bytes`, c.label, "raw", example);
        if (res.status >= 400 && (await snapshot()) !== before) rec.add(`${res.status} but stored`, c.label, "raw", example);
        // A's token, a path that names B's tenant and not A's: never a success.
        if (res.status < 400 && text.includes(b) && !text.includes(`/tenants/${a}/`) && !text.includes(principals[5]!.header!)) {
          rec.add(`${res.status} to A's token on a path naming B`, c.label, "raw", example);
        }
      }
      console.log(
        `fuzz ${backend} raw HTTP: ${cases.length} requests in ${((Date.now() - started) / 1000).toFixed(1)} s; statuses: ${[...statuses.entries()].map(([s, n]) => `${s}: ${n}`).join(", ")}\n  ${outcomes.join("; ")}`,
      );
      expect(rec.failures.size, rec.report()).toBe(0);
    }, 120_000);
  });
});

/** Leaves out `wait` values above MAX_WAIT_S (a long poll is a hold by design, not a hang), and `follow` (a stream, held until the client leaves). */
function clampWait(url: string): string {
  const [path, ...rest] = url.split("?");
  if (rest.length === 0) return url;
  const pairs = rest.join("?").split("&");
  const kept = pairs.filter((p) => {
    const [k, v = ""] = p.split("=");
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(k!.replace(/\+/g, " "));
      value = decodeURIComponent(v.replace(/\+/g, " "));
    } catch {
      return true;
    }
    if (key === "follow") return false;
    if (key !== "wait") return true;
    const n = Number(value.trim());
    return !(value.trim() !== "" && Number.isFinite(n) && n > MAX_WAIT_S);
  });
  return kept.length > 0 ? `${path}?${kept.join("&")}` : path!;
}
