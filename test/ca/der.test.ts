// The hand-written encoders of der.ts against plain reference readings of
// the same rules: times (RFC 5280 4.1.2.5) and TLV length forms.
import { describe, expect, it } from "vitest";
import { DerError, readTlv, time, tlv } from "@weft/pki/der";

/** The time encoding as toISOString spells it, the way der.ts first wrote it. */
function referenceTime(d: Date): Buffer {
  const digits = d.toISOString().slice(0, 19).replace(/[-T:]/g, "");
  const year = d.getUTCFullYear();
  const [tag, text] = year >= 1950 && year < 2050 ? [0x17, `${digits.slice(2)}Z`] : [0x18, `${digits}Z`];
  return Buffer.concat([Buffer.of(tag, text.length), Buffer.from(text, "ascii")]);
}

describe("time", () => {
  it("writes UTCTime through 2049 and GeneralizedTime outside 1950-2049, in whole seconds", () => {
    const dates = [
      "1950-01-01T00:00:00Z",
      "1949-12-31T23:59:59Z",
      "1999-09-09T09:09:09.999Z",
      "2026-11-25T19:05:07.123Z",
      "2049-12-31T23:59:59Z",
      "2050-01-01T00:00:00Z",
      "2100-02-28T12:00:00Z",
      "9999-12-31T23:59:59Z",
      "0500-06-15T01:02:03Z",
    ].map((s) => new Date(s));
    for (let ms = Date.UTC(2020, 0, 1); ms < Date.UTC(2060, 0, 1); ms += 86_400_000 * 97 + 3_723_456) dates.push(new Date(ms));
    for (const d of dates) expect(time(d).toString("hex"), d.toISOString()).toBe(referenceTime(d).toString("hex"));
  });

  it("refuses a year that four digits cannot hold", () => {
    expect(() => time(new Date(Date.UTC(10_000, 0, 1)))).toThrow(DerError);
  });
});

describe("tlv", () => {
  it("uses the shortest length form at every boundary and reads back whole", () => {
    const cases: [number, string][] = [
      [0, "0400"],
      [0x7f, "047f"],
      [0x80, "048180"],
      [0xff, "0481ff"],
      [0x100, "04820100"],
      [0xffff, "0482ffff"],
      [0x10000, "0483010000"],
    ];
    for (const [len, header] of cases) {
      const value = Buffer.alloc(len, 0xab);
      const out = tlv(0x04, value.subarray(0, len >> 1), value.subarray(len >> 1));
      expect(out.subarray(0, header.length / 2).toString("hex"), `length ${len}`).toBe(header);
      const t = readTlv(out, 0);
      expect([t.tag, t.end - t.valueStart, t.end]).toEqual([0x04, len, out.length]);
      expect(out.subarray(t.valueStart).equals(value)).toBe(true);
    }
  });
});
