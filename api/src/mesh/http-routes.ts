/**
 * HTTP routes (issue 21): a tenant's Gateway API HTTPRoutes in their mesh
 * (GAMMA) form. A route makes the services it names L7 on their tcp ports:
 * connections to them go through the node's HTTP proxy, which picks a
 * backend subset per request. Several routes may name one service; their
 * rules are taken in route-name order.
 *
 * What the schema cannot state is refused here: shape rules before the write
 * (400), the services a route names under the write's lock (422, as any
 * reference the mesh cannot resolve). services.ts asks `requireUnrouted`
 * before a service loses a tcp port a route names (as a parent or as a
 * backend ref's service), or is deleted (409).
 */
import { and, eq, inArray, or, sql } from "drizzle-orm";
import { httpRoutes, services } from "../db/schema.ts";
import type { WriteScope } from "../db/transactions.ts";
import type { Follower } from "../follower/follow.ts";
import { httpRouteRowOf } from "../follower/rows.ts";
import { durationMs as timeoutMs } from "../compiler/l7.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { meshRows, writeMeshRow } from "./write.ts";
import type { Preconditions, ResourceStore } from "./write.ts";
import { etagOf, putIntent } from "./preconditions.ts";
import { fieldRefusal, MeshRefusal, type FieldError } from "./refusal.ts";
import { pathValueProblem } from "./http-paths.ts";
import type { HttpRouteSpec, ServiceSpec } from "./specs.ts";

export type HttpRouteDbRow = typeof httpRoutes.$inferSelect;
type ParentRef = HttpRouteSpec["parentRefs"][number];
type Rule = HttpRouteSpec["rules"][number];
type HeaderModifier = NonNullable<Extract<NonNullable<Rule["filters"]>[number], { type: "RequestHeaderModifier" }>["requestHeaderModifier"]>;

const rows = meshRows(httpRoutes, "httpRoute");
const { byName } = rows;

const malformed = (detail: string, field: string, message: string) => fieldRefusal("malformed", detail, field, message);

/** The longest timeout a route may set: the Gateway API's durations go further than any request should wait. */
const MAX_TIMEOUT_MS = 3_600_000;

/** A Gateway API duration in milliseconds, 0 for "none" (absent or zero), as the compiler reads it. */
const durationMs = (text: string | undefined): number => timeoutMs(text) ?? 0;

/**
 * Headers a route may not set, add or remove: the proxy's own (x-weft-*:
 * it deletes every one a client sends, and a caller's identity must never
 * come from one) and those that frame the message or the connection (RFC
 * 9110 7.6.1 hop-by-hop fields, Host, Content-Length), which the proxy
 * manages and a rewrite would turn into request smuggling.
 */
const RESERVED_HEADERS = new Set(["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"]);
const PROXY_PREFIX = "x-weft-";

function reservedHeader(name: string): string | null {
  const lower = name.toLowerCase();
  if (lower.startsWith(PROXY_PREFIX)) return `${PROXY_PREFIX}* headers are the proxy's: it deletes every one a client sends`;
  if (RESERVED_HEADERS.has(lower)) return `${name} frames the message or the connection: the proxy manages it`;
  return null;
}

/** One modifier's fields, each name once (case-insensitive) over set, add and remove, none of them reserved. */
function checkModifier(modifier: HeaderModifier, field: string): void {
  const seen = new Map<string, string>();
  const named = [
    ...(modifier.set ?? []).map((h, i) => ({ name: h.name, at: `${field}.set.${i}.name` })),
    ...(modifier.add ?? []).map((h, i) => ({ name: h.name, at: `${field}.add.${i}.name` })),
    ...(modifier.remove ?? []).map((name, i) => ({ name, at: `${field}.remove.${i}` })),
  ];
  for (const { name, at } of named) {
    const reserved = reservedHeader(name);
    if (reserved) throw malformed(`a header filter may not change ${name}`, at, reserved);
    const earlier = seen.get(name.toLowerCase());
    if (earlier) throw malformed(`a header filter names ${name} twice`, at, `${earlier} already names it (header names are case-insensitive)`);
    seen.set(name.toLowerCase(), at);
  }
}

