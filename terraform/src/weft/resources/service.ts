import type { ResourceHandler } from "../../framework.ts";
import { itemResource } from "../resource.ts";
import { tenantScopedKeys } from "./tenant-scoped.ts";

export const serviceResource = (): ResourceHandler =>
  itemResource({
    typeName: "weft_service",
    noun: "service",
    openapiPath: "/v1/tenants/{tenant}/services/{name}",
    keys: tenantScopedKeys("service"),
    // The API keeps an allocated VIP across replaces only while the body names none.
    omitWhenUnset: ["vip"],
    keeps: {
      vip_allocated: ({ prior, config }) => config.vip === null || (prior.vip_allocated === false && config.vip === prior.vip),
    },
  });
