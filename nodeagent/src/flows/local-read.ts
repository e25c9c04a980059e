// SPDX-License-Identifier: Apache-2.0
/**
 * GET /flows?limit=N on the agent's metrics port (127.0.0.1 only): the
 * node's last N flows as JSON, oldest first, for an operator on the node
 * (a per-node `hubble observe --last N`). A bad limit is a 400 problem, as
 * on the API.
 */
import type { FlowSample } from "../agent/client.ts";
import type { LocalRoute } from "../agent/metrics.ts";

export const FLOWS_PATH = "/flows";
export const DEFAULT_LIMIT = 100;

export function flowsRoute(last: (limit: number) => FlowSample[], capacity: number): LocalRoute {
  return (query) => {
    const text = query.get("limit");
    const limit = text === null ? Math.min(DEFAULT_LIMIT, capacity) : Number(text);
    if (text !== null && (!/^\d{1,7}$/.test(text) || limit < 1 || limit > capacity)) {
      return {
        status: 400,
        type: "application/problem+json",
        body: { type: "about:blank", title: "Bad Request", status: 400, detail: `limit ${JSON.stringify(text)} is not an integer 1..${capacity} (the agent keeps the last ${capacity} flows; --flow-buffer)` },
      };
    }
    return { status: 200, body: { flows: last(limit) } };
  };
}