function checkMatches(rule: Rule, field: string): void {
  (rule.matches ?? []).forEach((match, m) => {
    const at = `${field}.matches.${m}`;
    if (match.path) {
      const problem = pathValueProblem(match.path.value);
      if (problem) throw malformed("a path match is not a plain path", `${at}.path.value`, problem);
    }
    const seen = new Set<string>();
    (match.headers ?? []).forEach((h, i) => {
      const lower = h.name.toLowerCase();
      // The proxy deletes these before routing: a match on one would never hold, or hold on what a client forged.
      if (lower.startsWith(PROXY_PREFIX)) throw malformed(`a match may not read ${h.name}`, `${at}.headers.${i}.name`, `${PROXY_PREFIX}* headers are the proxy's: it deletes every one a client sends`);
      if (seen.has(lower)) throw malformed(`a match names header ${h.name} twice`, `${at}.headers.${i}.name`, "each header once per match (names are case-insensitive)");
      seen.add(lower);
    });
  });
}

function checkFilters(rule: Rule, field: string): void {
  const seen = new Set<string>();
  (rule.filters ?? []).forEach((filter, f) => {
    const at = `${field}.filters.${f}`;
    // The proxy keeps one request and one response modifier per rule, as the Gateway API allows.
    if (seen.has(filter.type)) throw malformed(`a rule has two ${filter.type} filters`, `${at}.type`, `${filter.type} may appear once per rule: merge them`);
    seen.add(filter.type);
    if (filter.type === "RequestHeaderModifier") checkModifier(filter.requestHeaderModifier, `${at}.requestHeaderModifier`);
    else checkModifier(filter.responseHeaderModifier, `${at}.responseHeaderModifier`);
  });
}

/** A timeout of 0 (the Gateway API's "none") sets none of the route's own; at most an hour; per attempt no longer than the whole. */
function checkTimeouts(rule: Rule, field: string): void {
  const timeouts = rule.timeouts ?? {};
  for (const key of ["request", "backendRequest"] as const) {
    const text = timeouts[key];
    if (text !== undefined && durationMs(text) > MAX_TIMEOUT_MS) {
      throw malformed(`timeout ${text} is over an hour`, `${field}.timeouts.${key}`, "must be at most 1h (0s: none of the route's own)");
    }
  }
  const request = durationMs(timeouts.request);
  const backendRequest = durationMs(timeouts.backendRequest);
  if (request > 0 && backendRequest > request) {
    throw malformed("a backend request may not outlast the whole request", `${field}.timeouts.backendRequest`, `${timeouts.backendRequest} is longer than request ${timeouts.request}`);
  }
}

/** Each service (and port) once: a service with no port already covers each of its ports. */
function checkParents(parents: readonly ParentRef[]): void {
  parents.forEach((ref, i) => {
    const j = parents.findIndex((other, k) => k < i && other.name === ref.name && (other.port === undefined || ref.port === undefined || other.port === ref.port));
    if (j >= 0) throw malformed(`service "${ref.name}" is named twice`, `body.parentRefs.${i}`, `overlaps body.parentRefs.${j}`);
  });
}

/** A port says which port of a named service; the parent's port is the frontend's, so a port without a name means nothing. */
function checkBackendRefs(rule: Rule, field: string): void {
  rule.backendRefs.forEach((ref, b) => {
    if (ref.port !== undefined && ref.name === undefined) {
      throw malformed("a backend ref names a port but no service", `${field}.backendRefs.${b}.port`, "port picks a port of the service named by name; the parent's backends take the frontend's own port");
    }
  });
}

