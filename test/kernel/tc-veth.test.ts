import { execFile, execFileSync } from "node:child_process";
import dgram from "node:dgram";
import { constants, protocols, type Entry } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attachTc, type Attachment } from "../../nodeagent/src/kernel/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, kernelUnavailableReason, makeNetns, makeVeth, type VethPair } from "../support/kernel.ts";
import { PolicyHarness, readMetrics } from "./policy-harness.ts";

// A workload in its own namespace behind a veth, the node on the other end.
const NODE_ADDR = "198.18.100.1";
const WL_ADDR = "198.18.100.2";
const WL = { identity: 1001, tenant: 1 };

function ipUnavailable(): string | null {
  const k = kernelUnavailableReason();
  if (k !== null) return k;
  try {
    execFileSync("ip", ["-V"], { stdio: "ignore" });
    return null;
  } catch {
    return "iproute2 not installed";
  }
}

const reason = ipUnavailable();

describe.skipIf(skipWithout("tc on a veth (root, bpf, iproute2)", reason))("tc programs attached to a workload's host-side veth", () => {
  const cleanup = new Cleanup();
  let h: PolicyHarness;
  let ns: string;
  let veth: VethPair;
  let port: number;
  const attachments: Attachment[] = [];

  beforeAll(async () => {
    h = new PolicyHarness();
    cleanup.add("close weft_policy object", () => h.close());
    ns = makeNetns(cleanup, "tc");
    veth = makeVeth(cleanup, "tc", ns, `${NODE_ADDR}/30`, `${WL_ADDR}/30`);
    const server = dgram.createSocket("udp4");
    server.on("message", (msg, rinfo) => server.send(msg, rinfo.port, rinfo.address));
    await new Promise<void>((resolve) => server.bind(0, NODE_ADDR, resolve));
    cleanup.add("close udp server", () => new Promise<void>((resolve) => server.close(() => resolve())));
    port = server.address().port;

    h.endpoints([{ key: { address: WL_ADDR }, value: WL }]);
    h.peers([{ key: { prefix: `${NODE_ADDR}/32` }, value: { identity: constants.IDENTITY_HOST, tenant: 0 } }]);
    // Packets the workload sends enter the host end (tc ingress); packets to it leave it (tc egress).
    attachments.push(attachTc(h.obj.programFd("weft_from_wl"), veth.hostIfindex, "ingress"));
    attachments.push(attachTc(h.obj.programFd("weft_to_wl"), veth.hostIfindex, "egress"));
    for (const a of attachments) cleanup.add("detach tc program", () => a.detach());
  });
  afterAll(() => cleanup.run());

  /** Sends one datagram from inside the workload's namespace; "reply:<msg>" or "timeout". */
  function probe(): Promise<string> {
    const script = `const s=require("node:dgram").createSocket("udp4");setTimeout(()=>{console.log("timeout");process.exit(0)},1000);s.on("message",m=>{console.log("reply:"+m);process.exit(0)});s.send("hi",${port},"${NODE_ADDR}");`;
    return new Promise((resolve, reject) =>
      execFile("ip", ["netns", "exec", ns, process.execPath, "-e", script], { timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))),
    );
  }

  const rule = (direction: "ingress" | "egress", port: number, action: "allow" | "deny" | "default-deny", ruleId: number): Entry<"policy"> => ({
    key: { localIdentity: WL.identity, remoteIdentity: action === "default-deny" ? 0 : constants.IDENTITY_HOST, port, protocol: action === "default-deny" ? 0 : protocols.udp, direction },
    value: { action, ruleId },
  });

  it("passes traffic the policy allows in both directions and counts it", async () => {
    h.setPolicy(normalizePolicy([rule("egress", 0, "default-deny", 0), rule("egress", port, "allow", 1), rule("ingress", 0, "default-deny", 0), rule("ingress", 0, "allow", 2)]));
    const before = readMetrics(h.metrics);
    expect(await probe()).toBe("reply:hi");
    const after = readMetrics(h.metrics);
    expect(after.get("egress/policy-allow")! - (before.get("egress/policy-allow") ?? 0n)).toBeGreaterThanOrEqual(1n);
    expect(after.get("ingress/policy-allow")! - (before.get("ingress/policy-allow") ?? 0n)).toBeGreaterThanOrEqual(1n);
  });

  it("drops the workload's traffic once a deny covers it", async () => {
    h.setPolicy(normalizePolicy([rule("egress", port, "allow", 1), rule("egress", 0, "deny", 3), rule("ingress", 0, "allow", 2)]));
    const before = readMetrics(h.metrics).get("egress/policy-deny") ?? 0n;
    expect(await probe()).toBe("timeout");
    expect(readMetrics(h.metrics).get("egress/policy-deny")! - before).toBeGreaterThanOrEqual(1n);
  });

  it("detaches cleanly: the filters disappear from the interface", () => {
    const shown = () => execFileSync("tc", ["filter", "show", "dev", veth.host, "ingress"], { encoding: "utf8" });
    expect(shown()).toMatch(/weft_from_wl/);
    for (const a of attachments) a.detach();
    expect(shown()).not.toMatch(/weft_from_wl/);
  });
});
