/**
 * The socket LB must not hijack host traffic (bpf/README, socket LB and host
 * traffic). The agent's programs sit on a cgroup that holds host processes
 * too (by default the cgroup v2 root); a tenant's VIP may be any address,
 * also one a host process really talks to. So a connect()/sendmsg() made in
 * the host's network namespace goes where it asked, unless the operator opted
 * in (--lb-host-traffic); a workload, in a namespace of its own, is balanced.
 *
 * Topology (all the test's own, removed even on failure):
 *   two loopback aliases in the host's namespace: VIP (a real listener
 *     answers "vip") and BACKEND (the service's backend answers "backend");
 *   a workload namespace behind a veth, with a route to BACKEND only (no
 *     default route): unbalanced, its connect() to the VIP finds no route;
 *   a test cgroup both clients run in, with the agent's programs attached
 *     through the loader (pins in a private pin directory).
 */
import { execFile, execFileSync } from "node:child_process";
import dgram from "node:dgram";
import net from "node:net";
import { decodeEntries, protocols, type Entry } from "@weft/codec";
import { buildLbTable, lbSlotEntries } from "../../api/src/compiler/lb-table.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { netnsCookie } from "../../nodeagent/src/kernel/index.ts";
import { cleanup as uninstall, KernelDatapath } from "../../nodeagent/src/loader/index.ts";
import { deleteAll, readMetrics, writeEntries } from "../kernel/policy-harness.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, makeCgroup, makeNetns, makePinDir, makeVeth, toolsUnavailableReason } from "../support/kernel.ts";

const VIP = "198.19.77.10";
const BACKEND = "198.19.77.20";
const PORT = 7780; // the service's port, and the port of the real listener on the VIP
const BACKEND_PORT = 7781;
const WL_HOST = "198.19.78.1";
const WL_ADDR = "198.19.78.2";

const unavailable = (): string | null => toolsUnavailableReason([["ip", "-V"]]);

const reason = unavailable();

type Outcome = { reply: string; peer: string } | { error: string };