/** Rules of the route the schema cannot state: refused as malformed (400). */
function checkShape(spec: HttpRouteSpec): void {
  checkParents(spec.parentRefs);
  spec.rules.forEach((rule, r) => {
    const field = `body.rules.${r}`;
    checkMatches(rule, field);
    checkFilters(rule, field);
    checkTimeouts(rule, field);
    checkBackendRefs(rule, field);
  });
}

const tcpPorts = (ports: ServiceSpec["ports"]): number[] => ports.filter((p) => p.protocol === "tcp").map((p) => p.port);

/**
 * Every parent is a service of the route's own tenant with the tcp port it
 * names (or some tcp port). A service of another tenant reads exactly like
 * one that exists nowhere.
 */
async function requireServices(w: WriteScope, tenantId: number, spec: HttpRouteSpec): Promise<void> {
  const named = [...spec.parentRefs.map((p) => p.name), ...spec.rules.flatMap((r) => r.backendRefs.flatMap((b) => b.name ?? []))];
  const found = await w.tx
    .select({ name: services.name, ports: services.ports })
    .from(services)
    .where(and(eq(services.tenantId, tenantId), inArray(services.name, [...new Set(named)])));
  const portsOf = new Map(found.map((s) => [s.name, tcpPorts(s.ports as ServiceSpec["ports"])]));
  requireParents(spec.parentRefs, portsOf);
  spec.rules.forEach((rule, r) => requireBackendServices(rule, `body.rules.${r}`, portsOf));
}

function requireParents(parents: readonly ParentRef[], portsOf: ReadonlyMap<string, number[]>): void {
  parents.forEach((ref, i) => {
    const ports = portsOf.get(ref.name);
    if (ports === undefined) throw fieldRefusal("invalid", `service "${ref.name}" does not exist in this tenant`, `body.parentRefs.${i}.name`, `no service "${ref.name}" in this tenant`);
    if (ports.length === 0) throw fieldRefusal("invalid", `service "${ref.name}" has no tcp port`, `body.parentRefs.${i}.name`, "HTTP routes take tcp ports; this service has only udp ones");
    if (ref.port !== undefined && !ports.includes(ref.port)) {
      throw fieldRefusal("invalid", `service "${ref.name}" has no tcp port ${ref.port}`, `body.parentRefs.${i}.port`, `the service's tcp ports are ${ports.join(", ")}`);
    }
  });
}

/**
 * A backend ref naming a service (the Gateway API's canary between
 * services) names one of the tenant's with the tcp port it gives, or with
 * exactly one tcp port when it gives none: its backends take the share on
 * that port's target port. The named service need not be L7 itself.
 */
function requireBackendServices(rule: Rule, field: string, portsOf: ReadonlyMap<string, number[]>): void {
  rule.backendRefs.forEach((ref, b) => {
    if (ref.name === undefined) return;
    const at = `${field}.backendRefs.${b}`;
    const ports = portsOf.get(ref.name);
    if (ports === undefined) throw fieldRefusal("invalid", `service "${ref.name}" does not exist in this tenant`, `${at}.name`, `no service "${ref.name}" in this tenant`);
    if (ports.length === 0) throw fieldRefusal("invalid", `service "${ref.name}" has no tcp port`, `${at}.name`, "HTTP backends take tcp ports; this service has only udp ones");
    if (ref.port === undefined && ports.length > 1) {
      throw fieldRefusal("invalid", `service "${ref.name}" has several tcp ports`, `${at}.port`, `name one of the service's tcp ports: ${ports.join(", ")}`);
    }
    if (ref.port !== undefined && !ports.includes(ref.port)) {
      throw fieldRefusal("invalid", `service "${ref.name}" has no tcp port ${ref.port}`, `${at}.port`, `the service's tcp ports are ${ports.join(", ")}`);
    }
  });
}

/**
 * Refuses (409, naming each route) to take from a service what a route of
 * its tenant names: the whole service (`ports` null: it is being
 * deleted), or a tcp port a route names by number, or its last tcp port;
 * as a backend, also the single tcp port a ref naming no port relies on
 * (a second tcp port would make it ambiguous). A route must be changed
 * first, so that no route ever names what is not there.
 */
