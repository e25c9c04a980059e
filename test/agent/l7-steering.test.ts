// SPDX-License-Identifier: Apache-2.0
// The L7 proxy as steered connections reach it (issue 21), in network
// namespaces of the test's own (run under the kernel lock): a client
// namespace (no default route) dials a VIP; on the node's side of its veth
// a connection to the VIP is handed to the proxy's transparent listener
// 127.0.0.1:L7_PROXY_PORT and marked MARK_TO_TRANSPORT, and the agent's
// policy route (installTransportRouting, the real one) delivers it locally.
// The datapath does the handing over with bpf_sk_assign (other branches);
// here nftables' tproxy stands in for it, so what this proves is the
// agent's side: the rendered frontend (no test-only listener) sees the VIP
// as dst and the workload as src, names the caller from its address, drops
// a forged x-weft-* header, connects to the backend from the proxy address
// on lo, and marks its replies MARK_PROXY.
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { constants } from "@weft/codec";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe as vitestDescribe, expect, it } from "vitest";
import { installTransportRouting, type IpRunner } from "../../nodeagent/src/kernel/transport-routing.ts";
import type { AccessRecord } from "../../nodeagent/src/l7/access-log.ts";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { installProxyAddress } from "../../nodeagent/src/l7/proxy-address.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { until, untilHolds } from "../support/until.ts";

const HAPROXY = execFileSync("sh", ["-c", "command -v haproxy || true"], { encoding: "utf8" }).trim();
const NFT = execFileSync("sh", ["-c", "command -v nft || true"], { encoding: "utf8" }).trim();
const describe = vitestDescribe.skipIf(
  skipWithout("the L7 steering suite", process.getuid?.() !== 0 ? "network namespaces need root" : !HAPROXY ? "no haproxy" : !NFT ? "no nft" : null),
);

