import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { tenantOf } from "../../auth/guard.ts";
import { systemCaller } from "../../ca/service.ts";
import { contentEtag, notModified } from "../../http/conventions.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import { notFound } from "../../http/problem.ts";
import { TenantParams } from "../../http/schemas.ts";
import { federatedBundles, federationStore, nodeHostsTenant, type FederationView } from "../../mesh/federations.ts";
import { etagOf } from "../../mesh/preconditions.ts";
import { FederationSpec } from "../../mesh/specs.ts";
import { NotModified, problemResponses } from "../responses.ts";
import { resourceRoutes } from "../tenant-resource.ts";
import { FederatedBundles, Federation } from "./schemas.ts";

/** A federated tenant's bundle read that finds no CA makes one, as the public bundle read does. */
const BOOTSTRAP = systemCaller("system:ca-bootstrap");

const toFederation = (row: FederationView): Federation => ({
  name: row.name,
  trustDomain: row.trustDomain,
  bundle: row.bundle as Federation["bundle"],
  status: row.status,
  ...(row.reason !== undefined ? { reason: row.reason } : {}),
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

/**
 * Trust in other trust domains: pasted SPIFFE bundles, bundle endpoints, or
 * other Weft tenants under mutual consent (mesh/federations.ts).
 */
const federationRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  await app.register(
    resourceRoutes({
      plural: "federations",
      noun: "federation",
      spec: FederationSpec,
      resource: Federation,
      store: federationStore(weft.bundleEndpoints, weft.config.federationEndpoints ?? []),
      show: toFederation,
      putNote:
        "The trust domain may not be the tenant's own (422), nor another federation's of the tenant (409); a pasted bundle must hold CA certificates that parse and EC or RSA public keys only (422, naming the key). A named tenant's bundle is served only once that tenant declares a federation naming this tenant with this tenant's trust domain; until then `status` is pending, whether the tenant exists or not. A bundle endpoint must be https, without userinfo, on a host[:port] the operator allows in WEFT_FEDERATION_ENDPOINTS (422 on body.bundle.endpointUrl otherwise); it is fetched on the first read, then at most once per refresh interval (`spiffe_refresh_hint` within 30 s to 1 h, default 5 min), without following redirects, within 5 s and 1 MiB; a failed fetch reads `unavailable` with a reason, and the last good bundle is still served. The API also refreshes every endpoint federation in the background, read or not, and keeps its last good keys for the L7 proxy's JWT rules (a failed fetch or an unusable bundle keeps them; a fetch that finds them changed replaces them). `status` is computed when read: the ETag versions the declaration.",
    }),
  );
};

const bundleRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  app.get(
    "/v1/tenants/:tenant/federated-bundles",
    {
      config: { auth: { who: "tenant", scope: "read", nodes: true } },
      schema: {
        tags: ["federations"],
        summary: "The bundles of the trust domains the tenant federates with, as its workloads get them",
        description:
          "Active federations only. Answered to the tenant's tokens and to the credential of a node that runs a workload of the tenant; any other node gets the 404 of a missing tenant.",
        params: TenantParams,
        headers: PreconditionHeaders,
        response: { 200: FederatedBundles, 304: NotModified, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const p = request.principal;
      if (p?.kind === "node" && !(await nodeHostsTenant(weft.db, tenant.id, p.node))) throw notFound(`tenant "${tenant.name}"`);
      const bundles = await federatedBundles(weft.db, weft.bundleEndpoints, tenant, async (other) => {
        const id = String(other.id);
        const found = (await weft.ca.bundle(id)) ?? (await weft.ca.ensure(id, other.trustDomain, BOOTSTRAP), await weft.ca.bundle(id));
        return found!.json as unknown as { keys: Record<string, unknown>[] };
      });
      const body = { bundles };
      const etag = contentEtag(JSON.stringify(body));
      reply.header("etag", etag);
      if (notModified(etag, request.headers["if-none-match"])) return reply.code(304).send();
      return body;
    },
  );
};

const routes: FastifyPluginAsyncTypebox = async (app) => {
  await app.register(federationRoutes);
  await app.register(bundleRoutes);
};
export default routes;
