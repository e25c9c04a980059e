// SPDX-License-Identifier: Apache-2.0
/**
 * One access-log record of the node's proxy (render.ts LOG_FORMAT), read
 * from HAProxy's stdout. HAProxy also writes its notices there ("Proxy X
 * stopped" on a reload): lines that do not open a JSON object are those.
 */
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";

const Int = Type.Integer();
/** A line as HAProxy writes it (render.ts LOG_FORMAT). */
const AccessLine = Type.Object({
  startMs: Int,
  src: Type.String(),
  srcPort: Int,
  caller: Type.String(),
  frontend: Type.String(),
  /** tenant/service of the frontend. */
  service: Type.String(),
  vip: Type.String(),
  vport: Int,
  route: Type.String(),
  backend: Type.String(),
  server: Type.String(),
  serverAddress: Type.String(),
  /** "-" when no server was asked. */
  serverPort: Type.String(),
  /** -1: no answer was sent (the client left first). */
  status: Int,
  durationMs: Int,
  /** "+N" when redispatched to another server. */
  retries: Type.String({ pattern: "^\\+?-?[0-9]+$" }),
  bytesIn: Int,
  bytesOut: Int,
  method: Type.String(),
  path: Type.String(),
  /** The proxy's span (render-trace.ts): its trace, its id, and the caller's span when the request came with a valid traceparent. */
  traceId: Type.String(),
  spanId: Type.String(),
  parentSpanId: Type.String(),
  /** Why the proxy answered itself (forbidden, bad-request, no-frontend, no-backend, no-servers; a trafficPolicy's rate-limited, overflow); "" when a backend was asked. */
  refused: Type.String(),
});
/** Checked for every request the proxy serves: compiled once (a tenth of Value.Check's cost a record). */
const accessLine = TypeCompiler.Compile(AccessLine);

/** A record as the agent reads it: unset fields "" (HAProxy's "-"), the server's port a number (0: none). */
export type AccessRecord = Omit<Static<typeof AccessLine>, "serverPort" | "retries"> & { serverPort: number; retries: number };

/** HAProxy names no server this way when none was asked. */
export const NO_SERVER = "<NOSRV>";

/** Fields HAProxy fills from a variable or header that may be unset, which it logs as "-". */
const OPTIONAL_TEXT = ["caller", "frontend", "service", "route", "serverAddress", "traceId", "spanId", "parentSpanId", "refused"] as const;

export function parseAccessRecord(line: string): AccessRecord | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (!accessLine.Check(value)) return null;
  for (const field of OPTIONAL_TEXT) if (value[field] === "-") value[field] = "";
  const port = Number(value.serverPort);
  const retries = Math.max(0, Number(value.retries.replace("+", "")));
  // The parsed object itself, its two text fields made numbers: no copy of 24 fields per request.
  const record = value as unknown as AccessRecord;
  record.serverPort = Number.isInteger(port) && port > 0 && port <= 65535 ? port : 0;
  record.retries = retries;
  return record;
}

/** Whether a backend server answered (http-forwarded) rather than the proxy itself (http-refused). */
export const forwarded = (r: AccessRecord) => r.refused === "" && r.server !== NO_SERVER;
