/**
 * The loader for real: maps pinned and reused across an agent restart with
 * their entries, programs attached through pinned links that outlive the
 * agent's handles and get the new program atomically, real TCP through the
 * tc programs (replies pass by conntrack alone), and a cleanup that leaves
 * nothing behind. Every namespace, veth, cgroup and pin is the test's own.
 */
import { execFile, execFileSync } from "node:child_process";
import { existsSync, readdirSync, unlinkSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { layouts, maps } from "@weft/codec";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ApplyEngine, MANAGED_MAPS } from "../../nodeagent/src/apply/index.ts";
import { closeFd, linkInfo, mapInfo, objectId, openPinned } from "../../nodeagent/src/kernel/index.ts";
import { cleanup as uninstall, KernelDatapath, L7_LISTEN_MAP, SOCK_PROGRAMS } from "../../nodeagent/src/loader/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, makeCgroup, makeNetns, makePinDir, makeVeth, type VethPair, toolsUnavailableReason } from "../support/kernel.ts";
import { canonical, kernelEntries, NODE, nodeState, W } from "./fixtures.ts";

const unavailable = (): string | null => toolsUnavailableReason([["ip", "-V"], ["bpftool", "version"]]);

const reason = unavailable();
const ALLOWED_PORT = 8080; // nodeState's egress allow to the host identity
const OTHER_PORT = 9090;

