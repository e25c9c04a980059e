import { resourceRoutes } from "../tenant-resource.ts";
import { Policy, PolicySpec } from "./schemas.ts";
import { policyStore, toPolicy } from "../../mesh/policies.ts";

/** Network policies of a tenant: who its identities may talk to; deny wins, other tenants never. */
export default resourceRoutes({
  plural: "policies",
  noun: "policy",
  spec: PolicySpec,
  resource: Policy,
  store: policyStore,
  show: toPolicy,
  putNote: "The subject and identity peers name identities of the same tenant only (422, naming the field).",
});
