/**
 * Issue #18's proof on the simulated cluster (bench/support/cluster.ts): three
 * nodes with real agents, each spawning its node's mTLS transport, real TCP
 * across the fabric bridge, and tcpdump as the outside witness of what crosses
 * it. One cluster for the whole file.
 *
 *   tenant tx:       client-a (identity client, node-a) -> web-b (identity web, node-b)
 *                    web-in    allows client on 8080, 8082, 8083 with transport mtls
 *                    web-plain allows client on 8081 (plaintext: the control)
 *                    web-deny  denies client on 8082
 *                    client's SVIDs live 60 s (renewed every 30 s: rotation under load)
 *   tenant txother:  other-c (identity client, node-c) -> other-b (identity web, node-b), mtls on 8080
 *
 * node-a holds tenant tx's SVIDs only; node-b holds both tenants' web SVIDs.
 * Proves, one bullet of the issue each: an mtls request crosses the fabric as
 * TLS records and its marker never shows (the plaintext rule's does); a forged
 * stream with client-a's address is dropped at node-b and counted
 * mtls-required while client-a's own connection arrives through the transport
 * from client-a's address; tenant tx's real SVIDs cannot open a stream to
 * tenant txother's workload, nor can node-a's credential obtain txother's
 * SVIDs; a killed transport lets no plaintext of its flow onto the fabric,
 * counts transport-down and comes back; a deny by identity and port holds for
 * mtls traffic at the receiver; the handshakes use X25519MLKEM768; a transfer
 * across an SVID rotation completes.
 *
 * Expired and not-yet-valid SVIDs, SANs that are not one SPIFFE ID, and a
 * certificate of tenant A's CA claiming tenant B's trust domain are refused at
 * the inbound port by test/transport/inbound-auth.test.ts on loopback: the
 * cluster adds no new path for those (the same process, the same checks), so
 * here only what a cluster adds is checked: real SVIDs that the API issued to
 * a real agent, the real bundles, the node credential's own limit.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BenchCleanup } from "../../bench/support/cleanup.ts";
import { clusterUnavailableReason, datapathPackets, startCluster, THREE_NODES, type Cluster, type ClusterTenant } from "../../bench/support/cluster.ts";
import { http } from "../../bench/support/weft.ts";
import { buildCsr, newWorkloadKey } from "../../nodeagent/src/agent/csr.ts";
import { groupAvailable, POST_QUANTUM } from "../../nodeagent/src/transport/tls-policy.ts";
import { sample, tlsRecords } from "../transport/support.ts";
import { skipWithout } from "../support/prerequisites.ts";
import {
  ask,
  capture,
  dialTransport,
  heldSvid,
  inNamespace,
  inWorkload,
  marker,
  packetsFor,
  parseAsk,
  program,
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

const MTLS = 8080;
const PLAIN = 8081;
const DENIED = 8082;
const TRANSFER = 8083;

const reason =
  clusterUnavailableReason() ??
  tcpdumpUnavailableReason() ??
  (groupAvailable(POST_QUANTUM) ? null : `this Node's OpenSSL ${process.versions.openssl} has no ${POST_QUANTUM} (run on Node 24)`);

const tcp = (port: number) => ({ port, protocol: "tcp" });
const fromClient = [{ identity: "client" }];

describe.skipIf(skipWithout("simulated cluster with the mTLS transport (root, bpf, cgroup2, iproute2, curl, tcpdump, Node 24)", reason))(
  "three nodes, cross-node traffic through the nodes' mTLS transports (issue #18)",
  () => {
    const cleanup = new BenchCleanup(`wcluster-manifest-${process.pid}-transport`);
    let c: Cluster;
    let tx: ClusterTenant;
    let other: ClusterTenant;
    let rogue: Rogue;
    /** Why the API refused the mtls policies (the transport field), or null once it takes them. */
    let mtlsRefused: string | null = null;
    const addr = (w: string) => c.workloads[w]!.address;
    const packets = async (node: string) => datapathPackets(await c.agentMetrics(node));
    const denied = async (node: string) => {
      const p = await packets(node);
      return packetsFor(p, "policy-deny") + packetsFor(p, "default-deny");
    };
    const transportMetric = async (node: string, metric: string, labels: Record<string, string>) => sample(await c.agentMetrics(node), metric, labels);
    /** Every mtls proof needs the policy field and the wiring behind it: say so first, with the API's answer. */
    const needsMtls = () => {
      if (mtlsRefused !== null) throw new Error(`the API refused a policy rule with transport: mtls: ${mtlsRefused}`);
    };

    beforeAll(async () => {
      const started = performance.now();
      c = await startCluster({ nodes: THREE_NODES, agentArgs: ["--svid-files", "--status-interval", "1"], cleanup });
      tx = await c.tenant("tx");
      other = await c.tenant("txother");
      c.addWorkload("node-a", { name: "client-a" });
      c.addWorkload("node-b", { name: "web-b" });
      c.addWorkload("node-b", { name: "other-b" });
      c.addWorkload("node-c", { name: "other-c" });
      // The shortest SVID life the API allows: renewed at half of it, during the transfer test.
      await tx.put("/identities/client", { path: "/ns/tx/sa/client", x509SvidTtlSeconds: 60 });
      await tx.put("/identities/web", { path: "/ns/tx/sa/web" });
      await other.put("/identities/client", { path: "/ns/txother/sa/client" });
      await other.put("/identities/web", { path: "/ns/txother/sa/web" });
      for (const [t, w, identity] of [[tx, "client-a", "client"], [tx, "web-b", "web"], [other, "other-b", "web"], [other, "other-c", "client"]] as const) {
        await t.put(`/workloads/${w}`, { identity, node: c.workloads[w]!.node, addresses: [addr(w)] });
      }
      await tx.put("/policies/web-plain", { subject: { identity: "web" }, ingress: [{ peers: fromClient, ports: [tcp(PLAIN)], action: "allow" }] });
      await tx.put("/policies/web-deny", { subject: { identity: "web" }, ingress: [{ peers: fromClient, ports: [tcp(DENIED)], action: "deny" }] });
      // The rules this file is about. Refused until the API knows `transport`: recorded, and every mtls test says so.
      try {
        await tx.put("/policies/web-in", { subject: { identity: "web" }, ingress: [{ peers: fromClient, ports: [tcp(MTLS), tcp(DENIED), tcp(TRANSFER)], action: "allow", transport: "mtls" }] });
        await other.put("/policies/web-in", { subject: { identity: "web" }, ingress: [{ peers: fromClient, ports: [tcp(MTLS)], action: "allow", transport: "mtls" }] });
      } catch (err) {
        mtlsRefused = (err as Error).message;
      }
      await c.start("web-b", "answer", program("answer", "web-b", [MTLS, PLAIN, DENIED].join(",")), { ready: (o) => o.includes("listening") });
      await c.start("web-b", "sink", program("sink", TRANSFER), { ready: (o) => o.includes("listening") });
      await c.start("other-b", "answer", program("answer", "other-b", String(MTLS)), { ready: (o) => o.includes("listening") });
      rogue = rogueOnFabric(cleanup, c, addr("client-a"), [{ address: addr("web-b"), node: "node-b" }]);
      await c.converged();
      console.log(`cluster of 3 nodes up and converged in ${((performance.now() - started) / 1000).toFixed(1)} s (fabric ${c.fabric.cidr})`);
    }, 300_000);
    // What the nodes' transports were told and did, whenever a proof fails: the first thing anyone debugging it asks.
    beforeEach((ctx) => ctx.onTestFailed(async () => void (c && console.log(await transportDiagnostics(c, ["node-a", "node-b"])))));
    afterAll(async () => {
      const errors = await cleanup.run();
      if (errors.length) throw new Error(`cleanup failed: ${errors.join("; ")}`);
    }, 120_000);

    it("an mtls request crosses the fabric as TLS records to port 15008 only: its marker never shows there, and web-b sees client-a", async () => {
      needsMtls();
      const mark = marker("mtls");
      const fabric = await capture(cleanup, c.fabric.netns, "br0", "tcp");
      const { attempts } = await ask(inWorkload(c, "client-a"), addr("web-b"), MTLS, mark, 1);
      const { raw, segments } = await fabric.stop();
      expect(attempts).toMatchObject([{ ok: true, server: "web-b", port: MTLS, peer: addr("client-a"), echo: mark }]);
      expect(raw.includes(mark)).toBe(false);
      expect(segments.filter((s) => s.sport === MTLS || s.dport === MTLS)).toEqual([]);
      const tls = segments.filter((s) => (s.sport === TRANSPORT_INBOUND_PORT || s.dport === TRANSPORT_INBOUND_PORT) && s.payload.length > 0);
      // Both ways, between the two nodes' own addresses: node-a to node-b's transport and back, and TLS records each way.
      const [nodeA, nodeB] = [c.nodes["node-a"]!.address, c.nodes["node-b"]!.address];
      expect(new Set(tls.map((s) => `${s.src}>${s.dst}`))).toEqual(new Set([`${nodeA}>${nodeB}`, `${nodeB}>${nodeA}`]));
      for (const way of [`${nodeA}>${nodeB}`, `${nodeB}>${nodeA}`]) expect(tls.some((s) => `${s.src}>${s.dst}` === way && startsTlsRecord(s.payload))).toBe(true);
      // A session opened during the capture (the file's first mtls request opens one): nothing but TLS records from its first byte to its last.
      for (const [flow, bytes] of tcpStreams(segments)) if (flow.includes(`:${TRANSPORT_INBOUND_PORT}`)) expect({ flow, ...tlsRecords(bytes) }).not.toHaveProperty("notTls");
    }, 60_000);

    it("the plaintext rule's request crosses the fabric in clear, marker and all (the control)", async () => {
      const mark = marker("plain");
      const fabric = await capture(cleanup, c.fabric.netns, "br0", "tcp");
      const { attempts } = await ask(inWorkload(c, "client-a"), addr("web-b"), PLAIN, mark, 1);
      const { raw, segments } = await fabric.stop();
      expect(attempts).toMatchObject([{ ok: true, server: "web-b", port: PLAIN, peer: addr("client-a"), echo: mark }]);
      expect(raw.includes(mark)).toBe(true);
      // The request and the echo in the answer, each in a segment of that connection.
      const carrying = segments.filter((s) => s.payload.includes(mark));
      expect(carrying.some((s) => s.src === addr("client-a") && s.dport === PLAIN)).toBe(true);
      expect(carrying.some((s) => s.dst === addr("client-a") && s.sport === PLAIN)).toBe(true);
      const request = [...tcpStreams(segments)].find(([flow]) => flow.startsWith(`${addr("client-a")}:`) && flow.endsWith(`>${addr("web-b")}:${PLAIN}`));
      expect(request?.[1].toString()).toBe(`${mark}\n`);
    }, 60_000);

    it("a stream forged on the fabric with client-a's address reaches web-b on the plaintext port (why the rule matters)", async () => {
      const seen = await capture(cleanup, c.workloads["web-b"]!.netns, "eth0", `tcp dst port ${PLAIN} and src host ${addr("client-a")}`);
      const forged = await ask(inNamespace(rogue.netns), addr("web-b"), PLAIN, marker("forged-plain"), 2, 1_000);
      const { segments } = await seen.stop();
      // The SYN-ACK goes to the real client-a, which resets it: the forger gets no answer, but web-b got its SYNs.
      expect(forged.tally.peers).toEqual({});
      expect(segments.filter((s) => s.flags & TCP_SYN).length).toBeGreaterThanOrEqual(2);
    }, 60_000);

    it("the same forged stream to web-b's mtls port is dropped at node-b and counted mtls-required; client-a's own connection arrives through the transport from client-a's address", async () => {
      needsMtls();
      const before = packetsFor(await packets("node-b"), "mtls-required");
      const seen = await capture(cleanup, c.workloads["web-b"]!.netns, "eth0", `tcp dst port ${MTLS} and src host ${addr("client-a")}`);
      const forged = await ask(inNamespace(rogue.netns), addr("web-b"), MTLS, marker("forged-mtls"), 3, 1_000);
      const { segments } = await seen.stop();
      expect(forged.tally).toEqual({ peers: {}, failures: { timeout: 3 } });
      expect(segments).toEqual([]);
      // Each attempt's SYN, and its retransmissions.
      expect(packetsFor(await packets("node-b"), "mtls-required")).toBeGreaterThanOrEqual(before + 3);

      const carriedBefore = await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "carried" });
      const real = await ask(inWorkload(c, "client-a"), addr("web-b"), MTLS, marker("real"), 2);
      expect(real.tally).toEqual({ peers: { [addr("client-a")]: 2 }, failures: {} });
      expect(await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "carried" })).toBeGreaterThanOrEqual(carriedBefore + 2);
    }, 60_000);

    it("node-a holds tenant tx's SVIDs only: its credential obtains none of txother's, and tx's real SVID cannot open a stream to txother's workload", async () => {
      const credential = c.nodes["node-a"]!.agent!.credential();
      const key = newWorkloadKey();
      for (const identity of ["web", "client"]) {
        const issued = await http(`${c.api.base}/v1/tenants/${other.tenant}/identities/${identity}/x509-svids`, "POST", { authorization: `Bearer ${credential}` }, { csr: buildCsr(key.privateKey, { commonName: "stolen" }) });
        expect([403, 404], `node-a asking for txother's ${identity} SVID: ${issued.status} ${issued.body}`).toContain(issued.status);
      }
      const svid = await untilHolds("client-a's SVID on node-a", () => heldSvid(c.nodes["node-a"]!.stateDir, "client-a"), (s) => s !== null, 20_000);
      expect(svid!.spiffeId).toMatch(/^spiffe:\/\/.+\/ns\/tx\/sa\/client$/);

      needsMtls();
      const nodeB = { host: c.nodes["node-b"]!.address, port: TRANSPORT_INBOUND_PORT };
      const spiffeIdOf = async (t: ClusterTenant, identity: string) => (JSON.parse((await t.call("GET", `/identities/${identity}`)).body) as { spiffeId: string }).spiffeId;
      // The harness can get in: the same SVID to its own tenant's web-b is let through (the SVID is the credential).
      expect(await dialTransport(nodeB, svid!, { destinationId: await spiffeIdOf(tx, "web"), authority: `${addr("web-b")}:${MTLS}`, forwarded: `for=${addr("client-a")}` })).toEqual({
        status: 200,
        error: null,
      });
      const refusedBefore = await transportMetric("node-b", "weft_transport_handshake_failures_total", { direction: "inbound", reason: "unknown_ca" });
      const crossed = await dialTransport(nodeB, svid!, { destinationId: await spiffeIdOf(other, "web"), authority: `${addr("other-b")}:${MTLS}`, forwarded: `for=${addr("client-a")}` });
      expect(crossed.status).toBeNull();
      expect(await transportMetric("node-b", "weft_transport_handshake_failures_total", { direction: "inbound", reason: "unknown_ca" })).toBeGreaterThanOrEqual(refusedBefore + 1);
    }, 60_000);

    it("an identity deny on 8082 between the two mtls workloads still drops it at the receiver", async () => {
      needsMtls();
      const [atA, atB] = [await denied("node-a"), await denied("node-b")];
      const forbiddenBefore = await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "forbidden" });
      const r = await ask(inWorkload(c, "client-a"), addr("web-b"), DENIED, marker("denied"), 2, 1_000);
      expect(r.tally.peers).toEqual({});
      // Carried to node-b by its transport and dropped by its tc policy, or refused by the transport there: at the receiver either way.
      const atReceiver = (await denied("node-b")) - atB + ((await transportMetric("node-b", "weft_transport_streams_total", { direction: "inbound", result: "forbidden" })) - forbiddenBefore);
      expect(atReceiver).toBeGreaterThanOrEqual(2);
      expect(await denied("node-a")).toBe(atA);
      // 8080 between the same two still passes.
      expect((await ask(inWorkload(c, "client-a"), addr("web-b"), MTLS, marker("allowed"), 1)).tally.peers).toEqual({ [addr("client-a")]: 1 });
    }, 60_000);

    it("the transports negotiate X25519MLKEM768 (the agent's /metrics merges the transport's)", async () => {
      needsMtls();
      expect((await ask(inWorkload(c, "client-a"), addr("web-b"), MTLS, marker("group"), 1)).tally.peers).toEqual({ [addr("client-a")]: 1 });
      const metrics = await c.agentMetrics("node-a");
      expect(sample(metrics, "weft_transport_connections_total", { direction: "outbound", group: POST_QUANTUM })).toBeGreaterThanOrEqual(1);
      const others = [...metrics.matchAll(/^weft_transport_connections_total\{([^}]*)\} (\d+)/gm)].filter((m) => m[1]!.includes('direction="outbound"') && !m[1]!.includes(`group="${POST_QUANTUM}"`) && m[2] !== "0");
      expect(others.map((m) => m[0])).toEqual([]);
    }, 60_000);

    it("the transport killed on node-a mid-traffic: no plaintext of the flow on the fabric, drops counted transport-down, traffic resumes once the agent restarted it", async () => {
      needsMtls();
      const agentPid = c.nodes["node-a"]!.agent!.pid;
      const killed = transportPid(agentPid);
      expect(killed, "node-a's agent runs no transport").not.toBeNull();
      const downBefore = packetsFor(await packets("node-a"), "transport-down");
      const fabric = await capture(cleanup, c.fabric.netns, "br0", `host ${addr("client-a")} and tcp port ${MTLS}`);
      const traffic = await c.start("client-a", "mtls traffic", program("ask", addr("web-b"), MTLS, marker("kill"), 0, 800, 100));
      try {
        await untilHolds("mtls traffic flowing", () => parseAsk(traffic.output()).attempts.filter((a) => a.ok).length, (n) => n >= 3, 15_000);
        const killedAt = Date.now();
        process.kill(killed!, "SIGKILL");
        const after = () => parseAsk(traffic.output()).attempts.filter((a) => a.t > killedAt);
        await untilHolds("traffic to fail and then resume", after, (xs) => xs.some((x) => !x.ok) && xs.findLastIndex((x) => x.ok) > xs.findIndex((x) => !x.ok), 30_000, 200);
      } finally {
        await traffic.stop();
      }
      const { segments } = await fabric.stop();
      expect(segments.map((s) => `${s.src}:${s.sport}>${s.dst}:${s.dport} flags ${s.flags.toString(16)}`)).toEqual([]);
      expect(packetsFor(await packets("node-a"), "transport-down")).toBeGreaterThan(downBefore);
      const restarted = transportPid(c.nodes["node-a"]!.agent!.pid);
      expect(restarted).not.toBeNull();
      expect(restarted).not.toBe(killed);
      expect((await ask(inWorkload(c, "client-a"), addr("web-b"), MTLS, marker("after"), 2)).tally.peers).toEqual({ [addr("client-a")]: 2 });
    }, 90_000);

    it("a long-lived transfer through the transports completes across a renewal of client-a's SVID", async () => {
      needsMtls();
      const stateDir = c.nodes["node-a"]!.stateDir;
      const before = heldSvid(stateDir, "client-a");
      expect(before).not.toBeNull();
      // The agent renews at half-life; the transfer runs past it (the SVID lives 60 s: at most about 34 s).
      const halfLife = before!.notBefore + (before!.notAfter - before!.notBefore) / 2;
      const ms = Math.min(45_000, Math.max(3_000, halfLife - Date.now() + 4_000));
      const bytesBefore = await transportMetric("node-a", "weft_transport_bytes_total", { direction: "outbound", way: "to_peer" });
      const { stdout } = await c.exec("client-a", program("stream", addr("web-b"), TRANSFER, Math.round(ms)), { timeoutMs: ms + 30_000 });
      const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as { sent: number; sha256: string; answer?: { bytes: number; sha256: string; peer: string }; failure?: string };
      expect(result.failure).toBeUndefined();
      expect(result.answer).toEqual({ bytes: result.sent, sha256: result.sha256, peer: addr("client-a") });
      const renewed = heldSvid(stateDir, "client-a");
      expect(renewed!.serial, "client-a's SVID was not renewed during the transfer").not.toBe(before!.serial);
      // Carried by node-a's transport, not around it.
      expect(await transportMetric("node-a", "weft_transport_bytes_total", { direction: "outbound", way: "to_peer" })).toBeGreaterThanOrEqual(bytesBefore + result.sent);
      console.log(`transfer of ${(result.sent / 1e6).toFixed(1)} MB in ${(ms / 1000).toFixed(1)} s across the renewal of SVID ${before!.serial} -> ${renewed!.serial}`);
    }, 120_000);
  },
);
