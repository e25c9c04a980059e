import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { DATAPATH_MAPS, type DatapathMap } from "../../compiler/index.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import { badRequest, HttpProblem, notFound } from "../../http/problem.ts";
import { NotModified, problemResponses } from "../responses.ts";
import { deltaJson, NodeBodies } from "./answers.ts";
import { DatapathDelta, DatapathParams, DatapathQuery, DatapathState } from "./schemas.ts";

const tags = ["datapath"];
/** How long past its wait a held poll's socket may stay silent before the server drops it. */
const HELD_POLL_SOCKET_MARGIN_MS = 30_000;

const emptyMaps = () => Object.fromEntries(DATAPATH_MAPS.map((m) => [m, []])) as unknown as Record<DatapathMap, never[]>;

/** The node's ETag is its content hash, quoted; a bare hash in If-None-Match is taken too. */
const hashEtag = (hash: string) => `"${hash}"`;
const matches = (hash: string, ifNoneMatch: string | undefined): boolean =>
  ifNoneMatch !== undefined &&
  ifNoneMatch.split(",").some((t) => {
    const tag = t.trim().replace(/^W\//, "");
    return tag === "*" || tag === hashEtag(hash) || tag === hash;
  });

const datapathRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const follower = app.weft.follower;
  const bodies = new NodeBodies();
  const unknownNode = (node: string) => {
    bodies.forget(node);
    return notFound(`node "${node}"`);
  };

  app.get(
    "/v1/nodes/:node/datapath",
    {
      config: { auth: { who: "node" } },
      schema: {
        tags,
        summary: "A node's desired datapath: full maps, a delta, or a long poll",
        description: [
          "Full state: {revision, hash, maps}, ETag = hash, If-None-Match answers 304.",
          "?since=REV: {revision, hash, upserts, deletes} from the state at REV, or 410 when REV is older than this replica keeps (read the full state then).",
          "?wait=SECONDS (at most 60): when the state still equals If-None-Match (or `since`), hold until it changes on any replica, then answer as above; on timeout 304 (If-None-Match) or an empty delta (since).",
          "?format=binary: application/octet-stream, the entries as the codec encodes them: \"WEFTDP01\", u32 map count, then per map",
          "u8 name length, kernel map name, u32 count, u32 key size, u32 value size, keys back to back, values back to back (integers little-endian);",
          "revision in x-weft-revision. Compare with `bpftool map dump`.",
        ].join(" "),
        params: DatapathParams,
        querystring: DatapathQuery,
        headers: PreconditionHeaders,
        response: {
          200: {
            description: "The node's state, or a delta",
            content: {
              "application/json": { schema: Type.Union([DatapathState, DatapathDelta]) },
              "application/octet-stream": { schema: Type.String({ format: "binary" }) },
            },
          },
          304: NotModified,
          ...problemResponses(400, 401, 403, 404, 410),
        },
      },
    },
    async (request, reply) => {
      const { node } = request.params;
      const { since, wait, format } = request.query;
      // The app's ajv coerces a 600-digit number to Infinity and lets it through minimum/maximum.
      for (const [field, value] of [["since", since], ["wait", wait]] as const) {
        if (value !== undefined && !Number.isSafeInteger(value)) {
          throw badRequest(`query.${field} is out of range`, [{ field: `query.${field}`, message: "must be a safe integer" }]);
        }
      }
      if (format === "binary" && since !== undefined) {
        throw badRequest("format=binary answers the full maps only", [{ field: "query.format", message: "cannot be combined with since" }]);
      }
      const ifNoneMatch = request.headers["if-none-match"];
      // One pull makes everything committed before this request visible; the rest is answered from memory.
      await follower.refresh();
      let current = follower.state(node);
      if (current === null) throw unknownNode(node);
      // The newest state was first seen at current.revision: a client at or past it has it already.
      const unchanged = since !== undefined ? since >= current.revision : matches(current.datapath.hash, ifNoneMatch);
      if (wait !== undefined && wait > 0 && unchanged) {
        // A client that hangs up stops holding its waiter.
        const gone = new AbortController();
        reply.raw.once("close", () => gone.abort());
        // The server drops a socket idle for its connectionTimeout (30 s, against slow clients); here the
        // server is the idle one, for up to 60 s: give this socket the wait and a margin (Node resets it at the next request).
        const socket = request.raw.socket as { setTimeout?: (ms: number) => unknown } | undefined;
        socket?.setTimeout?.(wait * 1000 + HELD_POLL_SOCKET_MARGIN_MS);
        const changed = await follower.waitForChange(node, current.revision, wait * 1000, gone.signal);
        // Unchanged (timeout, hang-up, shutdown): answer from what is known, without touching the database.
        if (changed) {
          // The pull that woke this poll is applied: no need to read again, and 1,000 woken polls must not.
          current = follower.state(node);
          if (current === null) throw unknownNode(node);
        } else {
          reply.header("etag", hashEtag(current.datapath.hash)).header("x-weft-revision", String(current.revision));
          if (since === undefined) return reply.code(304).send();
          return { revision: current.revision, hash: current.datapath.hash, upserts: emptyMaps(), deletes: emptyMaps() };
        }
      }
      const { revision, datapath } = current;
      reply.header("etag", hashEtag(datapath.hash)).header("x-weft-revision", String(revision));
      // Bodies are encoded once per state (answers.ts) and sent as Buffers, past the schema serializer.
      if (since !== undefined) {
        const delta = follower.delta(node, since);
        if (delta === null) throw unknownNode(node);
        if (delta === "gone") throw new HttpProblem(410, `revision ${since} is older than this replica keeps for node ${node}; read the full state`);
        reply.header("etag", hashEtag(delta.hash)).header("x-weft-revision", String(delta.revision));
        return reply.type("application/json; charset=utf-8").send(deltaJson(delta) as unknown as string);
      }
      if (matches(datapath.hash, ifNoneMatch)) return reply.code(304).send();
      // A Buffer bypasses the JSON serializer; the typed reply only knows the JSON shapes.
      if (format === "binary") return reply.type("application/octet-stream").send(bodies.binaryBody(datapath) as unknown as string);
      return reply.type("application/json; charset=utf-8").send(bodies.fullJson(current) as unknown as string);
    },
  );
};

export default datapathRoutes;
