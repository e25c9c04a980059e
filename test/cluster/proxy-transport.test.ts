/**
 * The L7 proxy's hop to a backend on another node, carried by the nodes'
 * mTLS transports (issues #21 and #18): two nodes with real agents, each
 * driving its node's HAProxy and transport, real TCP across the fabric
 * bridge, tcpdump as the outside witness. One cluster for the whole file.
 *
 *   tenant px:       client-a (identity client, node-a), client-b (identity client, node-b)
 *                    web      80 -> 8080  web-b (identity web, node-b), a route: L7
 *                             policy web-in: client may reach web on 8080, transport mtls
 *                    plainweb 80 -> 8081  plain-b (identity plain, node-b), a route: L7
 *                             policy plain-in: client may reach plain on 8081 (plaintext: the control)
 *   tenant pxother:  other-b (node-b), nothing on node-a
 *
 * Proves: a request to web's VIP crosses the fabric as TLS records between
 * the two transports, from node-a's proxy to node-b's transport, and reaches
 * web-b from node-b's own proxy address, while plainweb's crosses in clear;
 * both transports carry the requests' bytes, node-b's counts the stream and
 * reports it as a flow from the proxy; a caller on node-b reaches web-b
 * through node-b's own proxy directly (the datapath lets the node's own
 * proxy past the mtls flag); a host on the fabric wearing node-a's
 * proxy address no longer reaches web-b (dropped at node-b, mtls-required)
 * though it still reaches plain-b; node-a's credential gets a node-proxy
 * SVID for tenants it hosts only (404 otherwise, as for no tenant), no
 * tenant token gets one, and no tenant identity may take a /weft/ path;
 * node-b's transport takes that SVID for web-b's mtls port and not for
 * plain-b's plaintext one; node-a's transport killed, web answers 503
 * (never plaintext on the fabric) until the agent has restarted it.
 *
 * The flows carry no SPIFFE ID (a transport outcome's source.spiffeId stays
 * in the agent), so the proxy is recognised there by its address: reserved
 * identity "proxy".
 */
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { proxyAddressOf } from "../../api/src/compiler/l7.ts";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { clusterUnavailableReason, datapathPackets, startCluster, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { http } from "../../bench/support/weft.ts";
import { buildCsr, newWorkloadKey } from "../../nodeagent/src/agent/csr.ts";
import { groupAvailable, POST_QUANTUM } from "../../nodeagent/src/transport/tls-policy.ts";
import { sample, tlsRecords } from "../transport/support.ts";
import { addWorkloads, l7State, send, serveHttp, type Sent } from "../support/l7-cluster.ts";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import {
  ask,
  capture,
  dialTransport,
  inNamespace,
  marker,
  packetsFor,
  rogueOnFabric,
  startsTlsRecord,
  TCP_SYN,
  tcpStreams,
  tcpdumpUnavailableReason,
  TRANSPORT_INBOUND_PORT,
  transportDiagnostics,
  transportPid,
  type Rogue,
} from "../support/transport-cluster.ts";
import { untilHolds } from "../support/until.ts";

const WEB = 8080;
const PLAIN = 8081;

const reason =
  clusterUnavailableReason() ??
  tcpdumpUnavailableReason() ??
  commandUnavailableReason("haproxy", ["-v"], "apt-get install haproxy") ??
  (groupAvailable(POST_QUANTUM) ? null : `this Node's OpenSSL ${process.versions.openssl} has no ${POST_QUANTUM} (run on Node 24)`);

const tcp = (port: number) => ({ port, protocol: "tcp" });
const service = (targetPort: number, app: string) => ({ ports: [{ port: 80, protocol: "tcp", targetPort }], backends: { selector: { labels: { app } } } });
const everything = (svc: string) => ({ parentRefs: [{ name: svc }], rules: [{ backendRefs: [{}] }] });

describe.skipIf(skipWithout("simulated cluster with the L7 proxy and the mTLS transport (root, bpf, cgroup2, iproute2, curl, tcpdump, haproxy, Node 24)", reason))(
  "two nodes, the L7 proxy's hop to a remote backend through the nodes' mTLS transports (issues #21, #18)",
  () => {
    const cleanup = new BenchCleanup(`wcluster-manifest-${process.pid}-proxy-transport`);
    let c: Cluster;
    let px: ClusterTenant;
    let other: ClusterTenant;
    let rogue: Rogue;
    /** node-b's carried inbound streams before any request. */
    let carriedAtStart = 0;
    const vips: Record<string, string> = {};
    const url = (svc: string, path: string) => `http://${vips[svc]}${path}`;
    const addr = (w: string) => c.workloads[w]!.address;
    /** Where the node's proxy connects from (the L7 document's proxyAddress). */
    const proxyAddress = (node: string) => proxyAddressOf(c.nodes[node]!.podCidr)!;
    const packets = async (node: string) => datapathPackets(await c.agentMetrics(node));
    const transportMetric = async (node: string, metric: string, labels: Record<string, string>) => sample(await c.agentMetrics(node), metric, labels);
    const l7Converged = (node: string) =>
      untilHolds(`${node}'s L7 proxy to serve the current document`, () => l7State(c, node), (s) => s?.state === "running" && s.converged === true, 60_000, 200);
    /** One request to web until it answers 200 (the node-proxy SVID reaches node-a's transport after the documents do). */
    const webAnswers = (path: string, boundMs = 30_000) =>
      untilHolds("a request to web to answer 200", () => send(c, "client-a", url("web", path), 1, { timeoutMs: 5_000 }), (s) => s.statuses["200"] === 1, boundMs, 500);
    const spiffeIdOf = async (t: ClusterTenant, identity: string) => (JSON.parse((await t.call("GET", `/identities/${identity}`)).body) as { spiffeId: string }).spiffeId;
    const nodeProxyId = async (node: string) => `spiffe://${new URL(await spiffeIdOf(px, "web")).host}/weft/node/${node}/proxy`;
    const askNodeProxySvid = (tenant: string, auth: Record<string, string>, body: unknown) => http(`${c.api.base}/v1/tenants/${tenant}/node-proxy-svids`, "POST", auth, body);
    const nodeAuth = (node: string) => ({ authorization: `Bearer ${c.nodes[node]!.agent!.credential()}` });

    beforeAll(async () => {
      const started = performance.now();
      c = await startCluster({ nodes: [{ name: "node-a", zone: "z1" }, { name: "node-b", zone: "z1" }], agentArgs: ["--status-interval", "1"], cleanup });
      px = await c.tenant("px");
      other = await c.tenant("pxother");
      await addWorkloads(c, px, [
        ["client-a", "node-a", "client", {}],
        ["client-b", "node-b", "client", {}],
        ["web-b", "node-b", "web", { app: "web" }],
        ["plain-b", "node-b", "plain", { app: "plain" }],
      ]);
      c.addWorkload("node-b", { name: "other-b" });
      await other.put("/identities/svc", { path: "/ns/pxother/sa/svc" });
      await other.put("/workloads/other-b", { identity: "svc", node: "node-b", addresses: [addr("other-b")] });
      for (const [name, port, app] of [["web", WEB, "web"], ["plainweb", PLAIN, "plain"]] as const) {
        await px.put(`/services/${name}`, service(port, app));
        await px.put(`/httpRoutes/${name}`, everything(name));
        vips[name] = (JSON.parse((await px.call("GET", `/services/${name}`)).body) as { vip: string }).vip;
      }
      await px.put("/policies/web-in", { subject: { identity: "web" }, ingress: [{ peers: [{ identity: "client" }], ports: [tcp(WEB)], action: "allow", transport: "mtls" }] });
      await px.put("/policies/plain-in", { subject: { identity: "plain" }, ingress: [{ peers: [{ identity: "client" }], ports: [tcp(PLAIN)], action: "allow" }] });
      await serveHttp(c, "web-b", "web", WEB);
      await serveHttp(c, "plain-b", "plain", PLAIN);
      rogue = rogueOnFabric(cleanup, c, proxyAddress("node-a"), [
        { address: addr("web-b"), node: "node-b" },
        { address: addr("plain-b"), node: "node-b" },
      ]);
      await c.converged();
      await l7Converged("node-a");
      await l7Converged("node-b");
      carriedAtStart = await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "carried" });
      console.log(
        `two nodes up, L7 proxies converged in ${((performance.now() - started) / 1000).toFixed(1)} s (fabric ${c.fabric.cidr}; proxy addresses ${proxyAddress("node-a")}, ${proxyAddress("node-b")})`,
      );
    }, 300_000);
    // What the nodes' transports were told and did, whenever a proof fails.
    beforeEach((ctx) =>
      ctx.onTestFailed(async () => {
        if (!c) return;
        console.log(await transportDiagnostics(c, ["node-a", "node-b"]));
        // An agent that exited took its transport and proxy with it: its last words.
        for (const [name, n] of Object.entries(c.nodes)) {
          const child = n.agent?.child;
          if (child && (child.exitCode !== null || child.signalCode !== null)) console.log(`== ${name}: agent exited (${child.exitCode ?? child.signalCode})\n${n.agent!.output().split("\n").slice(-30).join("\n")}`);
        }
      }),
    );
    afterAll(async () => {
      const errors = await cleanup.run();
      if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
    }, 120_000);

    it("a request to web crosses the fabric as TLS records between the transports: no marker, no packet from node-a's proxy to web-b; web-b sees node-b's proxy address", async () => {
      const mark = marker("mtls");
      const fabric = await capture(cleanup, c.fabric.netns, "br0", "tcp");
      const got = await webAnswers(`/${mark}`);
      const { raw, segments } = await fabric.stop();
      expect(raw.includes(mark)).toBe(false);
      const proxyA = proxyAddress("node-a");
      const around = segments.filter((s) => (s.src === proxyA && s.dst === addr("web-b")) || s.sport === WEB || s.dport === WEB);
      expect(around.map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport}`)).toEqual([]);
      // TLS records both ways, between the two nodes' own addresses, on the transport's port.
      const [nodeA, nodeB] = [c.nodes["node-a"]!.address, c.nodes["node-b"]!.address];
      const tls = segments.filter((s) => (s.sport === TRANSPORT_INBOUND_PORT || s.dport === TRANSPORT_INBOUND_PORT) && s.payload.length > 0);
      expect(new Set(tls.map((s) => `${s.src}>${s.dst}`))).toEqual(new Set([`${nodeA}>${nodeB}`, `${nodeB}>${nodeA}`]));
      for (const way of [`${nodeA}>${nodeB}`, `${nodeB}>${nodeA}`]) expect(tls.some((s) => `${s.src}>${s.dst}` === way && startsTlsRecord(s.payload))).toBe(true);
      // A session opened during the capture: nothing but TLS records from its first byte to its last.
      for (const [flow, bytes] of tcpStreams(segments)) if (flow.includes(`:${TRANSPORT_INBOUND_PORT}`)) expect({ flow, ...tlsRecords(bytes) }).not.toHaveProperty("notTls");
      // Delivered by node-b's transport from node-b's own proxy address: the backend's tc sees the proxy, carried by the transport.
      expect(got.samples[0]!.body).toMatchObject({ server: "web", path: `/${mark}`, peer: proxyAddress("node-b") });
    }, 90_000);

    it("a request to plainweb (a plaintext rule) crosses the fabric in clear from node-a's proxy address, marker and all (the control)", async () => {
      const mark = marker("plain");
      const fabric = await capture(cleanup, c.fabric.netns, "br0", "tcp");
      const got = await send(c, "client-a", url("plainweb", `/${mark}`), 1);
      const { raw, segments } = await fabric.stop();
      expect(got.statuses).toEqual({ 200: 1 });
      const proxyA = proxyAddress("node-a");
      expect(got.samples[0]!.body).toMatchObject({ server: "plain", path: `/${mark}`, peer: proxyA });
      expect(raw.includes(mark)).toBe(true);
      // The request and the answer, each in a segment of the proxy's connection to plain-b.
      const carrying = segments.filter((s) => s.payload.includes(mark));
      expect(carrying.some((s) => s.src === proxyA && s.dst === addr("plain-b") && s.dport === PLAIN)).toBe(true);
      expect(carrying.some((s) => s.src === addr("plain-b") && s.dst === proxyA && s.sport === PLAIN)).toBe(true);
    }, 60_000);

    it("node-b's transport carries the proxy's requests: a carried inbound stream counted, the requests' bytes through both transports, and the flows name the proxy as the source", async () => {
      const bytes = async () => ({
        atB: await transportMetric("node-b", "weft_transport_bytes_total", { direction: "inbound", way: "from_peer" }),
        atA: await transportMetric("node-a", "weft_transport_bytes_total", { direction: "outbound", way: "to_peer" }),
      });
      const before = await bytes();
      const mark = marker("count");
      const got: Sent = await send(c, "client-a", url("web", `/${mark}`), 3, { concurrency: 1 });
      expect(got.statuses).toEqual({ 200: 3 });
      const after = await bytes();
      const carried = await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "carried" });
      console.log(`3 requests to web: ${after.atA - before.atA} bytes into node-a's transport, ${after.atB - before.atB} out of node-b's; node-b's inbound streams carried ${carriedAtStart} -> ${carried}`);
      // Counted when a stream opens, and the proxy keeps its server connection (one stream) across requests: at least one since the cluster came up.
      expect(carried).toBeGreaterThanOrEqual(carriedAtStart + 1);
      // Each request's line names the marker: all three went through node-a's transport and came out of node-b's.
      expect(after.atA - before.atA).toBeGreaterThanOrEqual(3 * mark.length);
      expect(after.atB - before.atB).toBeGreaterThanOrEqual(3 * mark.length);
      // The streams' outcomes as flows (hook transport), when a stream ends (the proxy closes its idle server connection):
      // node-b's names its own proxy's address as the source (it delivered from there), node-a's its proxy's.
      type Flow = { node: string; reason: string; source: { address: string; reserved?: string }; destination: { address: string; port: number; identity: string | null } };
      const toWeb = (f: Flow) => f.destination.address === addr("web-b") && f.destination.port === WEB;
      const flows = await untilHolds(
        "node-b's carried transport flow to web-b",
        async () => (JSON.parse((await px.call("GET", "/flows?hook=transport&reason=transport-carried")).body) as { items: Flow[] }).items.filter(toWeb),
        (items) => items.some((f) => f.node === "node-b"),
        60_000,
        1_000,
      );
      console.log(`transport flows to web-b: ${JSON.stringify(flows.slice(0, 2))}`);
      expect(flows.filter((f) => f.node === "node-b").map((f) => f.source)).toContainEqual(expect.objectContaining({ address: proxyAddress("node-b"), reserved: "proxy" }));
      expect(flows.map((f) => ({ node: f.node, reserved: f.source.reserved, identity: f.destination.identity })).filter((f) => f.reserved !== "proxy" || f.identity !== "web")).toEqual([]);
    }, 90_000);

    it("a caller on web-b's own node reaches it through node-b's proxy directly: the datapath lets the node's own proxy past the mtls flag, and nothing crosses the fabric", async () => {
      const before = await packets("node-b");
      const got = await send(c, "client-b", url("web", "/local"), 3, { timeoutMs: 5_000 });
      expect(got.statuses).toEqual({ "200": 3 });
      const after = await packets("node-b");
      expect(packetsFor(after, "mtls-required") - packetsFor(before, "mtls-required")).toBe(0);
    });

    it("a host on the fabric wearing node-a's proxy address reaches web-b no more: its SYNs are dropped at node-b and counted mtls-required", async () => {
      const proxyA = proxyAddress("node-a");
      const before = packetsFor(await packets("node-b"), "mtls-required");
      const seen = await capture(cleanup, c.workloads["web-b"]!.netns, "eth0", `tcp dst port ${WEB} and src host ${proxyA}`);
      const forged = await ask(inNamespace(rogue.netns), addr("web-b"), WEB, marker("forged-web"), 3, 1_000);
      const { segments } = await seen.stop();
      expect(forged.tally).toEqual({ peers: {}, failures: { timeout: 3 } });
      expect(segments.map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport} flags ${s.flags.toString(16)}`)).toEqual([]);
      // Each attempt's SYN, and its retransmissions.
      expect(packetsFor(await packets("node-b"), "mtls-required")).toBeGreaterThanOrEqual(before + 3);
    }, 60_000);

    it("the same forged SYNs to plain-b, whose rule is plaintext, still reach it (the control: why the rule matters)", async () => {
      const proxyA = proxyAddress("node-a");
      const seen = await capture(cleanup, c.workloads["plain-b"]!.netns, "eth0", `tcp dst port ${PLAIN} and src host ${proxyA}`);
      const forged = await ask(inNamespace(rogue.netns), addr("plain-b"), PLAIN, marker("forged-plain"), 2, 1_000);
      const { segments } = await seen.stop();
      const syns = segments.filter((s) => s.flags & TCP_SYN).length;
      console.log(`forged SYNs to plain-b: ${syns} reached it; the forger's tally ${JSON.stringify(forged.tally)}`);
      // plain-b's SYN-ACK goes to node-a, whose own proxy address answers it with a reset: the forger gets no answer, but plain-b got its SYNs.
      expect(forged.tally.peers).toEqual({});
      expect(syns).toBeGreaterThanOrEqual(2);
    }, 60_000);

    it("node-proxy SVIDs: node-a's credential gets one for its tenant (the proxy's SPIFFE ID), none for a tenant it hosts no workload of (404, as for no tenant); tenant tokens get none (403); /weft/ paths are not tenants'", async () => {
      const key = newWorkloadKey();
      const csr = buildCsr(key.privateKey, { commonName: "node-a proxy" });
      const own = await askNodeProxySvid(px.tenant, nodeAuth("node-a"), { csr });
      expect(own.status, own.body).toBe(201);
      const issued = JSON.parse(own.body) as { certificate: string; spiffeId: string };
      expect(new X509Certificate(issued.certificate).subjectAltName).toBe(`URI:${await nodeProxyId("node-a")}`);
      expect(issued.spiffeId).toBe(await nodeProxyId("node-a"));

      // A tenant node-a runs nothing of answers as one that does not exist: node-a learns nothing of it.
      const stranger = await askNodeProxySvid(other.tenant, nodeAuth("node-a"), { csr });
      expect(stranger.status, stranger.body).toBe(404);
      expect(stranger.headers["content-type"]).toContain("application/problem+json");
      expect((await askNodeProxySvid(`${other.tenant}-none`, nodeAuth("node-a"), { csr })).status).toBe(404);
      // node-b hosts other-b: the 404 above is node-a's, not the tenant's.
      expect((await askNodeProxySvid(other.tenant, nodeAuth("node-b"), { csr })).status).toBe(201);

      const byTenant = await askNodeProxySvid(px.tenant, px.auth, { csr });
      expect(byTenant.status, byTenant.body).toBe(403);
      expect(byTenant.headers["content-type"]).toContain("application/problem+json");

      const bad = await askNodeProxySvid(px.tenant, nodeAuth("node-a"), { csr: "not a CSR" });
      expect(bad.status, bad.body).toBe(400);
      expect(bad.headers["content-type"]).toContain("application/problem+json");

      const claimed = await http(`${c.api.base}/v1/tenants/${px.tenant}/identities/fake-proxy`, "PUT", px.auth, { path: "/weft/node/node-a/proxy" });
      expect(claimed.status, claimed.body).toBe(400);
      expect(claimed.headers["content-type"]).toContain("application/problem+json");
    }, 60_000);

    it("node-b's transport takes node-a's proxy SVID for web-b's mtls port only, not for plain-b's plaintext one", async () => {
      // The SVID node-a's agent would present, minted here with node-a's own credential (the SVID is the credential).
      const key = newWorkloadKey();
      const minted = await askNodeProxySvid(px.tenant, nodeAuth("node-a"), { csr: buildCsr(key.privateKey, { commonName: "node-a proxy" }) });
      expect(minted.status, minted.body).toBe(201);
      const svid = JSON.parse(minted.body) as { certificate: string; chain: string[] };
      const creds = { keyPem: key.keyPem, chainPem: svid.certificate + svid.chain.join("") };
      const nodeB = { host: c.nodes["node-b"]!.address, port: TRANSPORT_INBOUND_PORT };
      const forbiddenBefore = await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "forbidden" });
      expect(await dialTransport(nodeB, creds, { destinationId: await spiffeIdOf(px, "web"), authority: `${addr("web-b")}:${WEB}` })).toEqual({ status: 200, error: null });
      expect(await dialTransport(nodeB, creds, { destinationId: await spiffeIdOf(px, "plain"), authority: `${addr("plain-b")}:${PLAIN}` })).toEqual({ status: 403, error: null });
      expect(await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "forbidden" })).toBeGreaterThanOrEqual(forbiddenBefore + 1);
    }, 60_000);

    it("node-a's transport killed: requests to web answer 503 and no plaintext of them crosses the fabric; 200 again once the agent restarted it", async () => {
      const agent = c.nodes["node-a"]!.agent!;
      const killed = transportPid(agent.pid);
      expect(killed, "node-a's agent runs no transport").not.toBeNull();
      const mark = marker("down");
      const proxyA = proxyAddress("node-a");
      const fabric = await capture(cleanup, c.fabric.netns, "br0", "tcp");
      // The agent paused, so the window without a transport is as long as this test needs, not as short as its restart.
      process.kill(agent.pid, "SIGSTOP");
      let down: Sent;
      try {
        process.kill(killed!, "SIGKILL");
        down = await send(c, "client-a", url("web", `/${mark}`), 5, { concurrency: 1, timeoutMs: 5_000 });
      } finally {
        process.kill(agent.pid, "SIGCONT");
      }
      const { raw, segments } = await fabric.stop();
      console.log(`web with node-a's transport down: ${JSON.stringify({ statuses: down.statuses, failures: down.failures })}`);
      // Refused by the proxy (503) or not answered at all: never by web-b.
      expect(down.statuses["200"]).toBeUndefined();
      expect(down.servers).toEqual({});
      expect(Object.entries(down.statuses).filter(([status]) => status !== "503")).toEqual([]);
      expect(raw.includes(mark)).toBe(false);
      const around = segments.filter((s) => (s.src === proxyA && s.dst === addr("web-b")) || s.sport === WEB || s.dport === WEB);
      expect(around.map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport}`)).toEqual([]);

      const back = await webAnswers(`/${marker("back")}`, 60_000);
      expect(back.servers).toEqual({ web: 1 });
      const restarted = transportPid(c.nodes["node-a"]!.agent!.pid);
      expect(restarted).not.toBeNull();
      expect(restarted).not.toBe(killed);
    }, 120_000);
  },
);
