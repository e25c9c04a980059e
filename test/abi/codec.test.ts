import fc from "fast-check";
import {
  decodeEntries,
  decodeKey,
  decodeKeys,
  decodeValue,
  decodeValues,
  encodeEntries,
  encodeKey,
  encodeKeys,
  encodeValue,
  encodeValues,
  layouts,
  mapNames,
  maps,
  metricsIndex,
  metricsSlot,
  verdictOf,
  constants,
  reasons,
  decodeFlowEvents,
  encodeFlowEvents,
  flowEventSize,
  parseIPv4,
  type MapId,
} from "@weft/codec";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { arbitraries, entryArb } from "./arbitraries.ts";

/** Maps with entries; the ring buffer is read as events (see "flow events" below). */
const mapIds = Object.values(maps)
  .filter((m) => m.kind !== "ringbuf")
  .map((m) => m.id as MapId);

describe("codec round trips", () => {
  it.each(mapIds)("decode(encode(entries)) = entries for %s", (map) => {
    fc.assert(
      fc.property(fc.array(entryArb(map), { maxLength: 40 }), (entries) => {
        const { keys, values, count } = encodeEntries(map, entries);
        expect(count).toBe(entries.length);
        expect(keys.length).toBe(entries.length * maps[map].keySize);
        expect(values.length).toBe(entries.length * maps[map].valueSize);
        expect(decodeEntries(map, keys, values)).toEqual(entries);
        expect(decodeKeys(map, encodeKeys(map, entries.map((e) => e.key)))).toEqual(entries.map((e) => e.key));
        expect(decodeValues(map, encodeValues(map, entries.map((e) => e.value)))).toEqual(entries.map((e) => e.value));
      }),
      { numRuns: 150 },
    );
  });

  it.each(mapIds)("single key and value forms agree with the batch form for %s", (map) => {
    fc.assert(
      fc.property(entryArb(map), (e) => {
        const batch = encodeEntries(map, [e]);
        expect(encodeKey(map, e.key)).toEqual(batch.keys);
        expect(encodeValue(map, e.value)).toEqual(batch.values);
        expect(decodeKey(map, batch.keys)).toEqual(e.key);
        expect(decodeValue(map, batch.values)).toEqual(e.value);
      }),
      { numRuns: 50 },
    );
  });

  it("round-trips batches larger than one wasm call (10,000 policy entries)", () => {
    const entries = fc.sample(entryArb("policy"), { numRuns: 10_000, seed: 42 });
    const { keys, values } = encodeEntries("policy", entries);
    expect(decodeEntries("policy", keys, values)).toEqual(entries);
  });

  it("writes addresses and ports in network byte order at the compiler's offsets", () => {
    const key = encodeKey("policy", { localIdentity: 0x01020304, remoteIdentity: 5, port: 0x1234, protocol: 6, direction: "egress" });
    const f = Object.fromEntries(layouts["struct weft_policy_key"]!.fields.map((x) => [x.name, x.offset]));
    expect([...key.subarray(f.dport!, f.dport! + 2)]).toEqual([0x12, 0x34]);
    expect([...key.subarray(f.local_identity!, f.local_identity! + 4)]).toEqual([4, 3, 2, 1]); // host order (little endian)
    expect(key[f.direction!]).toBe(constants.DIR_EGRESS);
    const ipc = encodeKey("ipcache", { prefix: "198.18.0.0/15" });
    expect([...ipc]).toEqual([15, 0, 0, 0, 198, 18, 0, 0]);
  });

  it("zeroes every padding byte", () => {
    const v = encodeValue("policy", { action: "allow", ruleId: 0xffffffff, mtls: true });
    const pad = layouts["struct weft_policy_value"]!.fields.find((x) => x.kind === "pad")!;
    expect([...v.subarray(pad.offset, pad.offset + pad.size)]).toEqual([0, 0]);
  });

  it("names every map once, within the kernel's 15 characters, with the weft_ prefix", () => {
    const names = Object.values(mapNames);
    expect(new Set(names).size).toBe(names.length);
    expect(names.length).toBe(mapIds.length + 1); // + weft_flow_ring
    for (const n of names) expect(n).toMatch(/^weft_[a-z0-9_]{1,10}$/);
    for (const id of mapIds) expect(maps[id].name).toBe(mapNames[id]);
  });

  it("maps metrics slots both ways and derives verdicts from reasons", () => {
    fc.assert(
      fc.property(arbitraries.metrics.key, (k) => {
        const slot = metricsSlot(metricsIndex(k.hook, k.reason as never));
        expect(slot.hook).toBe(k.hook);
        expect(slot.reason).toBe(k.reason);
        expect(slot.verdict).toBe(verdictOf(k.reason as never));
      }),
    );
    expect(verdictOf("policy-allow")).toBe("pass");
    expect(verdictOf("cross-tenant")).toBe("drop");
    expect(verdictOf("lb-translated")).toBe("pass");
    expect(verdictOf("transport-carried")).toBe("pass");
    expect(verdictOf("transport-refused")).toBe("drop");
    expect(metricsSlot(metricsIndex("transport", "transport-refused"))).toEqual({ hook: "transport", reason: "transport-refused", verdict: "drop" });
    expect(maps.metrics.maxEntries).toBe(constants.HOOK_COUNT * constants.REASON_COUNT);
  });
});

