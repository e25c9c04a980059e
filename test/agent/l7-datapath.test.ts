// SPDX-License-Identifier: Apache-2.0
// The agent's L7 proxy behind the real datapath (issue 21; bpf/README [R17],
// [R18]), in namespaces of the test's own (run under the kernel lock): the
// loader attaches the programs in a node namespace, a client workload
// (default-deny both ways) dials an L7 frontend's VIP, weft_from_wl hands
// a new connection to the kernel's socket lookup ([R19]), which gives it the
// listener the agent's driver runs from its rendered
// haproxy.cfg, the agent's own policy route (installTransportRouting)
// delivers it, and weft_to_wl lets the proxy's marked answers through. The
// proxy authorizes by the caller's address, connects to the backend from the
// proxy address the agent put on lo, and when the agent stops it, the
// connection fails closed as proxy-down.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { protocols, type Entry } from "@weft/codec";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KernelDatapath } from "../../nodeagent/src/loader/index.ts";
import { installTransportRouting, type IpRunner } from "../../nodeagent/src/kernel/transport-routing.ts";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { handOverListener } from "../../nodeagent/src/l7/listener.ts";
import { installProxyAddress } from "../../nodeagent/src/l7/proxy-address.ts";
import { Cleanup, makeNetns, toolsUnavailableReason } from "../support/kernel.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { until, untilHolds } from "../support/until.ts";
import { loadInNode, workloadVeth } from "../kernel/node-namespace.ts";
import { readMetrics, writeEntries } from "../kernel/policy-harness.ts";

const TENANT = 1;
const CLIENT = { host: "198.18.180.1", address: "198.18.180.2", identity: 4101, spiffeId: "spiffe://acme.test/ns/shop/sa/web" };
const VIP = "198.18.182.10";
const PROXY_ADDRESS = "198.18.181.1";
const BACKEND_PORT = 8080;

const reason = toolsUnavailableReason([["ip", "-V"], ["nsenter", "--version"], ["haproxy", "-v"], ["curl", "--version"]]);
const HAPROXY = reason ? "" : execFileSync("sh", ["-c", "command -v haproxy"], { encoding: "utf8" }).trim();

