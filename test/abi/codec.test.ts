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
  type MapId,
} from "@weft/codec";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { arbitraries, entryArb } from "./arbitraries.ts";

const mapIds = Object.keys(maps) as MapId[];

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
    const v = encodeValue("policy", { action: "deny", ruleId: 0xffffffff });
    const pad = layouts["struct weft_policy_value"]!.fields.find((x) => x.kind === "pad")!;
    expect([...v.subarray(pad.offset, pad.offset + pad.size)]).toEqual([0, 0, 0]);
  });

  it("names every map once, within the kernel's 15 characters, with the weft_ prefix", () => {
    const names = Object.values(mapNames);
    expect(new Set(names).size).toBe(names.length);
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
    const declared = block(/export interface MapTypes \{([\s\S]*?)\n\}/).match(/^  ([a-z_]+):/gm) ?? [];
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

  it("names the failing entry in a batch", () => {
    const entries = [0, 1, 2].map((i) => ({ key: { ...policyKey, port: i === 2 ? 70000 : 80 }, value: { action: "allow" as const, ruleId: i } }));
    expect(() => encodeEntries("policy", entries)).toThrow(/policy entry 2: struct weft_policy_key\.dport = 70000/);
    expect(() => encodeEntries("policy", [{ key: policyKey, value: { action: "allow", ruleId: -3 } }])).toThrow(/ruleId/);
    const svc = (slots: number) => ({ key: { vip: "198.18.0.1", port: 80, protocol: 6 }, value: { tableId: 1, slots } });
    expect(() => encodeEntries("svc", [svc(1), svc(16385)])).toThrow(/svc entry 1: struct weft_svc_value\.slots = 16385 is out of range 0\.\.16384/);
  });
});
