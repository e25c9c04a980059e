/**
 * The agent's flow model without the kernel: verdicts in the API's words
 * for every reason the codec knows, the last-N ring, the interval's
 * aggregates (keys, counts, bytes, the row bound) and its samples (drops
 * and audits kept first when there are too many, the rest counted lost).
 */
import { decodeFlowEvents, reasons, verdictOf, type Reason } from "@weft/codec";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AGGREGATES_MAX, SAMPLES_MAX } from "../../nodeagent/src/flows/aggregate.ts";
import { RecordRing } from "../../nodeagent/src/flows/buffer.ts";
import { flowOf, flowVerdict } from "../../nodeagent/src/flows/flow.ts";
import { addEvent, aggregator, encodeEvents, event, fixedClock } from "./flows-support.ts";

describe("verdicts", () => {
  it("audit -> audit, lb-translated -> translated, other passes -> forwarded, drops -> dropped, for every reason of the ABI", () => {
    const all = Object.keys(reasons) as Reason[];
    expect(all).toContain("audit");
    const mapped = Object.fromEntries(all.map((r) => [r, flowVerdict(verdictOf(r), r)]));
    for (const r of all) {
      const want = verdictOf(r) === "drop" ? "dropped" : r === "audit" ? "audit" : r === "lb-translated" ? "translated" : "forwarded";
      expect(mapped[r], r).toBe(want);
    }
    expect(mapped).toMatchObject({ "policy-deny": "dropped", "cross-tenant": "dropped", "lb-no-backend": "dropped", "policy-allow": "forwarded", "ct-reply": "forwarded" });
  });

  it("a sample carries wall time in ms, both endpoints, and originalDst only when the event has one", () => {
    const tc = flowOf(event({ timeNs: 1_500_000_123n, reason: "policy-deny", ruleId: 9 }), fixedClock);
    expect(tc.sample).toEqual({
      time: "2026-12-06T12:00:01.500Z",
      hook: "ingress",
      verdict: "dropped",
      reason: "policy-deny",
      ruleId: 9,
      protocol: 6,
      src: { address: "198.18.1.2", port: 40000, identity: 11, tenant: 1 },
      dst: { address: "198.18.2.2", port: 8080, identity: 22, tenant: 1 },
    });
    const sock = flowOf(event({ hook: "sock", reason: "lb-translated", originalDestination: { address: "198.18.40.1", port: 80 } }), fixedClock);
    expect(sock.sample).toMatchObject({ hook: "sock", verdict: "translated", originalDst: { address: "198.18.40.1", port: 80 } });
  });
});

describe("the last-N ring", () => {
  it("the test encoder writes what decodeFlowEvents reads back", () => {
    const events = [
      event({ reason: "policy-deny", ruleId: 0xfffffffe, source: { identity: 0xffffffff, port: 65535 }, timeNs: 2n ** 63n + 5n, cookie: 7n }),
      event({ hook: "sock", reason: "lb-translated", originalDestination: { address: "198.18.40.1", port: 80 }, length: 0, ifindex: 0 }),
      event({ hook: "egress", reason: "audit", protocol: 17, destination: { address: "255.254.253.252", tenant: 9 } }),
    ];
    expect(decodeFlowEvents(encodeEvents(events))).toEqual(events);
  });

  it("keeps exactly the newest N records, oldest first, whatever was pushed and however", () => {
    const size = 4;
    const rec = (i: number) => [i & 255, (i >> 8) & 255, 0xaa, 0x55];
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 12 }), fc.integer({ min: 0, max: 80 }), (capacity, pushes, limit) => {
        const ring = new RecordRing(capacity, size);
        let pushed = 0;
        for (const n of pushes) {
          ring.push(Uint8Array.from(Array.from({ length: n }, (_, j) => rec(pushed + j)).flat()));
          pushed += n;
        }
        const held = Math.min(capacity, pushed);
        expect(ring.size).toBe(held);
        const n = Math.min(limit, held);
        expect([...ring.last(limit)]).toEqual(Array.from({ length: n }, (_, i) => rec(pushed - n + i)).flat());
        expect(ring.last().length).toBe(held * size);
      }),
    );
    expect(() => new RecordRing(0, size)).toThrow(/capacity 0/);
    expect(() => new RecordRing(2, size).push(new Uint8Array(5))).toThrow(/not whole records/);
  });
});

