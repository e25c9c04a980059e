import { etagOf } from "../../mesh/preconditions.ts";
import { resourceRoutes } from "../tenant-resource.ts";
import { HttpRoute } from "./schemas.ts";
import { HttpRouteSpec } from "../../mesh/specs.ts";
import { httpRouteStore, type HttpRouteDbRow } from "../../mesh/http-routes.ts";

/** The API representation of a stored row: the spec as written. */
const toHttpRoute = (row: HttpRouteDbRow): HttpRoute => ({
  name: row.name,
  parentRefs: row.parentRefs as HttpRoute["parentRefs"],
  rules: row.rules as HttpRoute["rules"],
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

/** HTTP routes of a tenant (Gateway API HTTPRoute, mesh form): the services they name are routed per request by each node's L7 proxy. */
export default resourceRoutes({
  plural: "httpRoutes",
  noun: "httpRoute",
  spec: HttpRouteSpec,
  resource: HttpRoute,
  store: httpRouteStore,
  show: toHttpRoute,
  putNote:
    "Each parentRef names a service of the same tenant and one of its tcp ports, or none for every tcp port (422, naming the field). Several routes may name one service: their rules are tried in route-name order, then rule order, the first match taking the request. Refused with 400, naming the field: a service (and port) named twice, a backendRequest timeout longer than request, a timeout over 1h (0s: none of the route's own), two filters of one type in a rule, a header named twice in one modifier or one match, a header modifier touching x-weft-* (the proxy's own: it deletes every one a client sends), hop-by-hop headers, Host or Content-Length, a match on x-weft-*, and path values with '.' or '..' segments, '//', %2F, '?' or '#'.",
});