const tag = randomBytes(3).toString("hex");
const NODE = `weft-l7n-${tag}`;
const CLIENT = `weft-l7c-${tag}`;
const inNode: IpRunner = (args) => execFileSync("ip", ["-n", NODE, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const inClient: IpRunner = (args) => execFileSync("ip", ["-n", CLIENT, ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
const nft = (ns: string, rules: string) => execFileSync("ip", ["netns", "exec", ns, NFT, "-f", "-"], { input: rules, encoding: "utf8" });

const WORKLOAD = { address: "198.18.20.2", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/web" };
const VIP = "198.19.0.10";
const PROXY_ADDRESS = "198.18.30.1";
const BACKEND_PORT = 8080;

/** curl in the client namespace: status, then the body. */
function curl(url: string, headers: string[] = [], method = "GET"): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    execFile("ip", ["netns", "exec", CLIENT, "curl", "-s", "-m", "5", "-X", method, "-w", "\n%{http_code}", ...headers.flatMap((h) => ["-H", h]), url], { encoding: "utf8" }, (err, stdout) => {
      if (err && !stdout) return reject(err);
      const cut = stdout.lastIndexOf("\n");
      resolve({ body: stdout.slice(0, cut), status: Number(stdout.slice(cut + 1)) });
    });
  });
}

describe("the L7 proxy behind steering (namespaces of the test's own)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-steer-"));
  const records: AccessRecord[] = [];
  let backend: ChildProcess | null = null;
  let driver: L7Driver | null = null;

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
        authorization: { governed: true, entries: [{ action: "allow", sources: [WORKLOAD.spiffeId], methods: ["GET"], policy: "api-in", rule: 0 }] },
      },
    ],
    backends: [{ name: "d-api-80", servers: [{ name: "w-1", address: PROXY_ADDRESS, port: BACKEND_PORT, weight: 1 }] }],
    callers: [WORKLOAD],
  };

  beforeAll(async () => {
    execFileSync("ip", ["netns", "add", NODE]);
    execFileSync("ip", ["netns", "add", CLIENT]);
    inNode(["link", "set", "lo", "up"]);
    inClient(["link", "set", "lo", "up"]);
    inNode(["link", "add", "wl0", "type", "veth", "peer", "name", "eth0", "netns", CLIENT]);
    inNode(["addr", "add", "198.18.20.1/24", "dev", "wl0"]);
    inNode(["link", "set", "wl0", "up"]);
    inClient(["addr", "add", `${WORKLOAD.address}/24`, "dev", "eth0"]);
    inClient(["link", "set", "eth0", "up"]);
    // The VIP only, no default route.
    inClient(["route", "add", `${VIP}/32`, "via", "198.18.20.1"]);
    installTransportRouting(inNode);
    installProxyAddress(PROXY_ADDRESS, stateDir, inNode);
    const mark = `0x${constants.MARK_TO_TRANSPORT.toString(16)}`;
    nft(
      NODE,
      `table ip steer {
        chain pre { type filter hook prerouting priority mangle; ip daddr ${VIP} tcp dport 80 tproxy to 127.0.0.1:${constants.L7_PROXY_PORT} meta mark set ${mark}; }
        chain out { type filter hook output priority mangle; ip saddr ${VIP} tcp sport 80 meta mark & 0x${constants.MARK_PROXY.toString(16)} != 0 counter; }
      }`,
    );
    // The backend: echoes the headers it got and the address the connection came from.
    backend = spawn("ip", ["netns", "exec", NODE, process.execPath, "-e", `require("http").createServer((q, s) => s.end(JSON.stringify({ from: q.socket.remoteAddress, headers: q.headers }))).listen(${BACKEND_PORT}, "0.0.0.0", () => console.log("ready"))`], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => createInterface({ input: backend!.stdout! }).once("line", () => resolve()));
    // HAProxy runs in the node's namespace; its admin socket is a file, reached from here.
    const wrapper = join(stateDir, "haproxy-in-node");
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${NODE} ${HAPROXY} "$@"\n`);
    chmodSync(wrapper, 0o755);
    driver = new L7Driver({
      binary: wrapper,
      stateDir,
      document: async (etag) => (etag === '"s1"' ? { kind: "unchanged" } : { kind: "document", etag: '"s1"', body: structuredClone(document) }),
      registry: new Registry(),
      records: (batch) => records.push(...batch),
      log: () => undefined,
    });
    driver.start();
    await untilHolds("the proxy running", () => driver!.status(), (s) => s.state === "running", 20_000);
  }, 60_000);

  afterAll(async () => {
    await driver?.stop();
    backend?.kill("SIGKILL");
    for (const ns of [CLIENT, NODE]) execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("serves the VIP for the caller its address names, from the proxy address, and marks its replies", async () => {
    const r = await curl(`http://${VIP}/api`, [`x-weft-source-identity: spiffe://acme.test/ns/shop/sa/admin`]);
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as { from: string; headers: Record<string, string> };
    expect(seen.from).toBe(PROXY_ADDRESS);
    expect(seen.headers["x-weft-source-identity"]).toBe(WORKLOAD.spiffeId);
    await until("the record", 5_000, () => (records.length ? true : undefined));
    expect(records[0]).toMatchObject({ src: WORKLOAD.address, vip: VIP, vport: 80, frontend: "f-api-80", service: "acme/api", caller: WORKLOAD.spiffeId, server: "w-1", status: 200 });
    const counted = execFileSync("ip", ["netns", "exec", NODE, NFT, "list", "chain", "ip", "steer", "out"], { encoding: "utf8" });
    expect(Number(/counter packets (\d+)/.exec(counted)?.[1])).toBeGreaterThan(0);
  }, 30_000);

  it("refuses what the caller's policy does not allow, as a problem", async () => {
    const post = await curl(`http://${VIP}/api`, [], "POST");
    expect(post.status).toBe(403);
    expect(JSON.parse(post.body)).toMatchObject({ status: 403, detail: "no policy allows this request to acme/api" });
  }, 30_000);
});
