// @weft/pki's DER encoder read back by OpenSSL: `openssl asn1parse` parses
// every encoded value (tag, header length, content length, content), and
// OpenSSL's certificate parser (node:crypto X509Certificate) reads the times
// inside a certificate back as dates. A wrong tag, a non-minimal or wrong
// length, a negative INTEGER, a wrong OID arc or a time in the wrong century
// fails here.
import { execFileSync } from "node:child_process";
import { X509Certificate, generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  DerError,
  bitString,
  bool,
  ctx,
  decodeOid,
  octetString,
  oid,
  readTlv,
  seq,
  smallInt,
  time,
  tlv,
  uintBytes,
  utf8,
  value,
} from "@weft/pki/der";
import { OID_EXTENSION_REQUEST } from "@weft/pki/pkcs10";
import { ECDSA_WITH_SHA256, OID, certificate, name, validity, VERSION_3 } from "@weft/pki/x509";

interface Asn1Line {
  offset: number;
  depth: number;
  /** Header length: tag and length octets. */
  hl: number;
  /** Content length. */
  length: number;
  constructed: boolean;
  /** openssl's name for the tag: "INTEGER", "UTCTIME", "cont [ 3 ]"… */
  type: string;
  /** What openssl prints after the type's colon, if anything. */
  text: string | undefined;
}

const LINE = /^\s*(\d+):d=(\d+)\s+hl=(\d+)\s+l=\s*(\d+)\s+(prim|cons):\s(.*)$/;

/** `openssl asn1parse` of DER; throws (openssl exits non-zero) when the DER is malformed. */
function asn1parse(der: Uint8Array): Asn1Line[] {
  const out = execFileSync("openssl", ["asn1parse", "-inform", "DER"], {
    input: der,
    encoding: "utf8",
    stdio: ["pipe", "pipe", "pipe"],
    maxBuffer: 16 << 20,
  });
  return out
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => {
      const m = LINE.exec(l);
      if (!m) throw new Error(`unexpected asn1parse line: ${l}`);
      // openssl marks a hex-dumped content "[HEX DUMP]:" (OCTET STRING and the like).
      const rest = m[6]!.replace(/\s*\[HEX DUMP\]:/, ":");
      const colon = rest.indexOf(":");
      return {
        offset: Number(m[1]),
        depth: Number(m[2]),
        hl: Number(m[3]),
        length: Number(m[4]),
        constructed: m[5] === "cons",
        type: (colon < 0 ? rest : rest.slice(0, colon)).trim(),
        text: colon < 0 ? undefined : rest.slice(colon + 1),
      };
    });
}

/** The values directly inside one SEQUENCE, as openssl reads them. */
function members(der: Uint8Array): Asn1Line[] {
  const lines = asn1parse(der);
  expect(lines[0]).toMatchObject({ depth: 0, type: "SEQUENCE", constructed: true, hl: readTlv(der, 0).valueStart });
  expect(lines[0]!.hl + lines[0]!.length).toBe(der.length);
  return lines.filter((l) => l.depth === 1);
}

const pad2 = (n: number): string => String(n).padStart(2, "0");

describe("openssl asn1parse as the reference reader", () => {
  it("refuses truncated DER and reports a non-minimal length, so the checks below can fail", () => {
    expect(() => asn1parse(Buffer.from("3005020101", "hex"))).toThrow();
    expect(asn1parse(Buffer.from("04810100", "hex"))[0]).toMatchObject({ hl: 3, length: 1 });
  });
});

describe("time", () => {
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

  it("writes UTCTime for 1950-2049 and GeneralizedTime otherwise, in whole seconds with Z (RFC 5280 4.1.2.5)", () => {
    const read = members(seq(...dates.map(time)));
    expect(read).toHaveLength(dates.length);
    dates.forEach((d, i) => {
      const y = d.getUTCFullYear();
      const utc = y >= 1950 && y < 2050;
      const rest = `${pad2(d.getUTCMonth() + 1)}${pad2(d.getUTCDate())}${pad2(d.getUTCHours())}${pad2(d.getUTCMinutes())}${pad2(d.getUTCSeconds())}Z`;
      const text = utc ? `${pad2(y % 100)}${rest}` : `${String(y).padStart(4, "0")}${rest}`;
      expect(read[i], d.toISOString()).toMatchObject({ type: utc ? "UTCTIME" : "GENERALIZEDTIME", hl: 2, length: text.length, text });
    });
  });

  it("reads back as the same second when OpenSSL parses it as a certificate's validity", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = publicKey.export({ type: "spki", format: "der" });
    const subject = name([[OID.commonName, "der.test"]]);
    for (const d of dates) {
      const notAfter = new Date(Math.min(d.getTime() + 86_400_000, Date.UTC(9999, 11, 31, 23, 59, 59)));
      const tbs = seq(VERSION_3, smallInt(1), ECDSA_WITH_SHA256, subject, validity(d, notAfter), subject, spki);
      const cert = new X509Certificate(certificate(tbs, ECDSA_WITH_SHA256, sign("sha256", tbs, { key: privateKey, dsaEncoding: "der" })));
      expect(Date.parse(cert.validFrom), `${d.toISOString()} read as ${cert.validFrom}`).toBe(Math.floor(d.getTime() / 1000) * 1000);
      expect(Date.parse(cert.validTo), `${notAfter.toISOString()} read as ${cert.validTo}`).toBe(Math.floor(notAfter.getTime() / 1000) * 1000);
    }
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
      const content = Buffer.alloc(len, 0xab);
      const out = tlv(0x04, content.subarray(0, len >> 1), content.subarray(len >> 1));
      const [line, ...more] = asn1parse(out);
      expect(more, `length ${len}`).toEqual([]);
      expect(line, `length ${len}`).toMatchObject({ type: "OCTET STRING", hl: header.length / 2, length: len });
      expect(out.subarray(0, header.length / 2).toString("hex"), `length ${len}`).toBe(header);
      const t = readTlv(out, 0);
      expect([t.tag, t.end - t.valueStart, t.end]).toEqual([0x04, len, out.length]);
      expect(out.subarray(t.valueStart).equals(content)).toBe(true);
    }
  });

  it("nests constructed values with their lengths", () => {
    const inner = seq(octetString(Buffer.alloc(200, 1)), seq());
    const read = asn1parse(seq(ctx(3, inner), ctx(0, smallInt(2))));
    expect(read.map((l) => [l.depth, l.type, l.hl, l.length])).toEqual([
      [0, "SEQUENCE", 3, 3 + 3 + 3 + 200 + 2 + 5],
      [1, "cont [ 3 ]", 3, 3 + 3 + 200 + 2],
      [2, "SEQUENCE", 3, 3 + 200 + 2],
      [3, "OCTET STRING", 3, 200],
      [3, "SEQUENCE", 2, 0],
      [1, "cont [ 0 ]", 2, 3],
      [2, "INTEGER", 2, 1],
    ]);
  });
});

