// SPDX-License-Identifier: Apache-2.0
/** L7 documents for the agent's proxy tests (issue 21): one that uses every feature the document has. */
import type { L7Document } from "../../nodeagent/src/l7/document.ts";

export const WEB = { address: "198.18.0.10", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/web" };
export const ADMIN = { address: "198.18.0.11", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/admin" };
export const INTRUDER = { address: "198.18.0.12", tenant: "globex", spiffeId: "spiffe://globex.test/ns/x/sa/intruder" };

/** Every feature: two frontends, header/method/path matches, a 90/10 split, retries, timeouts, header filters, deny and allow entries, an empty backend, a trafficPolicy. */
export function richDocument(): L7Document {
  return {
    proxyAddress: "198.18.0.1",
    frontends: [
      {
        name: "f-1-80",
        tenant: "acme",
        service: "api",
        vip: "198.19.0.10",
        port: 80,
        rules: [
          { route: "canary", rule: 0, matches: [{ headers: [{ type: "Exact", name: "x-canary", value: "1" }] }], backends: [{ backend: "b-1-0-0", weight: 1 }] },
          {
            route: "canary",
            rule: 1,
            matches: [{ path: { type: "PathPrefix", value: "/api" }, method: "GET" }, { path: { type: "Exact", value: "/odd\"$#'\\path" } }],
            backends: [
              { backend: "b-1-1-0", weight: 90 },
              { backend: "b-1-0-0", weight: 10 },
            ],
          },
          { route: "empty", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/gone/" } }], backends: [{ backend: "b-2-0-0", weight: 1 }] },
        ],
        defaultBackend: "d-1-80",
        authorization: {
          governed: true,
          entries: [
            { action: "deny", sources: [WEB.spiffeId], methods: ["DELETE"], policy: "api-in", rule: 0 },
            { action: "allow", sources: [WEB.spiffeId], methods: ["GET", "POST"], pathPrefixes: ["/api", "/odd\"$#'\\path", "/gone/"], policy: "api-in", rule: 1 },
            { action: "allow", sources: [ADMIN.spiffeId], policy: "api-in", rule: 2 },
          ],
        },
        traffic: {
          policy: "api-limits",
          maxConnections: 2,
          maxPendingRequests: 3,
          outlier: { consecutive5xx: 5, intervalMs: 10_000, baseEjectionMs: 30_000, maxEjectionPercent: 10 },
          rateLimit: { requestsPerSecond: 2, burst: 5 },
        },
      },
      {
        name: "f-2-8080",
        tenant: "acme",
        service: "open",
        vip: "198.19.0.11",
        port: 8080,
        rules: [],
        defaultBackend: "d-2-8080",
        authorization: { governed: false, entries: [] },
      },
    ],
    backends: [
      {
        name: "b-1-0-0",
        servers: [{ name: "w-21", address: "198.18.1.21", port: 8080, weight: 256 }],
        requestTimeoutMs: 9_000,
        backendRequestTimeoutMs: 2_000,
        retry: { attempts: 2, on: ["5xx", "connect-failure", "reset", "timeout"], nonIdempotent: false },
        requestHeaders: { set: [{ name: "x-route", value: "canary 100%" }], add: [{ name: "x-added", value: "a\"b" }], remove: ["x-debug"] },
        responseHeaders: { set: [{ name: "x-served-by", value: "v2" }], remove: ["server"] },
      },
      {
        name: "b-1-1-0",
        servers: [
          { name: "w-11", address: "198.18.1.11", port: 8080, weight: 128 },
          { name: "w-12", address: "198.18.1.12", port: 8080, weight: 128 },
        ],
        retry: { attempts: 1, on: ["gateway-error"], nonIdempotent: true },
      },
      { name: "b-2-0-0", servers: [] },
      {
        name: "d-1-80",
        servers: [
          { name: "w-11", address: "198.18.1.11", port: 8080, weight: 1 },
          { name: "w-12", address: "198.18.1.12", port: 8080, weight: 1 },
          { name: "w-21", address: "198.18.1.21", port: 8080, weight: 1 },
        ],
      },
      { name: "d-2-8080", servers: [{ name: "w-31", address: "198.18.1.31", port: 9090, weight: 1 }] },
    ],
    callers: [WEB, ADMIN, INTRUDER].map((c) => ({ ...c })),
  };
}