export async function requireUnrouted(w: WriteScope, tenantId: number, service: string, ports: ServiceSpec["ports"] | null): Promise<void> {
  const keptTcpPorts = ports === null ? null : tcpPorts(ports);
  const naming = await w.tx
    .select({ name: httpRoutes.name, parentRefs: httpRoutes.parentRefs, rules: httpRoutes.rules })
    .from(httpRoutes)
    .where(
      and(
        eq(httpRoutes.tenantId, tenantId),
        or(
          sql`${httpRoutes.parentRefs} @> ${JSON.stringify([{ name: service }])}::jsonb`,
          sql`${httpRoutes.rules} @> ${JSON.stringify([{ backendRefs: [{ name: service }] }])}::jsonb`,
        ),
      ),
    )
    .orderBy(httpRoutes.name);
  const what = (port: number | undefined, lost: (p: number | undefined) => boolean, whole: string): string | null => {
    if (!lost(port)) return null;
    return keptTcpPorts === null ? "this service" : port === undefined ? whole : `tcp port ${port}`;
  };
  const errors: FieldError[] = [];
  for (const route of naming) {
    (route.parentRefs as ParentRef[]).forEach((ref, i) => {
      if (ref.name !== service) return;
      const lost = what(ref.port, (port) => keptTcpPorts === null || (port === undefined ? keptTcpPorts.length === 0 : !keptTcpPorts.includes(port)), "every tcp port of this service");
      if (lost) errors.push({ field: `httpRoutes.${route.name}.parentRefs.${i}`, message: `names ${lost}` });
    });
    (route.rules as Rule[]).forEach((rule, r) =>
      rule.backendRefs.forEach((ref, b) => {
        if (ref.name !== service) return;
        const lost = what(ref.port, (port) => keptTcpPorts === null || (port === undefined ? keptTcpPorts.length !== 1 : !keptTcpPorts.includes(port)), "the one tcp port of this service");
        if (lost) errors.push({ field: `httpRoutes.${route.name}.rules.${r}.backendRefs.${b}`, message: `names ${lost}` });
      }),
    );
  }
  if (errors.length === 0) return;
  const routes = [...new Set(errors.map((e) => e.field.split(".")[1]))];
  const detail =
    keptTcpPorts === null
      ? `service "${service}" is named by httpRoute ${routes.map((r) => `"${r}"`).join(", ")}: change or delete the route first`
      : `a tcp port of service "${service}" that httpRoute ${routes.map((r) => `"${r}"`).join(", ")} names would be gone or no longer the only one: change the route first`;
  throw new MeshRefusal("conflict", detail, errors);
}

async function putHttpRoute(w: WriteScope, follower: Follower, tenant: TenantDbRow, name: string, spec: HttpRouteSpec, pre: Preconditions) {
  checkShape(spec);
  return writeMeshRow(w, follower, {
    kind: "httpRoute",
    tenantId: tenant.id,
    name,
    lock: () => rows.lock(w, tenant.id, name),
    apply: async (existing) => {
      const intent = putIntent(existing ? etagOf(existing.revision) : null, pre.ifMatch, pre.ifNoneMatch);
      await requireServices(w, tenant.id, spec);
      const values = { parentRefs: spec.parentRefs, rules: spec.rules, revision: w.revision };
      const [row] = existing
        ? await w.tx.update(httpRoutes).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
        : await w.tx.insert(httpRoutes).values({ tenantId: tenant.id, name, ...values }).returning();
      return { change: { kind: "httpRoute", op: "put", row: httpRouteRowOf(row!) }, op: "upsert", action: `httpRoute.${intent}`, result: { row: row!, intent } };
    },
  });
}

export const httpRouteStore: ResourceStore<HttpRouteSpec, HttpRouteDbRow> = { ...rows, put: putHttpRoute };
