import type { ResourceHandler } from "../../framework.ts";
import { itemResource } from "../resource.ts";
import { tenantScopedKeys } from "./tenant-scoped.ts";

export const trafficPolicyResource = (): ResourceHandler =>
  itemResource({
    typeName: "weft_traffic_policy",
    noun: "traffic policy",
    openapiPath: "/v1/tenants/{tenant}/trafficPolicies/{name}",
    keys: tenantScopedKeys("traffic policy"),
    note: "At most one traffic policy names a service; the service must exist in the same tenant (reference weft_service.x.name so it is created first and destroyed last).",
  });
