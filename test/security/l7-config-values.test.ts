// SPDX-License-Identifier: Apache-2.0
/**
 * Issue 21, attacked as a tenant admin: every value the API takes into an
 * httpRoute, trafficPolicy or JWT rule reaches each node's proxy as
 * haproxy.cfg, and one config HAProxy refuses leaves the agent on the config
 * before (test/agent/l7-proxy.test.ts): every later change on that node,
 * every other tenant's with it, would stop there. So what the API accepts,
 * at its limits and with the characters HAProxy's parser treats specially,
 * must render to a config `haproxy -c` takes; what cannot is refused with
 * 422 and never reaches a node.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { checkL7Document } from "../../nodeagent/src/l7/document.ts";
import { checkConfig } from "../../nodeagent/src/l7/haproxy-process.ts";
import { jwtKeyFiles } from "../../nodeagent/src/l7/jwt-render.ts";
import { proxyErrorFiles } from "../../nodeagent/src/l7/proxy-errors.ts";
import { renderCallersMap, renderConfig } from "../../nodeagent/src/l7/render.ts";
import { BACKENDS, backendDatabase, bearer, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, freshVip, identity, mustPut, putResource, refusedUnwritten } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

/** Every character HAProxy's config or sample-argument parser treats specially that a header name (an RFC 9110 token) may hold. */
const ODD_HEADER = "x'!#$%&*+.^_`|~-y";
/** Printable ASCII a value may hold, the parser's specials among them. */
const ODD_VALUE = ` a"b'c\\d$HOME#e%[src]{f} `;

