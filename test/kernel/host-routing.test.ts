/**
 * Host routing ([R10] in bpf/README): a packet between two workloads of the
 * node skips the host's IP forwarding. What proves the shortcut was taken is
 * the receiving host-side veth's own transmit counter: a routed packet leaves
 * through it, a redirected one never touches it. Real namespaces, real TCP.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { maps, protocols, type Entry } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attachTc } from "../../nodeagent/src/kernel/index.ts";
import { echoServer, routeWorkload, tcpProbe } from "../agent/netns-traffic.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, cgroupUnavailableReason, makeCgroup, makeNetns, makeVeth, type VethPair } from "../support/kernel.ts";
import { deleteAll, mapOf, PolicyHarness, readMetrics, writeEntries } from "./policy-harness.ts";

const PORT = 8080;
const TENANT = 1;
// One /30 per workload: host end .1/.5/.9, workload end .2/.6/.10.
const WORKLOADS = {
  client: { host: "198.18.104.1", addr: "198.18.104.2", identity: 1001 },
  server: { host: "198.18.104.5", addr: "198.18.104.6", identity: 1002 },
  stranger: { host: "198.18.104.9", addr: "198.18.104.10", identity: 1003 },
} as const;
type Name = keyof typeof WORKLOADS;

const txPackets = (ifname: string): number => Number(readFileSync(`/sys/class/net/${ifname}/statistics/tx_packets`, "utf8"));

const reason = cgroupUnavailableReason();

describe.skipIf(skipWithout("host routing between workload veths (root, bpf, cgroup v2, iproute2)", reason))("host routing between two workloads of the node", () => {
  const cleanup = new Cleanup();
  let h: PolicyHarness;
  let cgroup: string;
  const ns = {} as Record<Name, string>;
  const veth = {} as Record<Name, VethPair>;
  let localVeth: ReturnType<typeof mapOf>;

  const localVethEntries = (): Entry<"local_veth">[] =>
    (Object.keys(WORKLOADS) as Name[]).map((n) => ({ key: { address: WORKLOADS[n].addr }, value: { ifindex: veth[n].hostIfindex } }));

  beforeAll(async () => {
    h = new PolicyHarness();
    cleanup.add("close weft_policy object", () => h.close());
    localVeth = mapOf(h.obj, maps.local_veth);
    cgroup = makeCgroup(cleanup, "hr");
    for (const n of Object.keys(WORKLOADS) as Name[]) {
      const w = WORKLOADS[n];
      ns[n] = makeNetns(cleanup, `hr${n.slice(0, 3)}`);
      veth[n] = makeVeth(cleanup, `hr${n.slice(0, 3)}`, ns[n], `${w.host}/30`, `${w.addr}/30`);
      routeWorkload(ns[n], veth[n].host, w.host);
      // Packets the workload sends enter the host end (tc ingress); packets to it leave it (tc egress).
      const from = attachTc(h.obj.programFd("weft_from_wl"), veth[n].hostIfindex, "ingress");
      const to = attachTc(h.obj.programFd("weft_to_wl"), veth[n].hostIfindex, "egress");
      cleanup.add(`detach tc from ${veth[n].host}`, () => (from.detach(), to.detach()));
    }
    const identities = (Object.keys(WORKLOADS) as Name[]).map((n) => ({ address: WORKLOADS[n].addr, value: { identity: WORKLOADS[n].identity, tenant: TENANT } }));
    h.endpoints(identities.map((i) => ({ key: { address: i.address }, value: i.value })));
    h.peers(identities.map((i) => ({ key: { prefix: `${i.address}/32` }, value: i.value })));
    // The server admits the client on PORT; the stranger is selected by nothing but the server's default deny.
    h.setPolicy(
      normalizePolicy([
        {
          key: { localIdentity: WORKLOADS.server.identity, remoteIdentity: WORKLOADS.client.identity, port: PORT, protocol: protocols.tcp, direction: "ingress" },
          value: { action: "allow", ruleId: 1 },
        },
      ]),
    );
    writeEntries(localVeth, "local_veth", localVethEntries());
    await echoServer(cleanup, ns.server, "server", PORT);
  });
  afterAll(() => cleanup.run());

  it("delivers an allowed connection without the packets ever leaving through the receiving host-side veth", async () => {
    const before = { server: txPackets(veth.server.host), client: txPackets(veth.client.host) };
    expect(await tcpProbe(ns.client, cgroup, WORKLOADS.server.addr, PORT, 20)).toEqual({ server: 20 });
    // Each connection sends the server at least SYN, ACK, FIN and the client SYN-ACK, data, FIN: routed, that is >= 60 each way.
    // The margin is for the host's own IPv6 link chatter (DAD, MLD) on new veths.
    expect(txPackets(veth.server.host) - before.server).toBeLessThan(8);
    expect(txPackets(veth.client.host) - before.client).toBeLessThan(8);
  });

  it("routes through the host as before when the map names no veth (host routing off)", async () => {
    try {
      deleteAll(localVeth);
      const before = txPackets(veth.server.host);
      expect(await tcpProbe(ns.client, cgroup, WORKLOADS.server.addr, PORT, 20)).toEqual({ server: 20 });
      expect(txPackets(veth.server.host) - before).toBeGreaterThanOrEqual(60);
    } finally {
      writeEntries(localVeth, "local_veth", localVethEntries());
    }
  });

  it("takes the receiving workload's ingress decision on the way: a peer it does not admit is dropped and counted", async () => {
    const before = readMetrics(h.metrics).get("ingress/default-deny") ?? 0n;
    const tx = txPackets(veth.server.host);
    expect(await tcpProbe(ns.stranger, cgroup, WORKLOADS.server.addr, PORT, 2, 400)).toEqual({ timeout: 2 });
    expect((readMetrics(h.metrics).get("ingress/default-deny") ?? 0n) - before).toBeGreaterThanOrEqual(2n);
    expect(txPackets(veth.server.host) - tx).toBeLessThan(2);
  });

  /**
   * One UDP datagram from `from` to the stranger (selected by no policy, so it passes), sent with `ttl`:
   * the TTL it arrived with, or null when nothing arrived within a second. Python reads it
   * (IP_RECVTTL, 12 in linux/in.h; its socket module lacks the name).
   */
  async function datagramTtl(from: Name, ttl: number): Promise<number | null> {
    const receiver = `import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.setsockopt(socket.IPPROTO_IP,12,1);s.bind(("0.0.0.0",${PORT}));s.settimeout(1)
print("ready",flush=True)
try:
  d,anc,_,_=s.recvmsg(64,64);print("ttl",anc[0][2][0],flush=True)
except socket.timeout:
  print("none",flush=True)`;
    const sender = `import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.setsockopt(socket.IPPROTO_IP,socket.IP_TTL,${ttl});s.sendto(b"hi",("${WORKLOADS.stranger.addr}",${PORT}))`;
    const child = execFile("ip", ["netns", "exec", ns.stranger, "python3", "-c", receiver], { timeout: 10_000 });
    const out = await new Promise<string>((resolve, reject) => {
      let text = "";
      let sent = false;
      child.stdout!.on("data", (d: Buffer) => {
        text += String(d);
        if (text.includes("ready") && !sent) {
          sent = true;
          execFile("ip", ["netns", "exec", ns[from], "python3", "-c", sender], (err) => err && reject(err));
        }
      });
      child.once("exit", (code) => (code === 0 ? resolve(text) : reject(new Error(`receiver exited with ${code}: ${text}`))));
    });
    const m = /ttl (\d+)/.exec(out);
    return m ? Number(m[1]) : null;
  }

  it("lowers the TTL by one, as the routed hop did", async () => {
    const tx = txPackets(veth.stranger.host);
    expect(await datagramTtl("client", 64)).toBe(63);
    expect(txPackets(veth.stranger.host) - tx).toBe(0);
  });

  it("leaves a packet whose TTL would expire on the hop to the host, which drops it", async () => {
    expect(await datagramTtl("client", 1)).toBeNull();
    expect(await datagramTtl("client", 2)).toBe(1);
  });
});