describe("primitives", () => {
  it("encodes INTEGERs minimally and never negative", () => {
    const small = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x7fff_ffff];
    const unsigned = ["00", "0000", "000080", "0001", "7f", "80", "ff00", "0000ff01", "40" + "11".repeat(15), "c0" + "22".repeat(15)];
    const read = members(seq(...small.map(smallInt), ...unsigned.map((h) => uintBytes(Buffer.from(h, "hex")))));
    const expected = [...small.map((n) => BigInt(n)), ...unsigned.map((h) => BigInt(`0x${h}`))];
    expect(read).toHaveLength(expected.length);
    expected.forEach((n, i) => {
      const hex = n.toString(16).toUpperCase();
      const text = hex.length % 2 ? `0${hex}` : hex;
      // Minimal two's complement: one sign bit more than the value's bits.
      const bytes = Math.floor(n.toString(2).length / 8) + 1;
      expect(read[i], `INTEGER ${hex}`).toMatchObject({ type: "INTEGER", text, length: n === 0n ? 1 : bytes });
    });
    expect(() => smallInt(-1)).toThrow(DerError);
    expect(() => smallInt(0x8000_0000)).toThrow(DerError);
  });

  it("encodes OBJECT IDENTIFIERs that openssl names or spells arc by arc", () => {
    const named: [string, string][] = [
      [OID.ecdsaWithSha256, "ecdsa-with-SHA256"],
      [OID.organizationName, "organizationName"],
      [OID.commonName, "commonName"],
      [OID.basicConstraints, "X509v3 Basic Constraints"],
      [OID.keyUsage, "X509v3 Key Usage"],
      [OID.extKeyUsage, "X509v3 Extended Key Usage"],
      [OID.subjectKeyIdentifier, "X509v3 Subject Key Identifier"],
      [OID.authorityKeyIdentifier, "X509v3 Authority Key Identifier"],
      [OID.subjectAltName, "X509v3 Subject Alternative Name"],
      [OID.serverAuth, "TLS Web Server Authentication"],
      [OID.clientAuth, "TLS Web Client Authentication"],
      [OID_EXTENSION_REQUEST, "Extension Request"],
    ];
    // Unregistered arcs, so openssl prints them dotted: multi-byte arcs at
    // each 7-bit boundary, a first arc of 2 with a second above 39, the largest safe arc.
    const dotted = ["1.3.6.1.4.1.99999.1.127.128.16383.16384.2097151.2097152", "2.999.3", "2.25.9007199254740991"];
    const all = [...named, ...dotted.map((d): [string, string] => [d, d])];
    const encoded = all.map(([id]) => oid(id));
    const read = members(seq(...encoded));
    expect(read.map((l) => [l.type, l.text])).toEqual(all.map(([, text]) => ["OBJECT", text]));
    encoded.forEach((der, i) => expect(decodeOid(value(der, readTlv(der, 0)))).toBe(all[i]![0]));
    for (const bad of ["1", "1.2.x", "1.-2.3", "1.2.9007199254740992"]) expect(() => oid(bad), bad).toThrow(DerError);
  });

  it("encodes BOOLEAN, UTF8String, OCTET STRING, BIT STRING and context tags", () => {
    const read = members(
      seq(bool(true), bool(false), utf8("Weft"), utf8("héllo ✓"), octetString(Buffer.of(0xab, 0x01)), bitString(Buffer.of(0x12, 0x34, 0x56)), ctx(3, seq()), tlv(0x86, Buffer.from("spiffe://td/x", "ascii"))),
    );
    expect(read.map((l) => [l.type, l.length, l.text ?? null, l.constructed])).toEqual([
      ["BOOLEAN", 1, "255", false],
      ["BOOLEAN", 1, "0", false],
      ["UTF8STRING", 4, "Weft", false],
      ["UTF8STRING", Buffer.byteLength("héllo ✓"), "héllo ✓", false],
      ["OCTET STRING", 2, "AB01", false],
      // BIT STRING: one unused-bits byte, then the bytes.
      ["BIT STRING", 4, null, false],
      ["cont [ 3 ]", 2, null, true],
      ["cont [ 6 ]", 13, null, false],
    ]);
  });
});
