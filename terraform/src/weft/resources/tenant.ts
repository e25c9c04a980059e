import type { ResourceHandler } from "../../framework.ts";
import { itemResource } from "../resource.ts";

/** A tenant: its trust domain, default verdict and labels. Needs the operator token. */
export const tenantResource = (): ResourceHandler =>
  itemResource({
    typeName: "weft_tenant",
    noun: "tenant",
    openapiPath: "/v1/tenants/{tenant}",
    keys: [{ parameter: "tenant", attribute: "name", description: "The tenant's name (a DNS label). Changing it replaces the tenant and everything it owns." }],
    note: "Needs the operator token. The trust domain is fixed at creation: a plan that changes it fails at the dry run.",
  });
