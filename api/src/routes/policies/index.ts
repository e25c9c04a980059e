import { etagOf } from "../../mesh/preconditions.ts";
import { resourceRoutes } from "../tenant-resource.ts";
import { Policy } from "./schemas.ts";
import { PolicySpec } from "../../mesh/specs.ts";
import { policyStore, type PolicyDbRow } from "../../mesh/policies.ts";

/** The API representation of a stored row. */
const toPolicy = (row: PolicyDbRow): Policy => ({
  name: row.name,
  subject: row.subject as Policy["subject"],
  ingress: row.ingress as Policy["ingress"],
  egress: row.egress as Policy["egress"],
  mode: row.mode,
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

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
