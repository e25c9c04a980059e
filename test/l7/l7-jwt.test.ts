/**
 * Issue #21's JWT proof on the simulated cluster (bench/support/cluster.ts):
 * two nodes with real agents and real HAProxy, the kernel handing
 * connections for the L7 service to the caller's node's proxy.
 *
 *   tenant shop: web 80 -> 8080 (web-b on node-b), route: all to web
 *   policy web-jwt: identity client may GET /api only with a JWT-SVID the
 *   API minted, for audience "web", whose sub is client's own SPIFFE ID
 *   callers: client-a (identity client), other-a (identity other), on node-a
 *
 * A valid token passes; a forged one (signed by another key under the CA's
 * kid, or alg none), an expired one, one for another audience, another
 * identity's, or none: 403 problem+json, and the backend never sees them.
 */
import { generateKeyPairSync } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { clusterUnavailableReason, startCluster, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { l7State, send, serveHttp } from "../support/l7-cluster.ts";
import { until, untilHolds } from "../support/until.ts";

const reason = clusterUnavailableReason() ?? commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy");
const TTL_SECONDS = 30;

describe.skipIf(skipWithout("simulated cluster with the node's L7 proxy (root, bpf, cgroup2, iproute2, curl, haproxy)", reason))(
  "a JWT-SVID rule through each node's L7 proxy (issue #21)",
  () => {
    const cleanup = new BenchCleanup(`wcluster-manifest-${process.pid}-l7jwt`);
    let c: Cluster;
    let shop: ClusterTenant;
    let vip: string;
    let clientId: string;
    /** Minted first, with the identity's shortest lifetime: expired by the time it is sent. */
    let expiring: { token: string; expiresAt: string };
    const addr = (w: string) => c.workloads[w]!.address;
    const mint = async (identity: string, audience: string[]) => {
      const res = await shop.call("POST", `/identities/${identity}/jwt-svids`, { audience });
      expect(res.status, res.body).toBe(201);
      return JSON.parse(res.body) as { token: string; expiresAt: string };
    };
    /** `count` GETs of /api/x from client-a with this Authorization (none: null). */
    const get = (token: string | null, count = 5) => send(c, "client-a", `http://${vip}/api/x`, count, { headers: token === null ? {} : { authorization: `Bearer ${token}` }, concurrency: 1 });
    const refused = async (why: string, token: string | null) => {
      const got = await get(token);
      expect(got.failures, why).toEqual({});
      expect(got.statuses, why).toEqual({ 403: 5 });
      expect(got.servers, why).toEqual({});
      const sample = got.samples[0]!;
      expect(sample.body, why).toMatchObject({ status: 403, title: "Forbidden" });
    };

    beforeAll(async () => {
      c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], agentArgs: ["--status-interval", "1"], cleanup });
      shop = await c.tenant("shop");
      const workloads = [
        ["client-a", "node-a", "client", {}],
        ["other-a", "node-a", "other", {}],
        ["web-b", "node-b", "web", { app: "web" }],
      ] as const;
      for (const [name, node, identity, labels] of workloads) {
        c.addWorkload(node, { name });
        await shop.put(`/identities/${identity}`, { path: `/ns/shop/sa/${identity}`, selectors: labels, jwtSvidTtlSeconds: TTL_SECONDS });
        await shop.put(`/workloads/${name}`, { identity, node, addresses: [addr(name)] });
      }
      expiring = await mint("client", ["web"]);
      clientId = JSON.parse(Buffer.from(expiring.token.split(".")[1]!, "base64url").toString()).sub as string;
      await shop.put("/services/web", { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { labels: { app: "web" } } } });
      vip = (JSON.parse((await shop.call("GET", "/services/web")).body) as { vip: string }).vip;
      await shop.put("/httpRoutes/web", { parentRefs: [{ name: "web" }], rules: [{ backendRefs: [{}] }] });
      const put = await shop.call("PUT", "/policies/web-jwt", {
        subject: { labels: { app: "web" } },
        ingress: [
          {
            peers: [{ identity: "client" }, { identity: "other" }],
            ports: [{ port: 8080, protocol: "tcp" }],
            action: "allow",
            http: { methods: ["GET"], pathPrefixes: ["/api"], jwt: { audiences: ["web"], claims: [{ name: "sub", values: [clientId] }] } },
          },
        ],
      });
      expect(put.status, put.body).toBe(201);
      await serveHttp(c, "web-b", "web", 8080);
      await c.converged();
      await untilHolds("node-a's L7 proxy to serve the current document", () => l7State(c, "node-a"), (s) => s?.state === "running" && s.converged === true, 60_000, 200);
    }, 300_000);
    afterAll(async () => {
      const errors = await cleanup.run();
      if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
    }, 120_000);

    it("passes a JWT-SVID the API minted for the client, for audience web", async () => {
      const { token } = await mint("client", ["web", "other-audience"]);
      const got = await get(token);
      expect(got.failures).toEqual({});
      expect(got.statuses).toEqual({ 200: 5 });
      expect(got.servers).toEqual({ web: 5 });
      const seen = got.samples[0]!.body as { headers: Record<string, string> };
      expect(seen.headers["x-weft-source-identity"]).toBe(clientId);
    });

    it("refuses a forged token: another key under the CA's kid, or alg none", async () => {
      const { token } = await mint("client", ["web"]);
      const [header, payload] = token.split(".") as [string, string];
      const { kid } = JSON.parse(Buffer.from(header, "base64url").toString()) as { kid: string };
      const claims = JSON.parse(Buffer.from(payload, "base64url").toString()) as Record<string, unknown>;
      const forged = await new SignJWT(claims).setProtectedHeader({ alg: "ES256", kid, typ: "JWT" }).sign(generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey);
      await refused("another key", forged);
      await refused("alg none", `${Buffer.from(JSON.stringify({ alg: "none", kid, typ: "JWT" })).toString("base64url")}.${payload}.`);
    });

    it("refuses a token for another audience, another identity's token, and none", async () => {
      await refused("wrong audience", (await mint("client", ["api"])).token);
      await refused("another identity", (await mint("other", ["web"])).token);
      await refused("no token", null);
    });

    it("refuses an expired token", async () => {
      await until("the first token to expire", (TTL_SECONDS + 5) * 1_000, () => (Date.now() > Date.parse(expiring.expiresAt) + 1_000 ? true : undefined));
      await refused("expired", expiring.token);
    }, (TTL_SECONDS + 30) * 1_000);
  },
);
