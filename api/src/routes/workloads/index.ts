import { etagOf } from "../../mesh/preconditions.ts";
import { resourceRoutes } from "../tenant-resource.ts";
import { Workload, WorkloadHealth } from "./schemas.ts";
import { WorkloadSpec } from "../../mesh/specs.ts";
import { workloadStore, type WorkloadDbRow } from "../../mesh/workloads.ts";
import { healthOf } from "../../mesh/health.ts";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { tenantOf } from "../../auth/guard.ts";
import { notFound } from "../../http/problem.ts";
import { problemResponses } from "../responses.ts";
import { Type } from "@sinclair/typebox";
import { Name } from "../../mesh/specs.ts";

/** The API representation of a stored row. */
const toWorkload = (row: WorkloadDbRow): Workload => ({
  name: row.name,
  identity: row.identity,
  node: row.node,
  addresses: row.addresses,
  interface: row.interface,
  healthCheck: row.healthCheck,
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

/**
 * Workloads of a tenant: an identity's addresses on a node. Registered by a
 * tenant token (write scope) or by the agent of the node they run on, with
 * its node credential (issue 5; the store checks the node, and that the
 * identity allows node registration on it: identities' nodeSelector and
 * allowNodeRegistration).
 */
const crud = resourceRoutes({
  plural: "workloads",
  noun: "workload",
  spec: WorkloadSpec,
  resource: Workload,
  store: workloadStore,
  show: toWorkload,
  putNote:
    "The identity must be one of the tenant's (422 body.identity), the node registered and matched by the identity's nodeSelector (422 body.node), every address inside the node's pod CIDR block (GET /v1/nodes/{node} shows it; not the block's network or broadcast address) and no loopback, link-local, multicast, unspecified or broadcast address (422 body.addresses.N), and no address used by any other workload or service VIP on the platform (409).",
  nodeWrites: {
    note:
      "A node agent may also use its node credential: to create or replace a workload with body.node its own name (else 403), " +
      "of an identity whose allowNodeRegistration is true and whose nodeSelector matches the node's labels (else 403 on body.identity, " +
      "the same answer whether or not the identity exists, dry run or not), never one placed on another node (403), and to delete " +
      "a workload placed on it whose identity lets it register (else 403; another node's answers 404, as a missing one).",
  },
});

/**
 * A workload's health is observed, not declared: its own read-only resource,
 * so a flapping probe never moves the workload's ETag (a tenant's If-Match
 * keeps working) while every node's LB tables follow it.
 */
const health: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    "/v1/tenants/:tenant/workloads/:name/health",
    {
      config: { auth: { who: "tenant", scope: "read" } },
      schema: {
        tags: ["workloads"],
        summary: "Read a workload's health as its node's agent reports it",
        params: Type.Object({ tenant: Name, name: Name }),
        response: { 200: WorkloadHealth, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const shown = await healthOf(app.weft.db, tenant.id, request.params.name);
      if (shown === null) throw notFound(`workload "${request.params.name}"`);
      return shown;
    },
  );
};

const workloadRoutes: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(crud);
  await app.register(health);
};
export default workloadRoutes;