describe.each(BACKENDS)("values a tenant writes reach haproxy.cfg on %s", (backend) => {
  describe.skipIf(skipBackend(backend) || NO_HAPROXY)(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let t: { tenant: string; token: string };
    let node: { name: string; credential: string; podCidr: string };
    const dir = mkdtempSync(join(tmpdir(), "weft-l7-values-"));

    /** The node's document as the agent checks and renders it, and HAProxy's verdict on the config (null: valid). */
    const nodeConfigVerdict = async (): Promise<string | null> => {
      const res = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) });
      expect(res.statusCode, res.body).toBe(200);
      const doc = checkL7Document(res.json());
      if (typeof doc === "string") return `document refused: ${doc}`;
      expect(doc.frontends.length).toBeGreaterThan(0);
      for (const f of jwtKeyFiles(doc, dir)) writeFileSync(f.path, f.pem);
      for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
      const callersMap = join(dir, "callers.map");
      writeFileSync(callersMap, renderCallersMap(doc));
      const config = join(dir, "haproxy.cfg");
      writeFileSync(config, renderConfig(doc, { stateDir: dir, callersMap }));
      return checkConfig(HAPROXY, config);
    };

    const route = (rule: Record<string, unknown>) => ({ parentRefs: [{ name: "api", port: 80 }], rules: [{ backendRefs: [{}], ...rule }] });

    beforeAll(async () => {
      app = await startApi(backend);
      t = await tenantWithToken(app, ["write"]);
      node = await registeredNode(app);
      await identity(app, t.token, t.tenant, "web", { app: "web" });
      await identity(app, t.token, t.tenant, "api", { app: "api" });
      await mustPut(app, t.token, t.tenant, "workloads/web-1", { identity: "web", node: node.name, addresses: [freshAddress(node.podCidr)] });
      await mustPut(app, t.token, t.tenant, "workloads/api-1", { identity: "api", node: node.name, addresses: [freshAddress(node.podCidr)] });
      await mustPut(app, t.token, t.tenant, "services/api", { vip: freshVip(), ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { labels: { app: "api" } } } });
    });
    afterAll(async () => {
      await app?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it("renders header names and values with the parser's special characters to a config HAProxy takes", async () => {
      await mustPut(app, t.token, t.tenant, "httpRoutes/odd", route({
        matches: [{ headers: [{ name: ODD_HEADER, value: ODD_VALUE }], path: { type: "Exact", value: "/a$b%41(c)*+,;=:@!~" } }],
        filters: [
          { type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: ODD_HEADER, value: ODD_VALUE }], add: [{ name: "x-add", value: "%" }], remove: ["x'gone"] } },
          { type: "ResponseHeaderModifier", responseHeaderModifier: { set: [{ name: ODD_HEADER, value: "\\" }] } },
        ],
      }));
      expect(await nodeConfigVerdict()).toBeNull();
    });

    it("refuses an empty header value (the Gateway API's values hold at least one character), never reaching a node", async () => {
      const empties = [
        { matches: [{ headers: [{ name: "x-canary", value: "" }] }] },
        { filters: [{ type: "RequestHeaderModifier", requestHeaderModifier: { set: [{ name: "x-a", value: "" }] } }] },
        { filters: [{ type: "ResponseHeaderModifier", responseHeaderModifier: { add: [{ name: "x-a", value: "" }] } }] },
      ];
      for (const rule of empties) {
        await refusedUnwritten(app, [t.tenant], putResource(app, t.token, t.tenant, "httpRoutes/empty", route(rule)), 400);
        expect(await nodeConfigVerdict()).toBeNull();
      }
    });

    it("renders every trafficPolicy and route limit at its maximum to a config HAProxy takes", async () => {
      await mustPut(app, t.token, t.tenant, "httpRoutes/limits", route({
        matches: [{ path: { value: "/limits" } }],
        timeouts: { request: "1h", backendRequest: "1h" },
        retry: { attempts: 5, on: ["5xx", "gateway-error", "connect-failure", "reset", "timeout"], nonIdempotent: true },
      }));
      for (const rateLimit of [{ requestsPerSecond: 1, burst: 100000 }, { requestsPerSecond: 100000, burst: 1 }]) {
        await mustPut(app, t.token, t.tenant, "trafficPolicies/api-limits", {
          targetRef: { name: "api" },
          connectionPool: { maxConnections: 100000, maxPendingRequests: 100000 },
          outlierDetection: { consecutive5xx: 1000, interval: "300s", baseEjectionTime: "300s", maxEjectionPercent: 100 },
          rateLimit,
        });
        expect(await nodeConfigVerdict()).toBeNull();
      }
    });

    it("renders a JWT rule's audiences and claim values with the parser's special characters to a config HAProxy takes", async () => {
      await mustPut(app, t.token, t.tenant, "policies/api-in", {
        subject: { labels: { app: "api" } },
        ingress: [
          {
            peers: [{ identity: "web" }],
            action: "allow",
            http: { jwt: { audiences: [`a"b'c\\d$HOME#e%f`, "~"], claims: [{ name: "a:b_c-D9", values: [ODD_VALUE, " "] }] } },
          },
        ],
      });
      expect(await nodeConfigVerdict()).toBeNull();
    });
    it("renders a match of 16 headers, values that begin like HAProxy's flags, and a rule whose peers are many identities, to a config HAProxy takes", async () => {
      // HAProxy reads at most 64 words a line: 16 header conditions inline, or one pattern per caller identity, are more.
      await mustPut(app, t.token, t.tenant, "httpRoutes/many-headers", route({
        matches: [{ method: "GET", path: { value: "/many" }, headers: Array.from({ length: 16 }, (_, i) => ({ name: `x-h${i}`, value: ["-i", "--", "-m", "-foo"][i % 4]! })) }],
      }));
      for (let i = 0; i < 70; i++) await identity(app, t.token, t.tenant, `caller-${i}`, { role: "caller" });
      await mustPut(app, t.token, t.tenant, "policies/many-callers", {
        subject: { labels: { app: "api" } },
        ingress: [{ peers: [{ labels: { role: "caller" } }], action: "allow", http: { methods: ["GET"] } }],
      });
      expect(await nodeConfigVerdict()).toBeNull();
    }, 60_000);
    it("renders kids of a pasted bundle with the parser's special characters to a config HAProxy takes, and leaves out what could break a line", async () => {
      const jwk = (kid: string) => ({ ...generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" }), use: "jwt-svid", kid });
      await mustPut(app, t.token, t.tenant, "httpRoutes/plain", route({}));
      const odd = `../../a"b'c\\d$HOME#e %[src] -i`;
      await mustPut(app, t.token, t.tenant, "federations/odd", { trustDomain: "odd.example", bundle: { spiffeBundle: { keys: [jwk(odd), jwk("x\nacl y always_true")] } } });
      await mustPut(app, t.token, t.tenant, "policies/odd-in", { subject: { labels: { app: "api" } }, ingress: [{ action: "allow", http: { jwt: { trustDomain: "odd.example", audiences: ["api"] } } }] });
      const doc = (await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) })).json() as { jwks: { trustDomain: string; keys: { kid: string }[] }[] };
      expect(doc.jwks.find((k) => k.trustDomain === "odd.example")?.keys.map((k) => k.kid)).toEqual([odd]);
      expect(await nodeConfigVerdict()).toBeNull();
    });
  });
});
