/**
 * Review of the proxy hop (issue 21), the datapath's side: weft_needs_transport
 * now lets a packet past a policy hit flagged mtls when "a socket of this
 * host bound to the packet's source address and port sent it", meant for the
 * node's own L7 proxy (bpf/README [R15], README "the datapath knows it by its
 * socket"). The test is any host socket and any peer identity: the proxy's
 * address and IDENTITY_PROXY are not asked for. So where an mtls rule with
 * any peer governs a port (peers: [], which takes the world too), a process
 * of the node that is not the proxy, connecting from the node's own address,
 * now reaches the workload in plaintext where it was dropped as
 * mtls-required before. FAILS on main at 7700781: written ahead of a fix.
 * Namespaces: the node (loader there, the "host process" there) and one
 * workload behind a veth.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { promisify } from "node:util";
import { protocols } from "@weft/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import type { KernelDatapath } from "../../nodeagent/src/loader/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, makeNetns, toolsUnavailableReason } from "../support/kernel.ts";
import { until } from "../support/until.ts";
import { loadInNode, workloadVeth } from "./node-namespace.ts";
import { readMetrics, writeEntries } from "./policy-harness.ts";

const { tcp } = protocols;
const W = { host: "198.18.186.1", address: "198.18.186.2", identity: 5101, tenant: 1 };
const MTLS_PORT = 8080;

const sh = (cmd: string, ...args: string[]): string => execFileSync(cmd, args, { encoding: "utf8" });
const inNs = (ns: string, ...args: string[]): string => sh("ip", "netns", "exec", ns, ...args);

/** One connection from `src` (port chosen by the kernel) to dst:port in `ns`: the body, or the error. */
const CLIENT = `
import socket, sys
s = socket.socket(); s.settimeout(3)
s.bind((sys.argv[1], 0))
try:
    s.connect((sys.argv[2], int(sys.argv[3]))); print(s.recv(100).decode())
except OSError as e:
    print("error: " + str(e))
`;
const connectFrom = async (ns: string, src: string, dst: string, port: number): Promise<string> =>
  (await promisify(execFile)("ip", ["netns", "exec", ns, "python3", "-c", CLIENT, src, dst, String(port)], { encoding: "utf8", timeout: 30_000 })).stdout.trim();

const reason = toolsUnavailableReason([["ip", "-V"], ["nsenter", "--version"], ["python3", "--version"]]);

describe.skipIf(skipWithout("the datapath in namespaces (root, bpf, iproute2, nsenter, python3)", reason))("the datapath's exemption for the node's own proxy (real namespaces)", () => {
  const cleanup = new Cleanup();
  let dp: KernelDatapath;
  let node: string;
  let workload: string;
  const metric = (slot: string): bigint => readMetrics(dp.maps.metrics).get(slot) ?? 0n;

  beforeAll(async () => {
    node = makeNetns(cleanup, "pxrvnode");
    workload = makeNetns(cleanup, "pxrvwl");
    sh("ip", "-n", node, "link", "set", "lo", "up");
    const v = workloadVeth(node, workload, `pxrv${process.pid % 100000}`, W.host, W.address);
    dp = loadInNode(cleanup, "pxreview", node, [v.host]);
    const identity = { identity: W.identity, tenant: W.tenant };
    writeEntries(dp.maps.endpoint, "endpoint", [{ key: { address: W.address }, value: identity }]);
    writeEntries(dp.maps.ipcache, "ipcache", [{ key: { prefix: `${W.address}/32` }, value: identity }]);
    // W's ingress: any peer on 8080, mtls (what peers: [] with transport mtls compiles to).
    writeEntries(
      dp.maps.policy,
      "policy",
      normalizePolicy([{ key: { localIdentity: W.identity, remoteIdentity: 0, port: MTLS_PORT, protocol: tcp, direction: "ingress" }, value: { action: "allow", ruleId: 7, mtls: true } }]),
    );
    const child = spawn("ip", ["netns", "exec", workload, process.execPath, "-e", `require("node:net").createServer(s=>{s.on("error",()=>{});s.end("workload")}).listen(${MTLS_PORT},"0.0.0.0")`], { stdio: "ignore" });
    cleanup.add("stop the workload's server", () => void (child.exitCode === null && child.kill("SIGKILL")));
    await until("the workload's server to listen", 10_000, () => (inNs(workload, "ss", "-Hltn", `sport = :${MTLS_PORT}`).length > 0 ? true : undefined));
  });
  afterAll(() => cleanup.run());

  it("holds a host process that is not the node's proxy (the node's own address, no proxy identity) to the mtls rule", async () => {
    const before = metric("ingress/mtls-required");
    const got = await connectFrom(node, W.host, W.address, MTLS_PORT);
    // On main: "workload" (the SYN passed as the proxy's would), and nothing counted as mtls-required.
    expect({ got, mtlsRequired: metric("ingress/mtls-required") - before }).toEqual({ got: expect.stringMatching(/^error/), mtlsRequired: expect.any(BigInt) });
    expect(metric("ingress/mtls-required")).toBeGreaterThan(before);
  });
});
