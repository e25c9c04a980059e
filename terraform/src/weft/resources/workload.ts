import type { ResourceHandler } from "../../framework.ts";
import { itemResource } from "../resource.ts";
import { tenantScopedKeys } from "./tenant-scoped.ts";

export const workloadResource = (): ResourceHandler =>
  itemResource({
    typeName: "weft_workload",
    noun: "workload",
    openapiPath: "/v1/tenants/{tenant}/workloads/{name}",
    keys: tenantScopedKeys("workload"),
  });
