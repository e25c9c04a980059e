/**
 * A follow stream over HTTP: Server-Sent Events on the hijacked reply, fed
 * by mesh/flows/follow.ts. Whatever ends it (the client leaving, a revoked
 * token, a client too slow to read, the app closing) runs one cleanup.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { TenantTokens } from "../../auth/tenant-tokens.ts";
import { HttpProblem } from "../../http/problem.ts";
import type { FlowStreams } from "../../mesh/flows/follow.ts";
import type { FlowFilters, FlowReader } from "../../mesh/flows/query.ts";

export const DEFAULT_HEARTBEAT_MS = 15_000;
/** Bytes a client may leave unread before its stream is ended rather than buffered without bound. */
const MAX_UNREAD_BYTES = 4 * 1024 * 1024;

export async function followFlows(
  request: FastifyRequest,
  reply: FastifyReply,
  deps: { streams: FlowStreams; tokens: TenantTokens; heartbeatMs: number; onOpen(): void; onClose(): void },
  reader: FlowReader,
  filters: FlowFilters,
): Promise<void> {
  const raw = reply.raw;
  const principal = request.principal;
  let heartbeat: NodeJS.Timeout | undefined;
  let close: (() => void) | null = null;
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    clearInterval(heartbeat);
    if (close) {
      close();
      deps.onClose();
    }
    if (!raw.writableEnded) raw.end();
  };
  close = await deps.streams.open(reader, filters, {
    send(flow) {
      if (ended) return false;
      if (raw.writableLength > MAX_UNREAD_BYTES) {
        end();
        return false;
      }
      return raw.write(`event: flow\ndata: ${JSON.stringify(flow)}\n\n`);
    },
    stillAllowed() {
      if (principal?.kind !== "tenant") return true;
      try {
        deps.tokens.recheck(principal);
        return true;
      } catch {
        return false;
      }
    },
    end,
  });
  if (close === null) {
    throw new HttpProblem(429, `this tenant has ${deps.streams.maxPerTenant} flow streams open on this replica already; close one first`, undefined, { "retry-after": "5" });
  }
  deps.onOpen();
  reply.hijack();
  raw.on("close", end);
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    "x-accel-buffering": "no",
    "x-request-id": String(request.id),
  });
  raw.write(": following flows\n\n");
  heartbeat = setInterval(() => {
    if (!ended) raw.write(": heartbeat\n\n");
  }, deps.heartbeatMs);
  // The client may have left while the stream opened.
  if (raw.destroyed) end();
}
