// Issue 21: the real terraform binary applies examples/http-canary (a 90/10
// canary between two services with a retry policy, as weft_http_route; an
// L7 authorization rule, as weft_policy; a weft_traffic_policy)
// against a real API process on Postgres; a second plan shows no change,
// a change of weights is one in-place update, and destroy removes it all.
// The steps build on each other and run in order.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OPERATOR_TOKEN, skipBackend, uniqueName } from "../support/api.ts";
import { startApiProcess, type ApiProcess } from "../support/api-process.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { restClient, terraformUnavailable, Workspace, type Plan } from "../support/terraform.ts";

const RESOURCES = [
  "weft_tenant.this",
  'weft_identity.web["v1"]',
  'weft_identity.web["v2"]',
  "weft_service.web",
  'weft_service.track["v1"]',
  'weft_service.track["v2"]',
  "weft_http_route.web",
  "weft_identity.client",
  "weft_policy.web_l7",
  "weft_traffic_policy.web",
].sort();

const byAddress = (changes: Plan["changes"]) => [...changes].sort((a, b) => a.address.localeCompare(b.address));
const STEP_MS = 300_000;

describe.skipIf(skipBackend("postgres") || skipWithout("terraform", terraformUnavailable()))(
  "the HTTP canary example applied with terraform against the API on Postgres",
  () => {
    let api: ApiProcess;
    let ws: Workspace;
    let rest: ReturnType<typeof restClient>;
    const tenant = uniqueName("tfr");
    const route = `/v1/tenants/${tenant}/httpRoutes/web-canary`;

    beforeAll(async () => {
      api = await startApiProcess({ DATABASE_URL: process.env.DATABASE_URL!, WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN });
      rest = restClient(api.base, OPERATOR_TOKEN);
      ws = await Workspace.create({ WEFT_ENDPOINT: api.base, WEFT_TOKEN: OPERATOR_TOKEN });
      await ws.copyExample("http-canary");
      ws.vars.tenant = tenant;
    }, 120_000);

    afterAll(async () => {
      // Whatever failed, leave nothing behind: the tenant (and with it all it owns), the files.
      if (rest) await rest("DELETE", `/v1/tenants/${tenant}`).catch(() => undefined);
      await ws?.dispose();
      await api?.stop();
    }, 60_000);

    it("1. apply creates the route with its 90/10 split between services and its retry; REST shows it as configured", async () => {
      const plan = await ws.plan();
      expect(plan.exitCode, plan.run.stdout).toBe(2);
      expect(byAddress(plan.changes)).toEqual(RESOURCES.map((address) => ({ address, actions: ["create"] })));
      await ws.apply(plan.file);
      const res = await rest("GET", route);
      expect(res.status, res.text).toBe(200);
      expect(res.body).toMatchObject({
        parentRefs: [{ name: "web", port: 80 }],
        rules: [
          {
            backendRefs: [
              { kind: "Service", name: "web-v1", port: 80, weight: 90 },
              { kind: "Service", name: "web-v2", port: 80, weight: 10 },
            ],
            timeouts: { request: "2s", backendRequest: "500ms" },
            retry: { attempts: 2, on: ["connect-failure", "gateway-error"] },
          },
        ],
      });
      expect((await ws.state()).get("weft_http_route.web")).toMatchObject({ id: `${tenant}/web-canary`, etag: res.body.etag });
      // The L7 authorization rule and the trafficPolicy, as the API stores them.
      const policy = await rest("GET", `/v1/tenants/${tenant}/policies/web-l7`);
      expect(policy.status, policy.text).toBe(200);
      expect(policy.body.ingress).toEqual([
        { peers: [{ identity: "client" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", http: { methods: ["GET", "HEAD"], pathPrefixes: ["/api"] } },
      ]);
      const traffic = await rest("GET", `/v1/tenants/${tenant}/trafficPolicies/web`);
      expect(traffic.status, traffic.text).toBe(200);
      expect(traffic.body).toMatchObject({
        targetRef: { name: "web" },
        connectionPool: { maxConnections: 64, maxPendingRequests: 128 },
        outlierDetection: { consecutive5xx: 5, baseEjectionTime: "30s", maxEjectionPercent: 50 },
        rateLimit: { requestsPerSecond: 100, burst: 200 },
      });
      // The route holds the services it names: REST cannot delete one from under it.
      expect((await rest("DELETE", `/v1/tenants/${tenant}/services/web-v2`)).status).toBe(409);
    }, STEP_MS);

    it("2. a second plan shows no changes", async () => {
      const plan = await ws.plan();
      expect(plan.changes, plan.run.stdout).toEqual([]);
      expect(plan.exitCode, plan.run.stdout).toBe(0);
    }, STEP_MS);

    it("3. moving to 50/50 is one in-place update of the route", async () => {
      Object.assign(ws.vars, { v1_weight: 50, v2_weight: 50 });
      const plan = await ws.plan();
      expect(plan.changes).toEqual([{ address: "weft_http_route.web", actions: ["update"] }]);
      await ws.apply(plan.file);
      const res = await rest("GET", route);
      expect((res.body.rules[0].backendRefs as { weight: number }[]).map((b) => b.weight)).toEqual([50, 50]);
      const again = await ws.plan();
      expect(again.exitCode, again.run.stdout).toBe(0);
    }, STEP_MS);

    it("4. destroy removes the route before the services it names, and everything answers 404", async () => {
      await ws.destroy();
      expect([...(await ws.state()).keys()]).toEqual([]);
      expect((await rest("GET", route)).status).toBe(404);
      expect((await rest("GET", `/v1/tenants/${tenant}`)).status).toBe(404);
    }, STEP_MS);
  },
);