describe.skipIf(skipWithout("socket LB host traffic (root, bpf, cgroup2, iproute2)", reason))("socket LB leaves the host's connections alone unless opted in", () => {
  const cleanup = new Cleanup();
  let pinDir: string;
  let cgroup: string;
  let ns: string;
  let dp: KernelDatapath;

  beforeAll(async () => {
    pinDir = makePinDir(cleanup, "hostlb");
    cleanup.add("uninstall the pins and links", () => void uninstall(pinDir));
    cgroup = makeCgroup(cleanup, "hostlb");

    // Loopback aliases (this kernel may have no dummy driver), each removed on cleanup.
    for (const a of [VIP, BACKEND]) {
      execFileSync("ip", ["addr", "add", `${a}/32`, "dev", "lo"]);
      cleanup.add(`remove ${a} from lo`, () => void execFileSync("ip", ["addr", "del", `${a}/32`, "dev", "lo"]));
    }

    ns = makeNetns(cleanup, "hostlb");
    makeVeth(cleanup, "hl", ns, `${WL_HOST}/30`, `${WL_ADDR}/30`);
    // The backend only: an unbalanced connect() to the VIP from the workload finds no route.
    execFileSync("ip", ["-n", ns, "route", "add", `${BACKEND}/32`, "via", WL_HOST]);

    await tcpServer(VIP, PORT, "vip");
    await tcpServer(BACKEND, BACKEND_PORT, "backend");
    await udpServer(VIP, PORT, "vip");
    await udpServer(BACKEND, BACKEND_PORT, "backend");

    dp = KernelDatapath.load({ pinDir });
    cleanup.add("close the datapath", () => dp.close());
    publish(dp);
    dp.configureSockLb(false);
    dp.attachCgroup(cgroup);
  });
  afterAll(() => cleanup.run());

  function publish(d: KernelDatapath): void {
    const table = buildLbTable([{ backendId: 71, weight: 1 }]);
    writeEntries(d.maps.backend, "backend", [{ key: { backendId: 71 }, value: { address: BACKEND, port: BACKEND_PORT } }]);
    writeEntries(d.maps.lb_slot, "lb_slot", lbSlotEntries(7, table));
    const svc = (protocol: number): Entry<"svc"> => ({ key: { vip: VIP, port: PORT, protocol }, value: { tableId: 7, slots: table.length } });
    writeEntries(d.maps.svc, "svc", [svc(protocols.tcp), svc(protocols.udp)]);
  }

  async function tcpServer(address: string, port: number, name: string): Promise<void> {
    const server = net.createServer((s) => {
      s.on("error", () => {});
      s.end(name);
    });
    await new Promise<void>((resolve, reject) => server.once("error", reject).listen(port, address, resolve));
    cleanup.add(`close tcp ${name}`, () => new Promise<void>((resolve) => server.close(() => resolve())));
  }

  async function udpServer(address: string, port: number, name: string): Promise<void> {
    const socket = dgram.createSocket("udp4");
    socket.on("message", (_m, rinfo) => socket.send(name, rinfo.port, rinfo.address));
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, address, resolve);
    });
    cleanup.add(`close udp ${name}`, () => new Promise<void>((resolve) => socket.close(() => resolve())));
  }

  /**
   * One exchange with VIP:PORT from a process in the test cgroup, in the
   * host's namespace or the workload's: TCP connect() (connect4,
   * getpeername4) or an unconnected UDP sendto() (sendmsg4, recvmsg4).
   * Answers who replied and the peer the application saw, or the error code.
   */
  function probe(where: "host" | "workload", mode: "tcp" | "udp"): Promise<Outcome> {
    const script = `
const net=require("node:net"),dgram=require("node:dgram");
const done=(o)=>{console.log(JSON.stringify(o));process.exit(0)};
setTimeout(()=>done({error:"timeout"}),3000);
if(${JSON.stringify(mode)}==="tcp"){let d="";const s=net.connect(${PORT},${JSON.stringify(VIP)});
let peer="";s.on("connect",()=>peer=s.remoteAddress);s.on("data",(c)=>d+=c);s.on("end",()=>done({reply:d,peer}));s.on("error",(e)=>done({error:e.code}));}
else{const s=dgram.createSocket("udp4");s.on("error",(e)=>done({error:e.code}));
s.on("message",(m,r)=>done({reply:String(m),peer:r.address+":"+r.port}));
s.bind(0,()=>s.send("ping",${PORT},${JSON.stringify(VIP)},(e)=>e&&done({error:e.code})));}`;
    const inNs = where === "workload" ? `exec ip netns exec "$1" "$2" -e "$3"` : `exec "$2" -e "$3"`;
    return new Promise((resolve, reject) =>
      execFile("sh", ["-c", `echo $$ > "$0/cgroup.procs" && ${inNs}`, cgroup, ns, process.execPath, script], { timeout: 15_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`probe from ${where} (${mode}) failed: ${stderr || err.message}`)) : resolve(JSON.parse(stdout) as Outcome),
      ),
    );
  }

  const translated = (): bigint => readMetrics(dp.maps.metrics).get("sock/lb-translated") ?? 0n;
  const sockCfg = () => {
    const { keys, values } = dp.maps.sock_cfg.dump();
    return decodeEntries("sock_cfg", keys, values);
  };

  it("the agent writes the host's namespace cookie and the opt-in (off) into sock_cfg", () => {
    const cookie = netnsCookie();
    expect(cookie).toBeGreaterThan(0n);
    expect(sockCfg()).toEqual([{ key: { index: 0 }, value: { hostNetnsCookie: cookie, lbHostTraffic: false } }]);
  });

  it("by default, a host process connecting to the VIP reaches what it asked for, not the backend (TCP and UDP)", async () => {
    dp.configureSockLb(false);
    const before = translated();
    expect(await probe("host", "tcp")).toEqual({ reply: "vip", peer: VIP });
    expect(await probe("host", "udp")).toEqual({ reply: "vip", peer: `${VIP}:${PORT}` });
    expect(translated()).toBe(before);
  });

  it("by default, a workload in its own namespace is still balanced to the backend and sees the VIP (TCP and UDP)", async () => {
    dp.configureSockLb(false);
    const before = translated();
    expect(await probe("workload", "tcp")).toEqual({ reply: "backend", peer: VIP });
    expect(await probe("workload", "udp")).toEqual({ reply: "backend", peer: `${VIP}:${PORT}` });
    expect(translated()).toBe(before + 2n);
  });

  it("with --lb-host-traffic, the host's connect() and sendto() are balanced too", async () => {
    dp.configureSockLb(true);
    try {
      expect(await probe("host", "tcp")).toEqual({ reply: "backend", peer: VIP });
      expect(await probe("host", "udp")).toEqual({ reply: "backend", peer: `${VIP}:${PORT}` });
      expect(await probe("workload", "tcp")).toEqual({ reply: "backend", peer: VIP });
    } finally {
      dp.configureSockLb(false);
    }
    expect(await probe("host", "tcp")).toEqual({ reply: "vip", peer: VIP });
  });

  it("fails safe: with no configuration, or an unknown host cookie, nothing is rewritten", async () => {
    try {
      deleteAll(dp.maps.sock_cfg);
      expect(await probe("host", "tcp")).toEqual({ reply: "vip", peer: VIP });
      expect(await probe("host", "udp")).toEqual({ reply: "vip", peer: `${VIP}:${PORT}` });
      expect(await probe("workload", "tcp")).toEqual({ error: "ENETUNREACH" });

      dp.configureSockLb(false, 0n);
      expect(await probe("host", "tcp")).toEqual({ reply: "vip", peer: VIP });
      expect(await probe("workload", "tcp")).toEqual({ error: "ENETUNREACH" });
    } finally {
      dp.configureSockLb(false);
    }
  });

  it("an agent restart keeps every map (nothing flushed) and writes its setting over the old one", async () => {
    dp.configureSockLb(true);
    const before = { svc: dp.maps.svc.dump(), lb_slot: dp.maps.lb_slot.dump(), backend: dp.maps.backend.dump() };
    dp.close();
    dp = KernelDatapath.load({ pinDir });
    expect(dp.configureSockLb(false).lbHostTraffic).toBe(false);
    expect(dp.attachCgroup(cgroup).map((r) => r.action)).toEqual(["replaced", "replaced", "replaced", "replaced"]);
    expect({ svc: dp.maps.svc.dump(), lb_slot: dp.maps.lb_slot.dump(), backend: dp.maps.backend.dump() }).toEqual(before);
    expect(sockCfg()).toEqual([{ key: { index: 0 }, value: { hostNetnsCookie: netnsCookie(), lbHostTraffic: false } }]);
    expect(await probe("host", "tcp")).toEqual({ reply: "vip", peer: VIP });
    expect(await probe("workload", "tcp")).toEqual({ reply: "backend", peer: VIP });
  });
});
