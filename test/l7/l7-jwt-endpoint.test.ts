/**
 * Issue #21's JWT rule for a trust domain federated by a SPIFFE bundle
 * endpoint, end to end on the simulated cluster (bench/support/cluster.ts):
 * the API process (its refresher on its own 30 s timer, as deployed) fetches
 * a loopback HTTPS bundle endpoint of the test, the node's document carries
 * its key, and node-a's real HAProxy verifies tokens signed by it.
 *
 *   tenant shop: web 80 -> 8080 (web-b on node-b), route: all to web
 *   federation partner: trust domain partner.test by the test's endpoint
 *   policy web-jwt: identity client may GET /api with a partner.test
 *   JWT-SVID for audience "web"
 *
 * A token signed with the endpoint's key passes; one signed with another
 * key under its kid does not; the endpoint rotates its key: the new key's
 * tokens pass and the old key's no longer do; the endpoint fails: the key
 * stays.
 */
import { generateKeyPairSync } from "node:crypto";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { clusterUnavailableReason, startCluster, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { loopbackTls } from "../support/federation.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { l7State, send, serveHttp } from "../support/l7-cluster.ts";
import { untilHolds } from "../support/until.ts";

const reason = clusterUnavailableReason() ?? commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy");
const TD = "partner.test";
/** The refresher's pass (30 s) plus the refresh floor (30 s, what spiffe_refresh_hint 1 is clamped to), with room. */
const REFRESH_BOUND_MS = 120_000;

function signingKey(kid: string) {
  const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { kid, privateKey: pair.privateKey, jwk: { ...pair.publicKey.export({ format: "jwk" }), use: "jwt-svid", kid } };
}
type SigningKey = ReturnType<typeof signingKey>;
const tokenOf = (key: SigningKey, kid = key.kid) =>
  new SignJWT({}).setProtectedHeader({ alg: "ES256", kid, typ: "JWT" }).setSubject(`spiffe://${TD}/ns/x/sa/client`).setAudience("web").setExpirationTime("10m").sign(key.privateKey);

describe.skipIf(skipWithout("simulated cluster with the node's L7 proxy (root, bpf, cgroup2, iproute2, curl, haproxy)", reason))(
  "a JWT rule for a bundle endpoint's trust domain through each node's L7 proxy (issue #21)",
  () => {
    const cleanup = new BenchCleanup(`wcluster-manifest-${process.pid}-l7jwtep`);
    const tls = loopbackTls();
    const [k1, k2] = [signingKey("p-1"), signingKey("p-2")];
    /** What the endpoint answers: a bundle (due again after the floor), or 503. */
    let answer: object | "down" = { keys: [k1.jwk], spiffe_refresh_hint: 1 };
    let hits = 0;
    const endpoint = createServer({ cert: tls.certPem, key: tls.keyPem }, (_req, res) => {
      hits++;
      if (answer === "down") return res.writeHead(503).end();
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(answer));
    });
    let c: Cluster;
    let shop: ClusterTenant;
    let vip: string;
    const get = (token: string) => send(c, "client-a", `http://${vip}/api/x`, 3, { headers: { authorization: `Bearer ${token}` }, concurrency: 1 });
    const statusesOf = async (token: string) => (await get(token)).statuses;

    beforeAll(async () => {
      await new Promise<void>((resolve) => endpoint.listen(0, "127.0.0.1", resolve));
      const host = `127.0.0.1:${(endpoint.address() as AddressInfo).port}`;
      c = await startCluster({
        nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }],
        api: { env: { WEFT_FEDERATION_ENDPOINTS: host } },
        agentArgs: ["--status-interval", "1"],
        cleanup,
      });
      shop = await c.tenant("shop");
      const workloads = [
        ["client-a", "node-a", "client", {}],
        ["web-b", "node-b", "web", { app: "web" }],
      ] as const;
      for (const [name, node, identity, labels] of workloads) {
        c.addWorkload(node, { name });
        await shop.put(`/identities/${identity}`, { path: `/ns/shop/sa/${identity}`, selectors: labels });
        await shop.put(`/workloads/${name}`, { identity, node, addresses: [c.workloads[name]!.address] });
      }
      await shop.put("/services/web", { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }], backends: { selector: { labels: { app: "web" } } } });
      vip = (JSON.parse((await shop.call("GET", "/services/web")).body) as { vip: string }).vip;
      await shop.put("/httpRoutes/web", { parentRefs: [{ name: "web" }], rules: [{ backendRefs: [{}] }] });
      await shop.put("/federations/partner", { trustDomain: TD, bundle: { endpointUrl: `https://${host}/bundle`, endpointCa: tls.caPem } });
      const put = await shop.call("PUT", "/policies/web-jwt", {
        subject: { labels: { app: "web" } },
        ingress: [{ peers: [{ identity: "client" }], ports: [{ port: 8080, protocol: "tcp" }], action: "allow", http: { methods: ["GET"], pathPrefixes: ["/api"], jwt: { trustDomain: TD, audiences: ["web"] } } }],
      });
      expect(put.status, put.body).toBe(201);
      await serveHttp(c, "web-b", "web", 8080);
      await c.converged();
      await untilHolds("node-a's L7 proxy to serve the current document", () => l7State(c, "node-a"), (s) => s?.state === "running" && s.converged === true, 60_000, 200);
    }, 300_000);
    afterAll(async () => {
      const errors = await cleanup.run();
      endpoint.closeAllConnections();
      await new Promise((resolve) => endpoint.close(resolve));
      if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
    }, 120_000);

    it("passes a token signed with the endpoint's key once the refresher has fetched it (no client reads the federation), and refuses another key under its kid", async () => {
      expect(await untilHolds("a token of the endpoint's key to pass", async () => statusesOf(await tokenOf(k1)), (s) => s[200] === 3, REFRESH_BOUND_MS, 1_000)).toEqual({ 200: 3 });
      expect(await statusesOf(await tokenOf(k2, k1.kid))).toEqual({ 403: 3 });
    }, REFRESH_BOUND_MS + 30_000);

    it("follows the endpoint's key rotation: the new key's tokens pass, the old key's are refused", async () => {
      answer = { keys: [k2.jwk], spiffe_refresh_hint: 1 };
      expect(await untilHolds("a token of the rotated key to pass", async () => statusesOf(await tokenOf(k2)), (s) => s[200] === 3, REFRESH_BOUND_MS, 1_000)).toEqual({ 200: 3 });
      expect(await statusesOf(await tokenOf(k1))).toEqual({ 403: 3 });
    }, REFRESH_BOUND_MS + 30_000);

    it("keeps the key while the endpoint fails", async () => {
      answer = "down";
      const before = hits;
      await untilHolds("the API to fetch the failing endpoint", () => hits, (n) => n > before, REFRESH_BOUND_MS, 1_000);
      expect(await statusesOf(await tokenOf(k2))).toEqual({ 200: 3 });
    }, REFRESH_BOUND_MS + 30_000);
  },
);
