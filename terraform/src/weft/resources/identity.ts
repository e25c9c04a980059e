import type { ResourceHandler } from "../../framework.ts";
import { itemResource } from "../resource.ts";
import { tenantScopedKeys } from "./tenant-scoped.ts";

/** A SPIFFE identity: the SPIFFE ID follows the path; the numeric identity lives as long as the identity. */
export const identityResource = (): ResourceHandler =>
  itemResource({
    typeName: "weft_identity",
    noun: "identity",
    openapiPath: "/v1/tenants/{tenant}/identities/{name}",
    keys: tenantScopedKeys("identity"),
    keeps: {
      spiffe_id: ({ prior, planned }) => planned.path === prior.path,
      security_identity: () => true,
    },
  });
