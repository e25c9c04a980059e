import { resourceRoutes } from "../tenant-resource.ts";
import { Workload, WorkloadSpec } from "./schemas.ts";
import { toWorkload, workloadStore } from "./store.ts";

/**
 * Workloads of a tenant: an identity's addresses on a node. Registered by a
 * tenant token (write scope) or by the agent of the node they run on, with
 * its node credential (issue 5; the store checks the node).
 */
export default resourceRoutes({
  plural: "workloads",
  noun: "workload",
  spec: WorkloadSpec,
  resource: Workload,
  store: workloadStore,
  show: toWorkload,
  putNote:
    "The identity must be one of the tenant's (422 body.identity), the node registered (422 body.node), and no address used by any other workload or service VIP on the platform (409).",
  nodeWrites: {
    note:
      "A node agent may also use its node credential: to create or replace a workload with body.node its own name (else 403), " +
      "never one placed on another node (403), and to delete a workload placed on it (another node's answers 404, as a missing one).",
  },
});
