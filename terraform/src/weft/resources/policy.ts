import type { ResourceHandler } from "../../framework.ts";
import { itemResource } from "../resource.ts";
import { tenantScopedKeys } from "./tenant-scoped.ts";

export const policyResource = (): ResourceHandler =>
  itemResource({
    typeName: "weft_policy",
    noun: "policy",
    openapiPath: "/v1/tenants/{tenant}/policies/{name}",
    keys: tenantScopedKeys("policy"),
    note: "ingress and egress differ between null (the direction is not governed) and [] (governed: what no rule allows drops).",
  });