describe.skipIf(skipWithout("the L7 proxy behind the datapath (root, bpf, iproute2, nsenter, haproxy, curl)", reason))("the agent's L7 proxy behind the real steering", () => {
  const cleanup = new Cleanup();
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-dp-"));
  const records: AccessRecord[] = [];
  let dp: KernelDatapath;
  let node: string;
  let client: string;
  let driver: L7Driver | null = null;
  let backend: ChildProcess | null = null;
  const metric = (slot: string) => readMetrics(dp.maps.metrics).get(slot) ?? 0n;

  /** curl from the client: status, content type and body; status 0 when it could not connect. */
  function curl(method: string, path: string, headers: string[] = []): Promise<{ status: number; type: string; body: string }> {
    return new Promise((resolve) => {
      execFile("ip", ["netns", "exec", client, "curl", "-s", "-m", "3", "-X", method, ...headers.flatMap((h) => ["-H", h]), "-w", "\n%{http_code} %{content_type}", `http://${VIP}${path}`], { encoding: "utf8" }, (_err, stdout) => {
        const cut = stdout.lastIndexOf("\n");
        const [status, type] = stdout.slice(cut + 1).split(" ");
        resolve({ status: Number(status), type: type ?? "", body: stdout.slice(0, cut) });
      });
    });
  }

  const document: L7Document = {
    proxyAddress: PROXY_ADDRESS,
    frontends: [
      {
        name: "f-api-80",
        tenant: "acme",
        service: "api",
        vip: VIP,
        port: 80,
        rules: [],
        defaultBackend: "d-api-80",
        authorization: { governed: true, entries: [{ action: "allow", sources: [CLIENT.spiffeId], methods: ["GET"], policy: "api-in", rule: 0 }] },
      },
    ],
    backends: [{ name: "d-api-80", servers: [{ name: "w-1", address: PROXY_ADDRESS, port: BACKEND_PORT, weight: 1 }] }],
    callers: [{ address: CLIENT.address, tenant: "acme", spiffeId: CLIENT.spiffeId }],
  };

  beforeAll(async () => {
    cleanup.add(`remove ${stateDir}`, () => rmSync(stateDir, { recursive: true, force: true }));
    node = makeNetns(cleanup, "l7anode");
    client = makeNetns(cleanup, "l7acli");
    const inNode: IpRunner = (args) => execFileSync("ip", ["-n", node, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    inNode(["link", "set", "lo", "up"]);
    const cv = workloadVeth(node, client, `l7a${process.pid % 10000}c`, CLIENT.host, CLIENT.address);
    // The VIP only: no default route in the client.
    execFileSync("ip", ["-n", client, "route", "add", `${VIP}/32`, "via", CLIENT.host]);
    installTransportRouting(inNode);
    installProxyAddress(PROXY_ADDRESS, stateDir, inNode);

    dp = loadInNode(cleanup, "l7agent", node, [cv.host]);
    const identity = { identity: CLIENT.identity, tenant: TENANT };
    writeEntries(dp.maps.endpoint, "endpoint", [{ key: { address: CLIENT.address }, value: identity }]);
    writeEntries(dp.maps.ipcache, "ipcache", [{ key: { prefix: `${CLIENT.address}/32` }, value: identity }]);
    writeEntries(dp.maps.local_veth, "local_veth", [{ key: { address: CLIENT.address }, value: { ifindex: cv.ifindex } }]);
    writeEntries(dp.maps.l7, "l7", [{ key: { vip: VIP, port: 80, protocol: protocols.tcp }, value: { http: true } }]);
    const deny = (direction: "ingress" | "egress"): Entry<"policy"> => ({ key: { localIdentity: CLIENT.identity, remoteIdentity: 0, port: 0, protocol: 0, direction }, value: { action: "default-deny", ruleId: 0 } });
    writeEntries(dp.maps.policy, "policy", [deny("ingress"), deny("egress")]);

    backend = spawn("ip", ["netns", "exec", node, process.execPath, "-e", `require("http").createServer((q, s) => s.end(JSON.stringify({ from: q.socket.remoteAddress, identity: q.headers["x-weft-source-identity"] }))).listen(${BACKEND_PORT}, ${JSON.stringify(PROXY_ADDRESS)}, () => console.log("ready"))`], { stdio: ["ignore", "pipe", "inherit"] });
    cleanup.add("stop the backend", () => void backend?.kill("SIGKILL"));
    await new Promise<void>((resolve) => createInterface({ input: backend!.stdout! }).once("line", () => resolve()));

    const wrapper = join(stateDir, "haproxy-in-node");
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${node} ${HAPROXY} "$@"\n`);
    chmodSync(wrapper, 0o755);
    driver = new L7Driver({
      binary: wrapper,
      stateDir,
      document: async (etag) => (etag === '"d1"' ? { kind: "unchanged" } : { kind: "document", etag: '"d1"', body: structuredClone(document) }),
      registry: new Registry(),
      records: (batch) => records.push(...batch),
      // As the agent's runtime does: the worker's listener into the socket lookup's sockmap.
      listener: (pid) => void handOverListener(dp, pid),
      log: () => undefined,
    });
    cleanup.add("stop the proxy", () => driver?.stop());
    driver.start();
    await untilHolds("the proxy running", () => driver!.status(), (s) => s.state === "running", 20_000);
  }, 90_000);

  afterAll(() => cleanup.run());

  it("serves the caller through the steering: its policy decides, the backend sees the proxy address and the caller's verified identity", async () => {
    const [out, inn, denied] = ["egress/l7-steered", "ingress/l7-steered", "ingress/default-deny"].map(metric);
    const ok = await curl("GET", "/api", ["x-weft-source-identity: spiffe://acme.test/ns/shop/sa/admin"]);
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ from: PROXY_ADDRESS, identity: CLIENT.spiffeId });
    const refused = await curl("POST", "/api");
    expect(refused.status).toBe(403);
    expect(refused.type).toBe("application/problem+json");
    expect(metric("egress/l7-steered")).toBeGreaterThan(out!);
    // The answers passed a default-deny ingress: the proxy's mark (or its socket) let them through.
    expect(metric("ingress/l7-steered")).toBeGreaterThan(inn!);
    expect(metric("ingress/default-deny")).toBe(denied);
    await until("both records", 5_000, () => (records.length >= 2 ? true : undefined));
    expect(records.map((r) => [r.src, r.vip, r.vport, r.status, r.refused])).toEqual([
      [CLIENT.address, VIP, 80, 200, ""],
      [CLIENT.address, VIP, 80, 403, "forbidden"],
    ]);
  }, 30_000);

  it("fails closed when the agent stops the proxy: proxy-down, no answer from anywhere", async () => {
    await driver!.stop();
    driver = null;
    const down = metric("egress/proxy-down");
    expect((await curl("GET", "/api")).status).toBe(0);
    expect(metric("egress/proxy-down")).toBeGreaterThan(down);
  }, 30_000);
});
