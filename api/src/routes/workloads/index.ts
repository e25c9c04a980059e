import { resourceRoutes } from "../tenant-resource.ts";
import { Workload, WorkloadSpec } from "./schemas.ts";
import { toWorkload, workloadStore } from "./store.ts";

/** Workloads of a tenant: an identity's addresses on a node. Registered by a tenant token (write scope). */
export default resourceRoutes({
  plural: "workloads",
  noun: "workload",
  spec: WorkloadSpec,
  resource: Workload,
  store: workloadStore,
  show: toWorkload,
  putNote:
    "The identity must be one of the tenant's (422 body.identity), the node registered (422 body.node), and no address used by any other workload or service VIP on the platform (409).",
});