describe("interval aggregates", () => {
  it("one row per (src tenant, src identity, dst tenant, dst identity, dst port, protocol, verdict, reason, rule) with counts and bytes", () => {
    const agg = aggregator(Date.UTC(2026, 11, 6, 12));
    const same = () => event({ reason: "policy-deny", ruleId: 3, length: 100, source: { port: 40000 + Math.floor(Math.random() * 1000), address: `198.18.1.${2 + Math.floor(Math.random() * 50)}` } });
    for (let i = 0; i < 5; i++) addEvent(agg, same());
    // Each of these differs from the five in one field of the key.
    const others = [
      event({ reason: "policy-deny", ruleId: 4, length: 100 }),
      event({ reason: "default-deny", ruleId: 3, length: 100 }),
      event({ reason: "policy-deny", ruleId: 3, length: 100, protocol: 17 }),
      event({ reason: "policy-deny", ruleId: 3, length: 100, destination: { port: 8081 } }),
      event({ reason: "policy-deny", ruleId: 3, length: 100, destination: { identity: 23 } }),
      event({ reason: "policy-deny", ruleId: 3, length: 100, destination: { tenant: 2 } }),
      event({ reason: "policy-deny", ruleId: 3, length: 100, source: { identity: 12 } }),
      event({ reason: "policy-deny", ruleId: 3, length: 100, source: { tenant: 2 } }),
    ];
    for (const e of others) addEvent(agg, e);
    const sealed = agg.seal(Date.UTC(2026, 11, 6, 12, 0, 1));
    expect(sealed.aggregates).toHaveLength(1 + others.length);
    const five = sealed.aggregates.filter((a) => a.count === 5);
    expect(five).toEqual([
      {
        start: "2026-12-06T12:00:00.000Z",
        end: "2026-12-06T12:00:01.000Z",
        srcIdentity: 11,
        srcTenant: 1,
        dstIdentity: 22,
        dstTenant: 1,
        dstPort: 8080,
        protocol: 6,
        verdict: "dropped",
        reason: "policy-deny",
        ruleId: 3,
        count: 5,
        bytes: 500,
      },
    ]);
    expect(sealed.aggregates.reduce((n, a) => n + a.count, 0)).toBe(5 + others.length);
    expect(sealed.samples).toHaveLength(5 + others.length);
    expect(sealed.lost).toBe(0);
    // The next interval starts empty, where this one ended.
    const next = agg.seal(Date.UTC(2026, 11, 6, 12, 0, 2));
    expect(next).toEqual({ aggregates: [], samples: [], lost: 0 });
  });

  it("keeps drops and audits before allowed samples past the bound, counting the rest as lost", () => {
    const agg = aggregator(0, { aggregates: AGGREGATES_MAX, samples: 10 });
    for (let i = 0; i < 8; i++) addEvent(agg, event({ reason: "policy-allow" }));
    for (let i = 0; i < 6; i++) addEvent(agg, event({ reason: i % 2 ? "audit" : "policy-deny" }));
    for (let i = 0; i < 3; i++) addEvent(agg, event({ reason: "policy-allow" }));
    const sealed = agg.seal(1000);
    const byVerdict = (v: string) => sealed.samples.filter((s) => s.verdict === v).length;
    expect({ dropped: byVerdict("dropped"), audit: byVerdict("audit"), forwarded: byVerdict("forwarded") }).toEqual({ dropped: 3, audit: 3, forwarded: 4 });
    // 17 flows, 10 samples: 7 lost; the aggregates still count all 17.
    expect(sealed.lost).toBe(7);
    expect(sealed.aggregates.reduce((n, a) => n + a.count, 0)).toBe(17);
    // Samples go out in time order.
    expect(sealed.samples.map((s) => s.time)).toEqual([...sealed.samples.map((s) => s.time)].sort());
  });

  it(`at most ${AGGREGATES_MAX} rows and ${SAMPLES_MAX} samples per interval by default; a flow past either is lost once, never merged into another row`, () => {
    const agg = aggregator(0);
    const n = AGGREGATES_MAX + 10;
    for (let i = 0; i < n; i++) addEvent(agg, event({ reason: "default-deny", destination: { port: 1 + i } }));
    const sealed = agg.seal(1000);
    expect(sealed.aggregates).toHaveLength(AGGREGATES_MAX);
    expect(sealed.samples).toHaveLength(SAMPLES_MAX);
    expect(sealed.aggregates.every((a) => a.count === 1)).toBe(true);
    // The last n - SAMPLES_MAX flows had no sample slot, the last 10 of them no row either: each is lost once.
    expect(sealed.lost).toBe(n - SAMPLES_MAX);
    // A flow with a sample but no row is lost too.
    const narrow = aggregator(0, { aggregates: 3, samples: 100 });
    for (let i = 0; i < 5; i++) addEvent(narrow, event({ destination: { port: 1 + i } }));
    expect(narrow.seal(1000)).toMatchObject({ aggregates: { length: 3 }, samples: { length: 5 }, lost: 2 });
  });
});
