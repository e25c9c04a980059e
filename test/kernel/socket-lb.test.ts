import { execFile } from "node:child_process";
import dgram from "node:dgram";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { decodeFlowEvents, maps, protocols, type Entry, type FlowEvent } from "@weft/codec";
import { buildLbTable, lbSlotEntries } from "../../api/src/compiler/lb-table.ts";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { attachCgroup, BpfObject, netnsCookie, RingBufferReader, type BpfMap } from "../../nodeagent/src/kernel/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { cgroupUnavailableReason, Cleanup, makeCgroup, objectPath } from "../support/kernel.ts";
import { deleteAll, mapOf, readMetrics, writeEntries } from "./policy-harness.ts";

// The VIP is a loopback address nobody binds: if translation ever failed,
// traffic would stay on this machine and simply find no listener.
const VIP = "127.77.0.1";
const VIP_PORT = 7777;
const CLIENT = fileURLToPath(new URL("./fixtures/lb-client.mjs", import.meta.url));

interface Backend {
  id: number;
  name: string;
  address: string;
  weight: number;
  port: number;
}

const reason = cgroupUnavailableReason();

describe.skipIf(skipWithout("cgroup v2 socket LB (root, bpf, cgroup2)", reason))("socket load balancing (cgroup/connect4 and friends)", () => {
  const cleanup = new Cleanup();
  const perTest = new Cleanup();
  let cgroup: string;
  let obj: BpfObject;
  let m: { svc: BpfMap; lbSlot: BpfMap; backend: BpfMap; metrics: BpfMap };
  let ring: RingBufferReader;
  const events = (): FlowEvent[] => decodeFlowEvents(Buffer.concat(ring.drain()));

  beforeAll(() => {
    cgroup = makeCgroup(cleanup, "lb");
    obj = BpfObject.load(objectPath("weft_sock"));
    cleanup.add("close weft_sock object", () => obj.close());
    for (const prog of ["weft_connect4", "weft_sendmsg4", "weft_recvmsg4", "weft_getpeername4"]) {
      const link = attachCgroup(obj, prog, cgroup);
      cleanup.add(`detach ${prog}`, () => link.detach());
    }
    // The client runs in the host's namespace: opt in (--lb-host-traffic), as this test is about the balancing
    // itself. test/kernel/lb-host-traffic.test.ts proves the default leaves host traffic alone.
    writeEntries(mapOf(obj, maps.sock_cfg), "sock_cfg", [{ key: { index: 0 }, value: { hostNetnsCookie: netnsCookie(), lbHostTraffic: true } }]);
    m = { svc: mapOf(obj, maps.svc), lbSlot: mapOf(obj, maps.lb_slot), backend: mapOf(obj, maps.backend), metrics: mapOf(obj, maps.metrics) };
    // Flow events on, with the first backend address known as a workload (identity 500 of tenant 3).
    writeEntries(mapOf(obj, maps.flow_cfg), "flow_cfg", [{ key: { index: 0 }, value: { intervalNs: 1000n, burst: 100_000, allowed: true } }]);
    writeEntries(mapOf(obj, maps.ipcache), "ipcache", [{ key: { prefix: "127.0.0.2/32" }, value: { identity: 500, tenant: 3 } }]);
    ring = new RingBufferReader(obj.mapFd(maps.flow_ring.name));
    cleanup.add("close the flow ring reader", () => ring.close());
  });
  beforeEach(() => void events()); // what an earlier case left
  afterEach(async () => {
    await perTest.run();
    deleteAll(m.svc);
    deleteAll(m.lbSlot);
    deleteAll(m.backend);
  });
  afterAll(() => cleanup.run());

  /** Writes backends, then the table, then the service that names it: never a dangling slot. */
  function publish(protocol: number, backends: Backend[], tableId = 1): Uint32Array {
    const table = buildLbTable(backends.map((b) => ({ backendId: b.id, weight: b.weight })));
    writeEntries(m.backend, "backend", backends.map((b) => ({ key: { backendId: b.id }, value: { address: b.address, port: b.port } })));
    writeEntries(m.lbSlot, "lb_slot", lbSlotEntries(tableId, table));
    const svc: Entry<"svc"> = { key: { vip: VIP, port: VIP_PORT, protocol }, value: { tableId, slots: table.length } };
    writeEntries(m.svc, "svc", [svc]);
    return table;
  }

  async function udpBackends(specs: Omit<Backend, "port">[]): Promise<Backend[]> {
    const out: Backend[] = [];
    for (const spec of specs) {
      const socket = dgram.createSocket("udp4");
      socket.on("message", (_msg, rinfo) => socket.send(spec.name, rinfo.port, rinfo.address));
      await new Promise<void>((resolve) => socket.bind(0, spec.address, resolve));
      perTest.add(`close backend ${spec.name}`, () => new Promise<void>((resolve) => socket.close(() => resolve())));
      out.push({ ...spec, port: socket.address().port });
    }
    return out;
  }

  /** Runs the client with its shell moved into the test cgroup before exec. */
  function client(...args: string[]): Promise<{ backends?: Record<string, number>; peers?: Record<string, number>; peer?: string; reply?: string }> {
    return new Promise((resolve, reject) => {
      const child = execFile(
        "sh",
        ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$1" "$2" "$3" "$4" "$5" "$6"', cgroup, process.execPath, CLIENT, ...args],
        { timeout: 150_000, maxBuffer: 1 << 20 },
        (err, stdout, stderr) => (err ? reject(new Error(`lb-client ${args.join(" ")} failed: ${stderr || err.message}`)) : resolve(JSON.parse(stdout))),
      );
      perTest.add("stop lb-client", () => void (child.exitCode === null && child.kill("SIGKILL")));
    });
  }

  it("rewrites a TCP connect() to the backend and still shows the VIP as the peer", async () => {
    const server = net.createServer((s) => s.end("b1"));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.2", resolve));
    perTest.add("close tcp backend", () => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as net.AddressInfo).port;
    publish(protocols.tcp, [{ id: 11, name: "b1", address: "127.0.0.2", weight: 1, port }]);

    const out = await client("tcp", VIP, String(VIP_PORT));
    expect(out).toEqual({ peer: VIP, reply: "b1" });
    const [e, ...rest] = events();
    expect(rest).toEqual([]);
    expect(e).toMatchObject({
      hook: "sock",
      reason: "lb-translated",
      verdict: "pass",
      protocol: protocols.tcp,
      destination: { address: "127.0.0.2", port, identity: 500, tenant: 3 },
      originalDestination: { address: VIP, port: VIP_PORT },
    });
    expect(e!.cookie).toBeGreaterThan(0n);
  });

  it("refuses connect() to a service without backends instead of sending to the VIP", async () => {
    writeEntries(m.svc, "svc", [{ key: { vip: VIP, port: VIP_PORT, protocol: protocols.tcp }, value: { tableId: 9, slots: 0 } }]);
    const before = readMetrics(m.metrics).get("sock/lb-no-backend") ?? 0n;
    await expect(client("tcp", VIP, String(VIP_PORT))).rejects.toThrow(/EPERM/);
    expect(readMetrics(m.metrics).get("sock/lb-no-backend")).toBe(before + 1n);
    expect(events().map((e) => [e.reason, e.verdict, e.destination.address, e.originalDestination])).toEqual([
      ["lb-no-backend", "drop", VIP, { address: VIP, port: VIP_PORT }],
    ]);
  });

  it("balances unconnected UDP per datagram and shows replies as coming from the VIP", async () => {
    const backends = await udpBackends([
      { id: 21, name: "u1", address: "127.0.0.2", weight: 1 },
      { id: 22, name: "u2", address: "127.0.0.3", weight: 1 },
    ]);
    publish(protocols.udp, backends);
    const out = await client("udp-sendto", VIP, String(VIP_PORT), "400");
    expect(out.peers).toEqual({ [`${VIP}:${VIP_PORT}`]: 400 });
    expect(Object.keys(out.backends ?? {}).sort()).toEqual(["u1", "u2"]);
    // One socket, 400 datagrams: one event per backend it started sending to, not one per datagram.
    expect(events().map((e) => e.destination.address).sort()).toEqual(["127.0.0.2", "127.0.0.3"]);
  });

  it("splits 100,000 connect() calls by weight within one point, and weight 0 gets none", async () => {
    const backends = await udpBackends([
      { id: 31, name: "w10", address: "127.0.0.2", weight: 100 },
      { id: 32, name: "w30", address: "127.0.0.3", weight: 300 },
      { id: 33, name: "w60", address: "127.0.0.4", weight: 600 },
      { id: 34, name: "w0", address: "127.0.0.5", weight: 0 },
    ]);
    publish(protocols.udp, backends);
    const total = 100_000;
    const before = readMetrics(m.metrics).get("sock/lb-translated") ?? 0n;
    const out = await client("udp-connect", VIP, String(VIP_PORT), String(total));

    expect(out.peers).toEqual({ [`${VIP}:${VIP_PORT}`]: total });
    expect(readMetrics(m.metrics).get("sock/lb-translated")).toBe(before + BigInt(total));
    const counts = out.backends ?? {};
    expect(counts.w0 ?? 0).toBe(0);
    for (const b of backends.filter((x) => x.weight > 0)) {
      const share = (counts[b.name] ?? 0) / total;
      expect(Math.abs(share - b.weight / 1000), `${b.name} got ${share}`).toBeLessThan(0.01);
    }
  }, 180_000);
});
