import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyReply, FastifyRequest } from "fastify";
import { PreconditionHeaders } from "../../http/headers.ts";
import type { NodeState } from "../../follower/history.ts";
import { badRequest, HttpProblem, notFound } from "../../http/problem.ts";
import { NotModified, problemResponses } from "../responses.ts";
import { binaryChunks, deltaChunks, emptyDeltaChunks, fullChunks } from "./answers.ts";
import { acceptsGzip, gzipPieces } from "./gzip.ts";
import { DatapathDelta, DatapathParams, DatapathQuery, DatapathState } from "./schemas.ts";

const tags = ["datapath"];
/** How long past its wait a held poll's socket may stay silent before the server drops it. */
const HELD_POLL_SOCKET_MARGIN_MS = 30_000;

/** Bodies up to this size are joined into one Buffer; larger ones go to the socket piece by piece, uncopied. */
const JOIN_BELOW_BYTES = 16 * 1024;

const byteLength = (chunks: readonly Buffer[]) => chunks.reduce((n, c) => n + c.length, 0);

/**
 * Sends a body made of shared pieces (answers.ts), past the schema
 * serializer. A small one is joined; a large one (a full state with a
 * tenant's 10,000 addresses) is written piece by piece, uncopied, corked
 * into one writev: the socket keeps references to the shared pieces, so
 * 3,000 answers in flight cost no copy each. A large one goes gzip-coded to
 * a client that accepts it (agents do: fetch asks for gzip), from members
 * kept with the shared pieces (gzip.ts). Written on the raw response
 * (onResponse hooks still run; this route has no onSend hooks to skip).
 */
function sendPieces(request: FastifyRequest, reply: FastifyReply, type: string, chunks: Buffer[]): FastifyReply {
  let length = byteLength(chunks);
  reply.header("vary", "accept-encoding");
  if (length < JOIN_BELOW_BYTES) return reply.type(type).send(Buffer.concat(chunks, length));
  const headers: OutgoingHttpHeaders = { ...(reply.getHeaders() as OutgoingHttpHeaders), "content-type": type };
  if (acceptsGzip(request.headers["accept-encoding"])) {
    chunks = gzipPieces(chunks);
    length = byteLength(chunks);
    headers["content-encoding"] = "gzip";
  }
  headers["content-length"] = length;
  reply.hijack();
  // The HTTP/2 compatibility response takes the same calls; the types know only one at a time.
  const res = reply.raw as ServerResponse;
  res.writeHead(reply.statusCode, headers);
  // HTTP/1.1 corks the socket; an HTTP/2 stream frames the pieces itself.
  const corkable = res as Partial<Pick<ServerResponse, "cork" | "uncork">>;
  corkable.cork?.();
  for (const c of chunks) res.write(c);
  res.end();
  corkable.uncork?.();
  return reply;
}

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
  const unknownNode = (node: string) => notFound(`node "${node}"`);

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
          "A body of 16 KiB or more goes gzip-coded (Content-Encoding: gzip, several members back to back) when Accept-Encoding takes gzip.",
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
      // An agent's poll (since or If-None-Match) reads no database while this replica's change feed has told it of
      // everything committed (its own writes at once, other replicas' through NOTIFY) and the client has seen no
      // newer revision than applied (a `since` from another replica pulls first). A poll that is answered with a
      // change, and a plain read (an operator after a write on another replica), check the newest revision first.
      // The newest state was first seen at its revision: a client at or past it has it already.
      const unchangedFor = (s: NodeState) => (since !== undefined ? since >= s.revision : matches(s.datapath.hash, ifNoneMatch));
      await follower.settle(since);
      let current = follower.state(node);
      if (current === null || !unchangedFor(current)) {
        await follower.refresh();
        current = follower.state(node);
      }
      if (current === null) throw unknownNode(node);
      const unchanged = unchangedFor(current);
      if (wait !== undefined && wait > 0 && unchanged) {
        // A client that hangs up stops holding its waiter.
        const gone = new AbortController();
        const hangUp = () => gone.abort();
        reply.raw.once("close", hangUp);
        // The server drops a socket idle for its connectionTimeout (30 s, against slow clients); here the
        // server is the idle one, for up to 60 s: give this socket the wait and a margin (Node resets it at the next request).
        const socket = request.raw.socket as { setTimeout?: (ms: number) => unknown } | undefined;
        socket?.setTimeout?.(wait * 1000 + HELD_POLL_SOCKET_MARGIN_MS);
        const changed = await follower.waitForChange(node, current.revision, wait * 1000, gone.signal);
        // The wait is over: the close that ends this answer's exchange must not abort (an abort builds a DOMException
        // with its stack, and a wave that answers 3,000 polls paid for 3,000 of them).
        reply.raw.off("close", hangUp);
        // Unchanged (timeout, hang-up, shutdown): answer from what is known, without touching the database.
        if (changed) {
          // The pull that woke this poll is applied: no need to read again, and 1,000 woken polls must not.
          current = follower.state(node);
          if (current === null) throw unknownNode(node);
        } else {
          reply.header("etag", hashEtag(current.datapath.hash)).header("x-weft-revision", String(current.revision));
          if (since === undefined) return reply.code(304).send();
          return sendPieces(request, reply, "application/json; charset=utf-8", emptyDeltaChunks(current));
        }
      }
      const { revision, datapath } = current;
      reply.header("etag", hashEtag(datapath.hash)).header("x-weft-revision", String(revision));
      // Bodies are made of pieces shared between nodes and requests (answers.ts).
      if (since !== undefined) {
        const delta = follower.delta(node, since);
        if (delta === null) throw unknownNode(node);
        if (delta === "gone") throw new HttpProblem(410, `revision ${since} is older than this replica keeps for node ${node}; read the full state`);
        reply.header("etag", hashEtag(delta.hash)).header("x-weft-revision", String(delta.revision));
        return sendPieces(request, reply, "application/json; charset=utf-8", deltaChunks(delta));
      }
      if (matches(datapath.hash, ifNoneMatch)) return reply.code(304).send();
      if (format === "binary") return sendPieces(request, reply, "application/octet-stream", binaryChunks(datapath));
      return sendPieces(request, reply, "application/json; charset=utf-8", fullChunks(current));
    },
  );
};

export default datapathRoutes;