describe("the .d.ts matches the wasm", () => {
  const dts = readFileSync(new URL("../../wasm/pkg/weft_codec.d.ts", import.meta.url), "utf8");
  const block = (re: RegExp) => dts.match(re)?.[1] ?? "";

  it("declares exactly the constants the wasm exports", () => {
    const declared = block(/interface AbiConstants \{([^}]*)\}/).match(/[A-Z][A-Z0-9_]+/g) ?? [];
    expect(declared.sort()).toEqual(Object.keys(constants).sort());
  });

  it("declares exactly the reasons the ABI counts", () => {
    const declared = block(/export type Reason =([^;]*);/).match(/"[a-z0-9-]+"/g) ?? [];
    expect(declared.map((r) => JSON.parse(r) as string).sort()).toEqual(Object.keys(reasons).sort());
  });

  it("declares every map id", () => {
    const declared = block(/export interface MapTypes \{([\s\S]*?)\n\}/).match(/^  ([a-z0-9_]+):/gm) ?? [];
    expect(declared.map((d) => d.trim().slice(0, -1)).sort()).toEqual(mapIds.slice().sort());
  });
});

describe("codec refuses invalid input", () => {
  const policyKey = { localIdentity: 1001, remoteIdentity: 0, port: 80, protocol: 6, direction: "ingress" as const };
  const cases: [string, () => unknown, RegExp][] = [
    ["bad address", () => encodeKey("endpoint", { address: "300.1.1.1" }), /not a dotted-quad IPv4 address/],
    ["short address", () => encodeKey("endpoint", { address: "10.1.2" }), /not a dotted-quad/],
    ["address with leading zero", () => encodeKey("endpoint", { address: "10.01.2.3" }), /not a dotted-quad/],
    ["prefix over 32", () => encodeKey("ipcache", { prefix: "10.0.0.0/33" }), /prefixlen = 33 is out of range 0\.\.32/],
    ["prefix length not a number", () => encodeKey("ipcache", { prefix: "10.0.0.0/x" }), /no prefix length/],
    ["host bits beyond the prefix", () => encodeKeys("ipcache", [{ prefix: "10.0.0.0/8" }, { prefix: "10.0.0.1/8" }]), /entry 1: prefix 10\.0\.0\.1\/8 has bits set/],
    ["port over 65535", () => encodeKey("policy", { ...policyKey, port: 65536 }), /dport = 65536 is out of range 0\.\.65535/],
    ["negative port", () => encodeKey("policy", { ...policyKey, port: -1 }), /not an integer in 0\.\.4294967295/],
    ["fractional identity", () => encodeKey("policy", { ...policyKey, localIdentity: 1.5 }), /not an integer/],
    ["identity beyond u32", () => encodeValue("ipcache", { identity: 2 ** 32, tenant: 0 }), /not an integer/],
    ["local identity 0", () => encodeKey("policy", { ...policyKey, localIdentity: 0 }), /local_identity = 0 is out of range 1\.\./],
    ["unknown direction", () => encodeKey("policy", { ...policyKey, direction: "sideways" as never }), /direction.*"sideways"/],
    ["unknown action", () => encodeValue("policy", { action: "maybe" as never, ruleId: 1 }), /action.*"maybe"/],
    ["service protocol", () => encodeKey("svc", { vip: "198.18.0.1", port: 80, protocol: 1 }), /protocol = 1 is out of range 6\.\.17/],
    ["service port 0", () => encodeKey("svc", { vip: "198.18.0.1", port: 0, protocol: 6 }), /port = 0 is out of range 1\.\.65535/],
    ["table too large for a service", () => encodeValue("svc", { tableId: 1, slots: 16385 }), /slots = 16385 is out of range 0\.\.16384/],
    ["slot beyond the table", () => encodeKey("lb_slot", { tableId: 1, slot: 16384 }), /slot = 16384 is out of range/],
    ["backend id 0", () => encodeKey("backend", { backendId: 0 }), /backend_id = 0 is out of range 1\.\./],
    ["cookie not a bigint", () => encodeKey("sock_rev", { cookie: 5 as never, address: "127.0.0.1", port: 1 }), /cookie/],
    ["cookie beyond u64", () => encodeKey("sock_rev", { cookie: 2n ** 64n, address: "127.0.0.1", port: 1 }), /cookie/],
    ["unknown metrics reason", () => encodeKey("metrics", { hook: "sock", reason: "bogus" as never }), /metrics reason/],
    ["unknown map", () => encodeKeys("nope" as never, []), /unknown map "nope"/],
    ["bytes that are no whole entries", () => decodeKeys("policy", new Uint8Array(13)), /not whole entries/],
  ];
  it.each(cases)("%s", (_name, run, message) => {
    expect(run).toThrow(message);
  });

  it("reads an IPv4 address exactly when the dotted-quad pattern it replaced matches, to the same number", () => {
    // The pattern parseIPv4 matched before it scanned by hand: four octets 0-255, no leading zero.
    const octet = "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
    const pattern = new RegExp(`^${octet}\\.${octet}\\.${octet}\\.${octet}$`);
    const oracle = (text: string) => {
      const m = pattern.exec(text);
      return m ? ((+m[1]! << 24) | (+m[2]! << 16) | (+m[3]! << 8) | +m[4]!) >>> 0 : null;
    };
    const read = (text: string) => {
      try {
        return parseIPv4(text);
      } catch {
        return null;
      }
    };
    const part = fc.oneof(fc.integer({ min: 0, max: 999 }).map(String), fc.constantFrom("", "00", "01", "007", "0255", "256", "-1", "+1", " 1", "1 ", "1e2", "0x1"));
    const text = fc.oneof(
      fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join(".")),
      fc.array(part, { minLength: 1, maxLength: 6 }).map((p) => p.join(".")),
      fc.string({ unit: fc.constantFrom("0", "1", "2", "5", "9", ".", " ", "x"), maxLength: 18 }),
    );
    fc.assert(
      fc.property(text, (t) => {
        expect(read(t), t).toBe(oracle(t));
      }),
      { numRuns: 5_000 },
    );
    for (const t of ["0.0.0.0", "255.255.255.255", "198.18.0.1", "256.0.0.1", "1.2.3.256", "1.300.2.3", "1.2.3.1000", "10.1.2", "1.2.3.4.", ".1.2.3.4", "1..2.3", "1.2.3.04", "1.2.3.4\n", "１.2.3.4"]) expect(read(t), t).toBe(oracle(t));
    expect(parseIPv4("198.18.0.1")).toBe(0xc6120001);
  });

  it("names the failing entry in a batch", () => {
    const entries = [0, 1, 2].map((i) => ({ key: { ...policyKey, port: i === 2 ? 70000 : 80 }, value: { action: "allow" as const, ruleId: i } }));
    expect(() => encodeEntries("policy", entries)).toThrow(/policy entry 2: struct weft_policy_key\.dport = 70000/);
    expect(() => encodeEntries("policy", [{ key: policyKey, value: { action: "allow", ruleId: -3 } }])).toThrow(/ruleId/);
    const svc = (slots: number) => ({ key: { vip: "198.18.0.1", port: 80, protocol: 6 }, value: { tableId: 1, slots } });
    expect(() => encodeEntries("svc", [svc(1), svc(16385)])).toThrow(/svc entry 1: struct weft_svc_value\.slots = 16385 is out of range 0\.\.16384/);
  });
});

