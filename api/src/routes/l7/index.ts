import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { notModified } from "../../http/conventions.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import { notFound } from "../../http/problem.ts";
import { L7Document } from "../../mesh/specs.ts";
import { NodeParams } from "../nodes/schemas.ts";
import { NotModified, problemResponses } from "../responses.ts";
import { l7Answer } from "./answer.ts";

const tags = ["datapath"];

const l7Routes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;

  app.get(
    "/v1/nodes/:node/l7",
    {
      config: { auth: { who: "node" } },
      schema: {
        tags,
        summary: "What a node's L7 proxy serves: the L7 service frontends its workloads may call, their routes, backends and authorization, and the node's callers",
        description: [
          "The node's own credential (another node's answers 404) or the operator token.",
          "Frontends of the services an httpRoute names, of the tenants with a workload on the node only; callers are the node's own workloads.",
          "A frontend of a service a trafficPolicy names carries it as traffic, defaults filled in (durations in ms); without one it has no traffic key.",
          "Compiled like the node's maps; the frontends here are the node's weft_l7 entries.",
          "ETag: a digest of the document (the agent reports the one it serves); If-None-Match answers 304.",
          "404 also for a node without a pod CIDR block (it has no proxy address yet).",
        ].join(" "),
        params: NodeParams,
        headers: PreconditionHeaders,
        response: { 200: L7Document, 304: NotModified, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { node } = request.params;
      const answer = await l7Answer(weft.follower, node, request.headers["if-none-match"]);
      if (answer === null) throw notFound(`node "${node}"`);
      reply.header("etag", answer.etag);
      if (notModified(answer.etag, request.headers["if-none-match"])) return reply.code(304).send();
      // The compiler's type must fit the schema: checked here, where both are in reach.
      const document: L7Document = answer.document;
      return document;
    },
  );
};

export default l7Routes;
