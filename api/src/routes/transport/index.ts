import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { notModified } from "../../http/conventions.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import { notFound } from "../../http/problem.ts";
import { TransportDocument } from "../../mesh/specs.ts";
import { NodeParams } from "../nodes/schemas.ts";
import { NotModified, problemResponses } from "../responses.ts";
import { transportAnswer } from "./answer.ts";

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
          "ETag: a digest of the document; If-None-Match answers 304, from memory while nothing changed (a CA rotation, a peer's endpoint, a workload moving each announce a revision).",
        ].join(" "),
        params: NodeParams,
        headers: PreconditionHeaders,
        response: { 200: TransportDocument, 304: NotModified, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { node } = request.params;
      const answer = await transportAnswer(weft.follower, node, request.headers["if-none-match"]);
      if (answer === null) throw notFound(`node "${node}"`);
      reply.header("etag", answer.etag);
      if (notModified(answer.etag, request.headers["if-none-match"])) return reply.code(304).send();
      return answer.document;
    },
  );
};

export default transportRoutes;
