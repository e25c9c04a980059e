/**
 * Every request the CLI makes, as the OpenAPI document spells it: the
 * client takes a Route, never a hand-built URL, so a test can check each
 * entry against openapi/openapi.json (test/cli/routes.test.ts) and the CLI
 * cannot drift from the API.
 */
import { CommandError } from "./errors.ts";

export type Method = "GET" | "PUT" | "POST" | "DELETE";

export interface Route {
  method: Method;
  /** The path exactly as in openapi/openapi.json, with {placeholders}. */
  path: string;
  /** The query parameters the CLI may send. */
  query?: readonly string[];
  /**
   * Set while the route is a contract another branch is building and not
   * yet in openapi/openapi.json; the route test fails once it is there, so
   * the mark is removed when the API lands.
   */
  pendingSpec?: string;
}

const route = (method: Method, path: string, query: readonly string[] = [], pendingSpec?: string): Route =>
  pendingSpec ? { method, path, query, pendingSpec } : { method, path, query };

const LIST = ["limit", "cursor"] as const;
const DRY_RUN = ["dryRun"] as const;

/** The four routes of a tenant-owned kind under /v1/tenants/{tenant}/{plural}. */
export function tenantKindRoutes(plural: string) {
  const collection = `/v1/tenants/{tenant}/${plural}`;
  return {
    list: route("GET", collection, LIST),
    get: route("GET", `${collection}/{name}`),
    put: route("PUT", `${collection}/{name}`, DRY_RUN),
    delete: route("DELETE", `${collection}/{name}`, DRY_RUN),
  };
}

const FLOW_QUERY = ["verdict", "identity", "hook", "reason", "node", "since", "limit", "cursor", "follow"] as const;

export const ROUTES = {
  tenants: {
    list: route("GET", "/v1/tenants", LIST),
    get: route("GET", "/v1/tenants/{tenant}"),
    put: route("PUT", "/v1/tenants/{tenant}", DRY_RUN),
    delete: route("DELETE", "/v1/tenants/{tenant}", DRY_RUN),
  },
  identities: tenantKindRoutes("identities"),
  workloads: tenantKindRoutes("workloads"),
  services: tenantKindRoutes("services"),
  policies: tenantKindRoutes("policies"),
  httpRoutes: tenantKindRoutes("httpRoutes"),
  trafficPolicies: tenantKindRoutes("trafficPolicies"),
  federations: tenantKindRoutes("federations"),
  nodes: {
    list: route("GET", "/v1/nodes", LIST),
    get: route("GET", "/v1/nodes/{node}"),
    delete: route("DELETE", "/v1/nodes/{node}"),
  },
  tokens: {
    list: route("GET", "/v1/tenants/{tenant}/tokens", LIST),
    get: route("GET", "/v1/tenants/{tenant}/tokens/{id}"),
    delete: route("DELETE", "/v1/tenants/{tenant}/tokens/{id}", DRY_RUN),
  },
  audit: {
    list: route("GET", "/v1/tenants/{tenant}/audit", LIST),
  },
  x509Svid: route("POST", "/v1/tenants/{tenant}/identities/{name}/x509-svids"),
  bundlePem: route("GET", "/v1/tenants/{tenant}/bundle.pem"),
  tenantFlows: route("GET", "/v1/tenants/{tenant}/flows", FLOW_QUERY),
  allFlows: route("GET", "/v1/flows", FLOW_QUERY),
} as const;

/** Every route in ROUTES, flattened, for the test that checks them against the document. */
export function allRoutes(): Route[] {
  const out: Route[] = [];
  const walk = (v: unknown) => {
    if (v && typeof v === "object" && "method" in v && "path" in v) out.push(v as Route);
    else if (v && typeof v === "object") for (const x of Object.values(v)) walk(x);
  };
  walk(ROUTES);
  return out;
}

/**
 * A URL parser resolves "." and ".." segments (and %2e%2e) before the
 * request leaves: `weft delete service ..` would otherwise delete
 * /v1/tenants/acme itself. No name of the API is empty or all dots.
 */
const DOT_SEGMENT = /^(?:\.|%2e){0,2}$/i;

/** The route's path with each {placeholder} filled (percent-encoded, one segment each); a missing value is a bug, not a 404. */
export function fillPath(r: Route, params: Record<string, string>): string {
  return r.path.replace(/\{([^}]+)\}/g, (_, key: string) => {
    const value = params[key];
    if (value === undefined) throw new Error(`${r.method} ${r.path}: no value for {${key}}`);
    if (DOT_SEGMENT.test(value)) throw new CommandError(`"${value}" is not a ${key}`);
    return encodeURIComponent(value);
  });
}
