import { etagOf } from "../../mesh/preconditions.ts";
import { resourceRoutes } from "../tenant-resource.ts";
import { TrafficPolicy } from "./schemas.ts";
import { TrafficPolicySpec } from "../../mesh/specs.ts";
import { trafficPolicyStore, type TrafficPolicyDbRow } from "../../mesh/traffic-policies.ts";

/** The API representation of a stored row: the spec as written (absent parts stay absent). */
const toTrafficPolicy = (row: TrafficPolicyDbRow): TrafficPolicy => ({
  name: row.name,
  targetRef: row.targetRef as TrafficPolicy["targetRef"],
  ...(row.connectionPool === null ? {} : { connectionPool: row.connectionPool as TrafficPolicy["connectionPool"] }),
  ...(row.outlierDetection === null ? {} : { outlierDetection: row.outlierDetection as TrafficPolicy["outlierDetection"] }),
  ...(row.rateLimit === null ? {} : { rateLimit: row.rateLimit as TrafficPolicy["rateLimit"] }),
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

/** Traffic policies of a tenant: circuit breaking, outlier ejection and per-identity rate limits of a service's L7 traffic, applied by each node's proxy. */
export default resourceRoutes({
  plural: "trafficPolicies",
  noun: "trafficPolicy",
  spec: TrafficPolicySpec,
  resource: TrafficPolicy,
  store: trafficPolicyStore,
  show: toTrafficPolicy,
  putNote:
    "targetRef names a service of the same tenant (422 body.targetRef.name); at most one traffic policy names a service (409 body.targetRef.name, naming the policy that does). Refused with 400, naming the field: an outlierDetection interval or baseEjectionTime of 0 or over 300s. Defaults: consecutive5xx 5, interval 10s, baseEjectionTime 30s, maxEjectionPercent 10, burst the requestsPerSecond; a service without httpRoutes is not steered to the proxy, so its policy takes effect once a route names it.",
});