describe("flow events", () => {
  const layout = layouts["struct weft_flow_event"]!;
  const at = (name: string) => layout.fields.find((f) => f.name === name)!.offset;

  /** One event written field by field at the compiler's offsets, network order where the ABI says so. */
  function eventBytes(i: number): Uint8Array {
    const b = new Uint8Array(flowEventSize);
    const v = new DataView(b.buffer);
    v.setBigUint64(at("time_ns"), 1_000_000_000n + BigInt(i), true);
    v.setBigUint64(at("cookie"), 0xfeedn, true);
    v.setUint32(at("saddr"), 0xc6120102, false); // 198.18.1.2
    v.setUint32(at("daddr"), 0xc6120203, false); // 198.18.2.3
    v.setUint16(at("sport"), 40000 + i, false);
    v.setUint16(at("dport"), 5432, false);
    v.setUint8(at("protocol"), 6);
    v.setUint8(at("hook"), constants.HOOK_EGRESS);
    v.setUint8(at("reason"), constants.REASON_POLICY_DENY);
    v.setUint32(at("src_identity"), 300, true);
    v.setUint32(at("src_tenant"), 7, true);
    v.setUint32(at("dst_identity"), 301, true);
    v.setUint32(at("dst_tenant"), 7, true);
    v.setUint32(at("rule_id"), 4097, true);
    v.setUint32(at("ifindex"), 12, true);
    v.setUint32(at("len"), 74, true);
    return b;
  }

  it("decodes events laid back to back, across the codec's chunk size", () => {
    const n = 3000; // more than one call of the wasm decoder holds
    const all = new Uint8Array(n * flowEventSize);
    for (let i = 0; i < n; i++) all.set(eventBytes(i), i * flowEventSize);
    const events = decodeFlowEvents(all);
    expect(events).toHaveLength(n);
    expect(events[2999]).toEqual({
      timeNs: 1_000_002_999n,
      cookie: 0xfeedn,
      source: { address: "198.18.1.2", port: 42999, identity: 300, tenant: 7 },
      destination: { address: "198.18.2.3", port: 5432, identity: 301, tenant: 7 },
      protocol: 6,
      hook: "egress",
      reason: "policy-deny",
      verdict: "drop",
      ruleId: 4097,
      originalDestination: null,
      ifindex: 12,
      length: 74,
    });
  });

  it("shows the service address a socket-LB event carries, and audit as a pass", () => {
    const b = eventBytes(0);
    const v = new DataView(b.buffer);
    v.setUint8(at("hook"), constants.HOOK_SOCK);
    v.setUint8(at("reason"), constants.REASON_AUDIT);
    v.setUint32(at("orig_daddr"), 0xc6130001, false);
    v.setUint16(at("orig_dport"), 80, false);
    const [e] = decodeFlowEvents(b);
    expect(e!.hook).toBe("sock");
    expect(e!.reason).toBe("audit");
    expect(e!.verdict).toBe("pass");
    expect(e!.originalDestination).toEqual({ address: "198.19.0.1", port: 80 });
  });

  it("encodes the agent's own events (the transport's) byte for byte as the kernel lays them out", () => {
    const b = eventBytes(7);
    const v = new DataView(b.buffer);
    v.setUint8(at("hook"), constants.HOOK_TRANSPORT);
    v.setUint8(at("reason"), constants.REASON_TRANSPORT_REFUSED);
    const decoded = decodeFlowEvents(b);
    expect(decoded[0]).toMatchObject({ hook: "transport", reason: "transport-refused", verdict: "drop" });
    expect([...encodeFlowEvents(decoded)]).toEqual([...b]);
    // Across the codec's chunk size, and back.
    const many = Array.from({ length: 3000 }, (_, i) => ({ ...decoded[0]!, timeNs: BigInt(i), length: i }));
    expect(decodeFlowEvents(encodeFlowEvents(many))).toEqual(many);
  });

  it("refuses to encode an event out of the ABI's ranges, naming the event and member", () => {
    const [e] = decodeFlowEvents(eventBytes(0));
    expect(() => encodeFlowEvents([e!, { ...e!, destination: { ...e!.destination, port: 70000 } }])).toThrow(/flow event 1: struct weft_flow_event.dport = 70000 is out of range 0..65535/);
    expect(() => encodeFlowEvents([{ ...e!, hook: "nope" as never }])).toThrow(/flow event hook/);
    expect(() => encodeFlowEvents([{ ...e!, source: { ...e!.source, address: "198.18.1" } }])).toThrow(/source address/);
  });

  it("refuses bytes that are not whole events, and unknown codes", () => {
    expect(() => decodeFlowEvents(new Uint8Array(flowEventSize + 1))).toThrow(/not whole events/);
    const b = eventBytes(0);
    new DataView(b.buffer).setUint8(at("reason"), 200);
    expect(() => decodeFlowEvents(b)).toThrow(/unknown code 200/);
  });
});
