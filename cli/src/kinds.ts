/**
 * The resource kinds `weft get|apply|delete` know: their names on the
 * command line and in documents, where they live (a tenant's or the
 * platform's), which routes they have, and the columns of their table.
 */
import { UsageError } from "./errors.ts";
import { ROUTES, type Route } from "./routes.ts";

type Item = Record<string, unknown>;

export interface Column {
  header: string;
  value(item: Item): string;
}

export interface Kind {
  /** The plural, as in the API's paths and `weft get services`. */
  plural: string;
  /** The document `kind:` (e.g. Service); also accepted lower-case on the command line. */
  kind: string;
  /** Under /v1/tenants/{tenant}, or the platform's (tenants, nodes: operator token). */
  scope: "tenant" | "platform";
  /** The path placeholder an item's name fills, and the item field holding it. */
  itemParam: "tenant" | "name" | "node" | "id";
  itemKey: "name" | "id";
  routes: { list: Route; get?: Route; put?: Route; delete?: Route };
  columns: Column[];
  /**
   * Body fields the API filled in itself, which a manifest leaves out so
   * that applying it keeps them the API's (a service's allocated VIP).
   */
  chosenByApi?(item: Item): string[];
}

const str = (v: unknown): string => (v === null || v === undefined || v === "" ? "-" : typeof v === "string" ? v : JSON.stringify(v));
const field = (header: string, key: string): Column => ({ header, value: (i) => str(i[key]) });
const labels = (v: unknown): string => {
  const entries = Object.entries((v as Record<string, string> | undefined) ?? {});
  return entries.length ? entries.map(([k, x]) => `${k}=${x}`).join(",") : "-";
};
const list = (v: unknown): string => (Array.isArray(v) && v.length ? v.map(str).join(",") : "-");
const age = (v: unknown): string => {
  if (typeof v !== "string") return "-";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(v)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
};
const NAME = field("NAME", "name");
const AGE: Column = { header: "AGE", value: (i) => age(i.createdAt) };

/** A selector or peer in a word: identity=x, labels a=b, cidr, or all. */
const selector = (v: unknown): string => {
  const s = (v ?? {}) as { identity?: string; labels?: Record<string, string>; cidr?: string };
  const parts = [s.identity ? `identity=${s.identity}` : "", s.labels && Object.keys(s.labels).length ? labels(s.labels) : "", s.cidr ?? ""].filter(Boolean);
  return parts.length ? parts.join(",") : "all";
};
const rules = (v: unknown): string => {
  if (!Array.isArray(v)) return "-";
  const allow = v.filter((r: { action?: string }) => r.action === "allow").length;
  return `${v.length} (${allow} allow, ${v.length - allow} deny)`;
};
const ports = (v: unknown): string =>
  Array.isArray(v) ? v.map((p: { port: number; protocol: string; targetPort: number }) => `${p.port}/${p.protocol}->${p.targetPort}`).join(",") : "-";
const backends = (v: unknown): string => {
  const b = (v ?? {}) as { selector?: unknown; explicit?: unknown[] };
  return b.explicit ? `${b.explicit.length} explicit` : `selector ${selector(b.selector)}`;
};
/** An httpRoute's parents in a word each: service:port, or the service alone for every tcp port. */
const parents = (v: unknown): string =>
  Array.isArray(v) && v.length ? v.map((p: { name: string; port?: number }) => (p.port === undefined ? p.name : `${p.name}:${p.port}`)).join(",") : "-";
/** A trafficPolicy's limits in a word each, the parts it has only: conn=100,pending=10,eject=5x5xx,rate=20/s. */
const trafficLimits = (i: Item): string => {
  const pool = (i.connectionPool ?? {}) as { maxConnections?: number; maxPendingRequests?: number };
  const outlier = i.outlierDetection as { consecutive5xx?: number } | undefined;
  const rate = i.rateLimit as { requestsPerSecond: number; burst?: number } | undefined;
  const parts = [
    pool.maxConnections === undefined ? "" : `conn=${pool.maxConnections}`,
    pool.maxPendingRequests === undefined ? "" : `pending=${pool.maxPendingRequests}`,
    outlier === undefined ? "" : `eject=${outlier.consecutive5xx ?? 5}x5xx`,
    rate === undefined ? "" : `rate=${rate.requestsPerSecond}/s`,
  ].filter(Boolean);
  return parts.length ? parts.join(",") : "-";
};
const bundleSource = (v: unknown): string => {
  const b = (v ?? {}) as { tenant?: string; endpointUrl?: string; spiffeBundle?: unknown };
  return b.tenant ? `tenant ${b.tenant}` : b.endpointUrl ? b.endpointUrl : b.spiffeBundle ? "pasted bundle" : "-";
};

