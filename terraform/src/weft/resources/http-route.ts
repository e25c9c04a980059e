import type { ResourceHandler } from "../../framework.ts";
import { itemResource } from "../resource.ts";
import { tenantScopedKeys } from "./tenant-scoped.ts";

export const httpRouteResource = (): ResourceHandler =>
  itemResource({
    typeName: "weft_http_route",
    noun: "HTTP route",
    openapiPath: "/v1/tenants/{tenant}/httpRoutes/{name}",
    keys: tenantScopedKeys("HTTP route"),
    note: "The Gateway API's HTTPRoute in its mesh form: parent_refs name services of the tenant, which turn L7 (through each node's proxy) on the ports named.",
  });