describe.skipIf(skipWithout("agent loader (root, bpf, cgroup2, iproute2, bpftool)", reason))("loader: pins, links, restart, cleanup", () => {
  const cleanup = new Cleanup();
  let pinDir: string;
  let cgroup: string;
  let ns: string;
  let veth: VethPair;

  beforeAll(async () => {
    pinDir = makePinDir(cleanup, "loader");
    cleanup.add("uninstall the agent's pins and links", () => void uninstall(pinDir));
    cgroup = makeCgroup(cleanup, "agent");
    ns = makeNetns(cleanup, "agent");
    veth = makeVeth(cleanup, "ag", ns, `${NODE.address}/30`, `${W.address}/30`);
    for (const port of [ALLOWED_PORT, OTHER_PORT]) {
      const server = net.createServer((s) => s.on("data", (d) => s.end(`echo:${d}`)));
      await new Promise<void>((resolve) => server.listen(port, NODE.address, resolve));
      cleanup.add(`close tcp server ${port}`, () => new Promise<void>((resolve) => server.close(() => resolve())));
    }
  });
  afterAll(() => cleanup.run());

  /** A TCP exchange from inside the workload's namespace: "echo:hi" or "timeout". */
  function connectFromWorkload(port: number): Promise<string> {
    const script = `const s=require("node:net").connect(${port},"${NODE.address}",()=>s.write("hi"));s.on("data",d=>{console.log(String(d));process.exit(0)});s.on("error",e=>{console.log("error:"+e.code);process.exit(0)});setTimeout(()=>{console.log("timeout");process.exit(0)},1500);`;
    return new Promise((resolve, reject) =>
      execFile("ip", ["netns", "exec", ns, process.execPath, "-e", script], { timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout.trim()))),
    );
  }

  const pinnedLinks = () => readdirSync(join(pinDir, "links")).sort();
  const linkIds = () => Object.fromEntries(pinnedLinks().map((name) => {
    const fd = openPinned(join(pinDir, "links", name));
    try {
      return [name, linkInfo(fd)];
    } finally {
      closeFd(fd);
    }
  }));
  let linksBefore: Record<string, { id: number; progId: number }> = {};
  let slotCookie: bigint | null = null;
  const pinnedInfo = (name: string) => {
    const fd = openPinned(join(pinDir, name));
    try {
      return mapInfo(fd);
    } finally {
      closeFd(fd);
    }
  };
  const pinnedId = (name: string) => pinnedInfo(name).id;

  it("loads, pins every map, attaches through pinned links, and polices real TCP with conntrack", async () => {
    const dp = KernelDatapath.load({ pinDir });
    try {
      expect(readdirSync(pinDir).filter((n) => n !== "links").sort()).toEqual([...Object.values(maps).map((m) => m.name), L7_LISTEN_MAP].sort());
      new ApplyEngine(dp.maps).apply(nodeState());
      expect(dp.attachCgroup(cgroup).map((r) => r.action)).toEqual(["created", "created", "created", "created"]);
      expect(dp.attachVeth(veth.host).map((r) => r.action)).toEqual(["created", "created"]);
      // The L7 socket lookup goes on the workload's namespace here: a test attaches only to namespaces it made.
      expect(dp.attachNetns(`/var/run/netns/${ns}`).action).toBe("created");
      // A listener in the L7 proxy's slot (the agent takes HAProxy's; any listening TCP socket will do here).
      const listener = net.createServer();
      await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
      cleanup.add("close the slot's listener", () => new Promise<void>((resolve) => listener.close(() => resolve())));
      dp.setL7Listener((listener as unknown as { _handle: { fd: number } })._handle.fd);
      slotCookie = dp.l7ListenerCookie();
      expect(slotCookie).not.toBeNull();
    } finally {
      dp.close();
    }
    expect(pinnedLinks()).toHaveLength(SOCK_PROGRAMS.length + 3);
    linksBefore = linkIds();
    // The workload may open 8080 only; its ingress is default-deny, so the SYN-ACK and data pass by conntrack.
    expect(await connectFromWorkload(ALLOWED_PORT)).toBe("echo:hi");
    expect(await connectFromWorkload(OTHER_PORT)).toBe("timeout");
  });

  it("restarts without a flush: same maps, same entries, nothing to apply, links get the new programs in place", async () => {
    const dp = KernelDatapath.load({ pinDir });
    try {
      // Same kernel map objects, not copies: the pins were reused.
      for (const id of MANAGED_MAPS) {
        const fd = openPinned(join(pinDir, maps[id].name));
        try {
          expect(mapInfo(fd).id).toBe(objectId(dp.maps[id].fd));
        } finally {
          closeFd(fd);
        }
      }
      const state = nodeState();
      for (const id of MANAGED_MAPS) expect(canonical(kernelEntries(dp.maps[id], id))).toEqual(canonical(state[id] as never));
      const r = new ApplyEngine(dp.maps).apply(state);
      expect(r.upserts + r.deletes).toBe(0);

      expect(dp.attachCgroup(cgroup).map((x) => x.action)).toEqual(["replaced", "replaced", "replaced", "replaced"]);
      expect(dp.attachVeth(veth.host).map((x) => x.action)).toEqual(["replaced", "replaced"]);
      expect(dp.attachNetns(`/var/run/netns/${ns}`).action).toBe("replaced");
      expect(dp.l7ListenerCookie()).toBe(slotCookie); // the proxy's listener stays in the kernel's lookup
      const after = linkIds();
      expect(Object.keys(after)).toEqual(Object.keys(linksBefore));
      for (const [name, info] of Object.entries(after)) {
        expect(info.id, name).toBe(linksBefore[name]!.id); // the same link ...
        expect(info.progId, name).not.toBe(linksBefore[name]!.progId); // ... now running this process's program
      }
      const tcxIngress = Object.keys(after).find((n) => n.endsWith("-ingress"))!;
      expect(after[tcxIngress]!.progId).toBe(objectId(dp.programFd("weft_from_wl")));
    } finally {
      dp.close();
    }
    expect(await connectFromWorkload(ALLOWED_PORT)).toBe("echo:hi");
    expect(await connectFromWorkload(OTHER_PORT)).toBe("timeout");
  });

  it("upgrades a pin directory that predates a map: the new map is created and pinned, the others are reused", async () => {
    // local_veth came after the first release; an agent upgraded in place finds every pin but that one.
    const missing = join(pinDir, maps.local_veth.name);
    const policyId = pinnedId(maps.policy.name);
    unlinkSync(missing);
    const dp = KernelDatapath.load({ pinDir });
    try {
      expect(existsSync(missing)).toBe(true);
      expect(objectId(dp.maps.policy.fd)).toBe(policyId);
      expect(canonical(kernelEntries(dp.maps.policy, "policy"))).toEqual(canonical(nodeState().policy as never));
    } finally {
      dp.close();
    }
  });

  it("upgrades over a counter map of another shape (a new reason grew it): replaced, counts restart, state maps and verdicts kept", async () => {
    const metricsPin = join(pinDir, maps.metrics.name);
    const policyId = pinnedId(maps.policy.name);
    // What an agent of the previous ABI pinned: the same counters with fewer (hook, reason) slots.
    unlinkSync(metricsPin);
    execFileSync("bpftool", ["map", "create", metricsPin, "type", "percpu_array", "key", "4", "value", String(maps.metrics.valueSize), "entries", "84", "name", maps.metrics.name]);
    const dp = KernelDatapath.load({ pinDir });
    try {
      expect(dp.replacedCounterMaps).toEqual([`${maps.metrics.name} (maxEntries 84, this agent needs ${maps.metrics.maxEntries})`]);
      expect(pinnedInfo(maps.metrics.name).maxEntries).toBe(maps.metrics.maxEntries);
      expect(objectId(dp.maps.policy.fd)).toBe(policyId);
      expect(canonical(kernelEntries(dp.maps.policy, "policy"))).toEqual(canonical(nodeState().policy as never));
      dp.attachCgroup(cgroup);
      dp.attachVeth(veth.host);
    } finally {
      dp.close();
    }
    expect(await connectFromWorkload(ALLOWED_PORT)).toBe("echo:hi");
    expect(await connectFromWorkload(OTHER_PORT)).toBe("timeout");
  });

  it("still refuses a state map of another shape: replacing it would flush the datapath", () => {
    const dir = makePinDir(cleanup, "loader-stale");
    cleanup.add("uninstall the stale pins", () => void uninstall(dir));
    const policyPin = join(dir, maps.policy.name);
    execFileSync("bpftool", ["map", "create", policyPin, "type", "hash", "key", String(maps.policy.keySize), "value", String(maps.policy.valueSize), "entries", "16", "name", maps.policy.name]);
    expect(() => KernelDatapath.load({ pinDir: dir })).toThrow(new RegExp(`^failed to reuse pinned maps: ${policyPin} has maxEntries 16, this agent needs ${maps.policy.maxEntries} \\(an agent of another ABI`));
    expect(existsSync(policyPin)).toBe(true);
  });

  it("detaches a veth's programs when its workload leaves", async () => {
    const dp = KernelDatapath.load({ pinDir });
    try {
      expect(dp.detachVeth(veth.host)).toBe(2);
      expect(pinnedLinks().filter((n) => n.startsWith("tcx-"))).toEqual([]);
      expect(await connectFromWorkload(OTHER_PORT)).toBe("echo:hi"); // no policy on the veth any more
      expect(dp.attachVeth(veth.host).map((x) => x.action)).toEqual(["created", "created"]);
    } finally {
      dp.close();
    }
    expect(await connectFromWorkload(OTHER_PORT)).toBe("timeout");
  });

  it("cleans up every link and pin, including links whose interface is gone", async () => {
    const dp = KernelDatapath.load({ pinDir });
    const gone = makeVeth(cleanup, "gn", ns, "198.18.21.1/30", "198.18.21.2/30");
    dp.attachVeth(gone.host);
    dp.close();
    execFileSync("ip", ["link", "del", gone.host]); // the workload vanished before the agent noticed
    const ids = Object.values(linkIds()).map((l) => l.id);
    expect(ids).toHaveLength(SOCK_PROGRAMS.length + 5);

    expect(uninstall(pinDir)).toEqual({ links: SOCK_PROGRAMS.length + 5, maps: Object.keys(maps).length + 1, removedDir: true });
    expect(existsSync(pinDir)).toBe(false);
    for (const id of ids) expect(() => execFileSync("bpftool", ["link", "show", "id", String(id)], { stdio: "pipe" })).toThrow();
    expect(JSON.parse(execFileSync("bpftool", ["-j", "cgroup", "show", cgroup], { encoding: "utf8" }).trim() || "[]")).toEqual([]);
    expect(await connectFromWorkload(OTHER_PORT)).toBe("echo:hi");
    expect(uninstall(pinDir)).toEqual({ links: 0, maps: 0, removedDir: true }); // idempotent
  });

  it("refuses to start when the objects and the codec disagree, before pinning anything", () => {
    const dir = join(pinDir, "..", `weft-test-${process.pid}-mismatch`);
    const policyKey = layouts["struct weft_policy_key"]!;
    const abi = {
      layouts: { ...layouts, "struct weft_policy_key": { ...policyKey, size: 16 } },
      maps: { ...maps, ct: { ...maps.ct, maxEntries: 1024 } },
    };
    expect(() => KernelDatapath.load({ pinDir: dir, abi })).toThrow(
      /^failed to check the datapath ABI: the BPF objects and the codec disagree \(rebuild both with npm run build:abi\): .*weft_policy\.o: struct weft_policy_key is 12 bytes, the codec writes 16;.*map weft_ct has maxEntries 131072, the codec expects 1024/,
    );
    expect(existsSync(dir)).toBe(false);
  });

  it("refuses a pin directory outside bpffs", () => {
    expect(() => KernelDatapath.load({ pinDir: "/tmp/weft-not-bpffs/pins" })).toThrow(/^failed to prepare pin directory \/tmp\/weft-not-bpffs\/pins: \/tmp is not on a bpf filesystem/);
    expect(existsSync("/tmp/weft-not-bpffs")).toBe(false);
  });
});
