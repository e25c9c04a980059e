import type { FastifyInstance } from "fastify";
import { badRequest } from "./problem.ts";

/** Path of the first non-finite number in a parsed value, or null. */
function nonFinitePath(value: unknown, path: string, depth = 0): string | null {
  if (typeof value === "number") return Number.isFinite(value) ? null : path;
  if (value === null || typeof value !== "object" || depth > 32) return null;
  for (const [k, v] of Object.entries(value)) {
    const found = nonFinitePath(v, `${path}.${k}`, depth + 1);
    if (found) return found;
  }
  return null;
}

/**
 * ajv's type coercion turns "1e400" (or 600 digits) into Infinity and then
 * lets it past `maximum`; such a number must never reach a handler or the
 * database, so it is refused here, after validation, as the 400 it is.
 */
export function refuseNonFiniteNumbers(app: FastifyInstance): void {
  app.addHook("preHandler", async (request) => {
    for (const [where, value] of [
      ["query", request.query],
      ["path", request.params],
      ["body", request.body],
    ] as const) {
      const field = nonFinitePath(value, where);
      if (field) throw badRequest(`invalid request: ${field}`, [{ field, message: "must be a finite number" }]);
    }
  });
}
