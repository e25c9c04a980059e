import fc from "fast-check";
import type { Entry } from "@weft/codec";
import { normalizePolicy } from "../../api/src/compiler/normalize-policy.ts";
import { describe, expect, it } from "vitest";
import { intendedVerdict, lookupPolicy, type Flow } from "../support/policy-oracle.ts";

const LOCAL = [1001, 1002];
const PEERS = [1003, 1004, 2];
const PORTS = [80, 443];
const PROTOS = [6, 17];

const entry: fc.Arbitrary<Entry<"policy">> = fc
  .record({
    localIdentity: fc.constantFrom(...LOCAL),
    remoteIdentity: fc.constantFrom(0, ...PEERS),
    port: fc.constantFrom(0, ...PORTS),
    protocol: fc.constantFrom(0, ...PROTOS),
    direction: fc.constantFrom("ingress" as const, "egress" as const),
    action: fc.constantFrom("allow" as const, "deny" as const, "default-deny" as const),
    ruleId: fc.integer({ min: 1, max: 50 }),
  })
  .map(({ action, ruleId, ...key }) =>
    action === "default-deny"
      ? { key: { ...key, remoteIdentity: 0, port: 0, protocol: 0 }, value: { action, ruleId } }
      : { key, value: { action, ruleId } },
  );

const flows: Flow[] = LOCAL.flatMap((localIdentity) =>
  PEERS.flatMap((remoteIdentity) =>
    PORTS.flatMap((port) =>
      PROTOS.flatMap((protocol) => (["ingress", "egress"] as const).map((direction) => ({ localIdentity, remoteIdentity, port, protocol, direction }))),
    ),
  ),
);

describe("normalizePolicy", () => {
  it("makes the most-specific-hit lookup give deny precedence on every flow", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 25 }), (entries) => {
        const written = normalizePolicy(entries);
        for (const f of flows) expect(lookupPolicy(written, f)).toBe(intendedVerdict(entries, f));
      }),
      { numRuns: 500 },
    );
  });

  it("is needed: without it the most specific allow would beat a broader deny", () => {
    const raw: Entry<"policy">[] = [
      { key: { localIdentity: 1001, remoteIdentity: 0, port: 80, protocol: 0, direction: "ingress" }, value: { action: "deny", ruleId: 1 } },
      { key: { localIdentity: 1001, remoteIdentity: 1003, port: 0, protocol: 6, direction: "ingress" }, value: { action: "allow", ruleId: 2 } },
      { key: { localIdentity: 1001, remoteIdentity: 0, port: 0, protocol: 0, direction: "ingress" }, value: { action: "default-deny", ruleId: 0 } },
    ];
    const flow: Flow = { localIdentity: 1001, remoteIdentity: 1003, port: 80, protocol: 6, direction: "ingress" };
    expect(lookupPolicy(raw, flow)).toBe("policy-allow");
    expect(lookupPolicy(normalizePolicy(raw), flow)).toBe("policy-deny");
    expect(normalizePolicy(raw)).toContainEqual({ key: { ...raw[1]!.key, port: 80 }, value: { action: "deny", ruleId: 1 } });
  });

  it("gives every direction with an entry one at (any, any, any), and adds nothing to the others", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 25 }), (entries) => {
        const written = normalizePolicy(entries);
        const groups = new Set(written.map((e) => `${e.key.localIdentity}/${e.key.direction}`));
        for (const g of groups) {
          expect(written.some((e) => `${e.key.localIdentity}/${e.key.direction}` === g && e.key.remoteIdentity === 0 && e.key.port === 0 && e.key.protocol === 0)).toBe(true);
          expect(entries.some((e) => `${e.key.localIdentity}/${e.key.direction}` === g)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
    const allowOnly: Entry<"policy">[] = [
      { key: { localIdentity: 1001, remoteIdentity: 1003, port: 80, protocol: 6, direction: "egress" }, value: { action: "allow", ruleId: 5 } },
    ];
    expect(normalizePolicy(allowOnly)).toEqual([
      { key: { localIdentity: 1001, remoteIdentity: 0, port: 0, protocol: 0, direction: "egress" }, value: { action: "default-deny", ruleId: 0 } },
      allowOnly[0],
    ]);
  });

  it("is idempotent and independent of input order", () => {
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 20 }).chain((e) => fc.tuple(fc.constant(e), fc.shuffledSubarray(e, { minLength: e.length }))), ([entries, shuffled]) => {
        const once = normalizePolicy(entries);
        expect(normalizePolicy(once)).toEqual(once);
        expect(normalizePolicy(shuffled)).toEqual(once);
      }),
      { numRuns: 200 },
    );
  });

  it("refuses a default-deny marker anywhere but the catch-all key, and invalid entries", () => {
    expect(() =>
      normalizePolicy([{ key: { localIdentity: 1, remoteIdentity: 5, port: 0, protocol: 0, direction: "ingress" }, value: { action: "default-deny", ruleId: 0 } }]),
    ).toThrow(/default-deny belongs at/);
    expect(() =>
      normalizePolicy([{ key: { localIdentity: 1, remoteIdentity: 5, port: 99999, protocol: 0, direction: "ingress" }, value: { action: "allow", ruleId: 0 } }]),
    ).toThrow(/dport = 99999/);
  });
});