export const KINDS: Kind[] = [
  {
    plural: "tenants",
    kind: "Tenant",
    scope: "platform",
    itemParam: "tenant",
    itemKey: "name",
    routes: ROUTES.tenants,
    columns: [NAME, field("TRUST DOMAIN", "trustDomain"), field("DEFAULT", "defaultAction"), { header: "LABELS", value: (i) => labels(i.labels) }, AGE],
  },
  {
    plural: "identities",
    kind: "Identity",
    scope: "tenant",
    itemParam: "name",
    itemKey: "name",
    routes: ROUTES.identities,
    columns: [
      NAME,
      field("SPIFFE ID", "spiffeId"),
      field("SECURITY ID", "securityIdentity"),
      { header: "NODE SELECTOR", value: (i) => labels(i.nodeSelector) },
      AGE,
    ],
  },
  {
    plural: "workloads",
    kind: "Workload",
    scope: "tenant",
    itemParam: "name",
    itemKey: "name",
    routes: ROUTES.workloads,
    columns: [NAME, field("IDENTITY", "identity"), field("NODE", "node"), { header: "ADDRESSES", value: (i) => list(i.addresses) }, AGE],
  },
  {
    plural: "services",
    kind: "Service",
    scope: "tenant",
    itemParam: "name",
    itemKey: "name",
    routes: ROUTES.services,
    columns: [
      NAME,
      field("VIP", "vip"),
      { header: "PORTS", value: (i) => ports(i.ports) },
      { header: "BACKENDS", value: (i) => backends(i.backends) },
      field("LB", "loadBalancing"),
      AGE,
    ],
    chosenByApi: (i) => (i.vipAllocated === true ? ["vip"] : []),
  },
  {
    plural: "policies",
    kind: "Policy",
    scope: "tenant",
    itemParam: "name",
    itemKey: "name",
    routes: ROUTES.policies,
    columns: [
      NAME,
      { header: "SUBJECT", value: (i) => selector(i.subject) },
      { header: "INGRESS", value: (i) => rules(i.ingress) },
      { header: "EGRESS", value: (i) => rules(i.egress) },
      AGE,
    ],
  },
  {
    plural: "httpRoutes",
    kind: "HttpRoute",
    scope: "tenant",
    itemParam: "name",
    itemKey: "name",
    routes: ROUTES.httpRoutes,
    columns: [NAME, { header: "PARENTS", value: (i) => parents(i.parentRefs) }, { header: "RULES", value: (i) => (Array.isArray(i.rules) ? String(i.rules.length) : "-") }, AGE],
  },
  {
    plural: "trafficPolicies",
    kind: "TrafficPolicy",
    scope: "tenant",
    itemParam: "name",
    itemKey: "name",
    routes: ROUTES.trafficPolicies,
    columns: [NAME, { header: "SERVICE", value: (i) => str((i.targetRef as { name?: string } | undefined)?.name) }, { header: "LIMITS", value: trafficLimits }, AGE],
  },
  {
    plural: "federations",
    kind: "Federation",
    scope: "tenant",
    itemParam: "name",
    itemKey: "name",
    routes: ROUTES.federations,
    columns: [NAME, field("TRUST DOMAIN", "trustDomain"), { header: "SOURCE", value: (i) => bundleSource(i.bundle) }, field("STATUS", "status"), AGE],
  },
  {
    plural: "nodes",
    kind: "Node",
    scope: "platform",
    itemParam: "node",
    itemKey: "name",
    routes: ROUTES.nodes,
    columns: [
      NAME,
      field("ZONE", "zone"),
      field("POD CIDR", "podCidr"),
      { header: "REACHABLE", value: (i) => (i.reachable ? "yes" : "no") },
      { header: "CONVERGED", value: (i) => (i.converged ? "yes" : "no") },
      AGE,
    ],
  },
  {
    plural: "tokens",
    kind: "Token",
    scope: "tenant",
    itemParam: "id",
    itemKey: "id",
    routes: ROUTES.tokens,
    columns: [field("ID", "id"), NAME, { header: "SCOPES", value: (i) => list(i.scopes) }, field("EXPIRES", "expiresAt"), AGE],
  },
  {
    plural: "audit",
    kind: "AuditRecord",
    scope: "tenant",
    itemParam: "id",
    itemKey: "id",
    routes: ROUTES.audit,
    columns: [field("AT", "at"), field("ACTOR", "actor"), field("ACTION", "action"), field("RESOURCE", "resource"), field("REVISION", "revision")],
  },
];

/** A kind by any of its names: plural, `kind:`, singular, case-insensitive ("svc" is not guessed). */
export function findKind(name: string): Kind | undefined {
  const n = name.toLowerCase();
  return KINDS.find((k) => [k.plural, k.kind, singular(k.plural)].some((known) => known.toLowerCase() === n));
}

const singular = (plural: string): string => (plural.endsWith("ies") ? `${plural.slice(0, -3)}y` : plural.replace(/s$/, ""));

export const kindNames = (pred: (k: Kind) => boolean = () => true): string => KINDS.filter(pred).map((k) => k.plural).join(", ");

export const singularOf = (kind: Kind): string => singular(kind.plural);

/** How a command names one resource in its output: `service/web (tenant acme)`, `tenant/acme`. */
export const label = (kind: Kind, name: string, tenant?: string): string =>
  `${singular(kind.plural)}/${name}${kind.scope === "tenant" && tenant ? ` (tenant ${tenant})` : ""}`;

/** The KIND argument of a command, or a usage error listing the kinds. */
export function kindArgument(raw: string | undefined, command: string): Kind {
  if (!raw) throw new UsageError(`which kind? (${kindNames()})`, command);
  const kind = findKind(raw);
  if (!kind) throw new UsageError(`unknown kind "${raw}" (kinds: ${kindNames()})`, command);
  return kind;
}

/** The path parameters naming a kind's collection, or one item of it. */
export function kindParams(kind: Kind, tenant: string | undefined, name?: string): Record<string, string> {
  return { ...(tenant === undefined ? {} : { tenant }), ...(name === undefined ? {} : { [kind.itemParam]: name }) };
}
