import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { contentEtag, notModified } from "../../http/conventions.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import { notFound } from "../../http/problem.ts";
import { TransportDocument } from "../../mesh/specs.ts";
import { buildTransportDocument, loadTransportRows } from "../../mesh/transport.ts";
import { NodeParams } from "../nodes/schemas.ts";
import { NotModified, problemResponses } from "../responses.ts";

const tags = ["datapath"];

const transportRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;

  app.get(
    "/v1/nodes/:node/transport",
    {
      config: { auth: { who: "node" } },
      schema: {
        tags,
        summary: "What a node's transport needs: trust bundles, steered remote workloads and their nodes' endpoints, allowed identity pairs",
        description: [
          "The node's own credential (another node's answers 404) or the operator token.",
          "Derived from the node's compiled weft_steer entries: exactly what the kernel steers to the transport.",
          "Certificates and SPIFFE IDs only, never a key; the agent adds its workloads' SVIDs.",
          "ETag: a digest of the document; If-None-Match answers 304.",
        ].join(" "),
        params: NodeParams,
        headers: PreconditionHeaders,
        response: { 200: TransportDocument, 304: NotModified, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { node } = request.params;
      const state = await weft.follower.current(node);
      if (state === null) throw notFound(`node "${node}"`);
      const steer = state.datapath.maps.steer;
      const rows = await loadTransportRows(weft.db, node, steer);
      const bundles = new Map<number, string>();
      for (const tenantId of rows.tenantIds) {
        const bundle = await weft.ca.bundle(String(tenantId));
        if (bundle !== null) bundles.set(tenantId, bundle.pem);
      }
      const document = buildTransportDocument(steer, rows, bundles);
      const etag = contentEtag(JSON.stringify(document));
      reply.header("etag", etag);
      if (notModified(etag, request.headers["if-none-match"])) return reply.code(304).send();
      return document;
    },
  );
};

export default transportRoutes;
