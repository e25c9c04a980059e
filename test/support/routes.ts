import { randomUUID } from "node:crypto";
import { expect } from "vitest";
import type { RouteEntry } from "../../api/src/app.ts";
import { accepts, validValue } from "./schema-values.ts";

type Schema = Parameters<typeof validValue>[0];

export const routeLabel = (r: RouteEntry) => `${r.method} ${r.url}`;

/** A request for a route: path parameters filled (tenant and any in `given` as given), a valid body where the route takes one. */
export function requestFor(route: RouteEntry, tenant: string, headers: Record<string, string>, given: Record<string, string> = {}) {
  const schema = (route.schema ?? {}) as { params?: Schema; body?: Schema };
  const params = (schema.params ? validValue(schema.params) : {}) as Record<string, string>;
  const url = route.url.replace(/:(\w+)/g, (_m, p: string) => (p === "tenant" ? tenant : encodeURIComponent(String(given[p] ?? params[p] ?? randomUUID()))));
  const payload = schema.body ? validValue(schema.body) : undefined;
  if (schema.body) expect(accepts(schema.body, payload), `generated body for ${routeLabel(route)}`).toBe(true);
  return {
    method: route.method as "GET",
    url,
    headers: payload === undefined ? headers : { ...headers, "content-type": "application/json" },
    ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
  };
}
