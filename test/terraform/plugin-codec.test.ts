// The DynamicValue codec: msgpack round trips for every cty type (unknowns
// and nesting included), the exact bytes cty writes and reads, JSON input,
// and what happens to values that do not fit their type.
import { decode as msgpackDecode, encode as msgpackEncode, ExtData } from "@msgpack/msgpack";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { UNKNOWN, type Diagnostic, type TfObject, type TfValue } from "../../terraform/src/framework.ts";
import { ValueError, decodeDynamicValue, encodeDynamicValue, formatPath } from "../../terraform/src/plugin/codec.ts";
import { type CtyType, parseType, typeJson } from "../../terraform/src/plugin/cty.ts";

const S: CtyType = { kind: "string" };
const N: CtyType = { kind: "number" };
const B: CtyType = { kind: "bool" };
const D: CtyType = { kind: "dynamic" };
const obj = (attrs: Record<string, CtyType>): CtyType => ({ kind: "object", attributes: new Map(Object.entries(attrs)) });

function encode(v: TfValue, t: CtyType): { bytes: Buffer; diags: Diagnostic[] } {
  const diags: Diagnostic[] = [];
  const { msgpack } = encodeDynamicValue(v, t, diags);
  return { bytes: msgpack, diags };
}
const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const roundTrip = (v: TfValue, t: CtyType): TfValue => {
  const { bytes, diags } = encode(v, t);
  expect(diags).toEqual([]);
  return decodeDynamicValue({ msgpack: bytes }, t);
};

// ---- generators: a type, then a value of that type ----

const attrName = fc.stringMatching(/^[a-z_][a-z0-9_]{0,7}$/);
const mapKey = fc.string({ maxLength: 6 }).filter((k) => k !== "__proto__");
const number = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => (Object.is(n, -0) ? 0 : n)),
  fc.constantFrom(2 ** 53 + 2, -(2 ** 60), 1e300),
);

const typeArb: fc.Arbitrary<CtyType> = fc.letrec<{ type: CtyType }>((tie) => ({
  type: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(S, N, B, D),
    fc.record({ kind: fc.constantFrom("list" as const, "set" as const, "map" as const), element: tie("type") }),
    fc.dictionary(attrName, tie("type"), { maxKeys: 4 }).map((a) => obj(a)),
    fc.array(tie("type"), { maxLength: 3 }).map((elements): CtyType => ({ kind: "tuple", elements })),
  ),
})).type;

/** Values a dynamic slot can carry and give back as they were. */
const dynamicValue: fc.Arbitrary<TfValue> = fc.letrec<{ v: TfValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: "small" },
    fc.constantFrom<TfValue>(null, UNKNOWN),
    fc.string(),
    number,
    fc.boolean(),
    fc.array(tie("v"), { maxLength: 3 }),
    fc.dictionary(attrName, tie("v"), { maxKeys: 3 }) as fc.Arbitrary<TfValue>,
  ) as fc.Arbitrary<TfValue>,
})).v;

function valueOf(t: CtyType): fc.Arbitrary<TfValue> {
  const known = ((): fc.Arbitrary<TfValue> => {
    switch (t.kind) {
      case "string":
        return fc.string();
      case "number":
        return number;
      case "bool":
        return fc.boolean();
      case "dynamic":
        return dynamicValue;
      case "list":
      case "set":
        return fc.array(valueOf(t.element), { maxLength: 3 });
      case "map":
        return fc.dictionary(mapKey, valueOf(t.element), { maxKeys: 3 }) as fc.Arbitrary<TfValue>;
      case "tuple":
        return fc.tuple(...t.elements.map(valueOf)) as fc.Arbitrary<TfValue>;
      case "object":
        return fc.record(Object.fromEntries([...t.attributes].map(([k, at]) => [k, valueOf(at)]))) as fc.Arbitrary<TfValue>;
    }
  })();
  return fc.oneof({ weight: 1, arbitrary: fc.constantFrom<TfValue>(null, UNKNOWN) }, { weight: 6, arbitrary: known }) as fc.Arbitrary<TfValue>;
}

const typedValue = typeArb.chain((t) => valueOf(t).map((v): { t: CtyType; v: TfValue } => ({ t, v })));

/** The JSON form (object-wire-format.md) of a known value, for the JSON decoder. */
function toJson(v: TfValue, t: CtyType): unknown {
  if (v === null) return null;
  if (v === UNKNOWN) throw new Error("no unknowns in JSON");
  switch (t.kind) {
    case "dynamic":
      return { type: inferJsonType(v), value: v };
    case "list":
    case "set":
      return (v as TfValue[]).map((e) => toJson(e, t.element));
    case "tuple":
      return (v as TfValue[]).map((e, i) => toJson(e, t.elements[i]!));
    case "map":
      return Object.fromEntries(Object.entries(v as TfObject).map(([k, e]) => [k, toJson(e, t.element)]));
    case "object":
      return Object.fromEntries([...t.attributes].map(([k, at]) => [k, toJson((v as TfObject)[k] ?? null, at)]));
    default:
      return v;
  }
}
function inferJsonType(v: TfValue): unknown {
  if (v === null) return "dynamic";
  if (typeof v === "string") return "string";
  if (typeof v === "number") return "number";
  if (typeof v === "boolean") return "bool";
  if (Array.isArray(v)) return ["tuple", v.map(inferJsonType)];
  return ["object", Object.fromEntries(Object.entries(v as TfObject).map(([k, e]) => [k, inferJsonType(e)]))];
}
const hasUnknown = (v: TfValue): boolean =>
  v === UNKNOWN || (v !== null && typeof v === "object" && Object.values(v as TfObject).some(hasUnknown));

describe("msgpack DynamicValue round trips", () => {
  it("gives back every value of every type, unknowns and nesting included", () => {
    fc.assert(
      fc.property(typedValue, ({ t, v }) => {
        expect(roundTrip(v, t)).toEqual(v);
      }),
      { numRuns: 500 },
    );
  });

  it("reads the JSON form of the same values (no unknowns there)", () => {
    fc.assert(
      fc.property(
        typedValue.filter(({ v }) => !hasUnknown(v)),
        ({ t, v }) => {
          const json = Buffer.from(JSON.stringify(toJson(v, t)));
          expect(decodeDynamicValue({ json }, t)).toEqual(v);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("parses and prints the JSON form of types", () => {
    fc.assert(
      fc.property(typeArb, (t) => {
        expect(parseType(typeJson(t))).toEqual(t);
      }),
    );
    expect(parseType(["object", { a: "string" }, ["a"]])).toEqual(obj({ a: S }));
    expect(() => parseType(["frob", "string"])).toThrow(/unknown type kind/);
  });
});

describe("the bytes cty writes and reads", () => {
  it("writes an unknown as extension code 0 with one zero byte, as cty does", () => {
    expect(hex(encode(UNKNOWN, S).bytes)).toBe("d40000");
    expect(hex(encode(UNKNOWN, obj({ a: S })).bytes)).toBe("d40000");
  });

  it("reads any extension code as unknown, refined (code 12) or not", () => {
    const refinedNotNull = Uint8Array.of(0xc7, 0x03, 0x0c, 0x81, 0x01, 0xc2); // ext8, code 12, {1: false}
    expect(decodeDynamicValue({ msgpack: refinedNotNull }, S)).toBe(UNKNOWN);
    expect(decodeDynamicValue({ msgpack: Uint8Array.of(0xd4, 0x05, 0x00) }, N)).toBe(UNKNOWN);
    expect(decodeDynamicValue({ msgpack: Uint8Array.of(0xd4, 0x00, 0x00) }, D)).toBe(UNKNOWN);
    const inside = msgpackEncode({ a: new ExtData(12, Uint8Array.of(0x80)), b: "x" });
    expect(decodeDynamicValue({ msgpack: inside }, obj({ a: S, b: S }))).toEqual({ a: UNKNOWN, b: "x" });
  });

  it("writes every attribute of an object, null as nil", () => {
    // {"a": unknown, "b": nil}
    expect(hex(encode({ a: UNKNOWN, b: null }, obj({ a: S, b: N })).bytes)).toBe("82a161d40000a162c0");
    // a missing key is written as null: cty refuses an object map with fewer keys
    expect(msgpackDecode(encode({ a: "x" }, obj({ a: S, b: N })).bytes)).toEqual({ a: "x", b: null });
  });

  it("writes integers as msgpack ints and other numbers as float64", () => {
    expect(hex(encode(7, N).bytes)).toBe("07");
    expect(hex(encode(-1, N).bytes)).toBe("ff");
    expect(hex(encode(300, N).bytes)).toBe("cd012c");
    expect(hex(encode(1.5, N).bytes)).toBe("cb3ff8000000000000");
  });

  it("reads numbers written as decimal strings (beyond float64) and as uint64", () => {
    expect(decodeDynamicValue({ msgpack: msgpackEncode("12345678901234567890") }, N)).toBe(12345678901234567890);
    expect(decodeDynamicValue({ msgpack: Uint8Array.of(0xcf, 0, 0, 0, 1, 0, 0, 0, 0) }, N)).toBe(2 ** 32);
  });

  it("writes a dynamic value as [type JSON bytes, value]", () => {
    // fixarray(2), bin8 of `"string"`, fixstr "x"
    expect(hex(encode("x", D).bytes)).toBe(`92c408${hex(Buffer.from('"string"'))}a178`);
    const { bytes } = encode({ a: [1, "b"] }, D);
    const [typeBytes, value] = msgpackDecode(bytes) as [Uint8Array, unknown];
    expect(JSON.parse(Buffer.from(typeBytes).toString())).toEqual(["object", { a: ["tuple", ["number", "string"]] }]);
    expect(value).toEqual({ a: [1, "b"] });
    // null and unknown need no type
    expect(hex(encode(null, D).bytes)).toBe("c0");
    expect(hex(encode(UNKNOWN, D).bytes)).toBe("d40000");
  });

  it("reads a dynamic value whose type JSON is a msgpack string instead of bytes", () => {
    expect(decodeDynamicValue({ msgpack: msgpackEncode(['["list","number"]', [1, 2]]) }, D)).toEqual([1, 2]);
  });
});

describe("values that do not fit", () => {
  it("fills object attributes missing on the way in with null", () => {
    expect(decodeDynamicValue({ msgpack: msgpackEncode({ a: "x" }) }, obj({ a: S, b: obj({ c: N }) }))).toEqual({ a: "x", b: null });
    expect(decodeDynamicValue({ json: Buffer.from('{"b":{}}') }, obj({ a: S, b: obj({ c: N }) }))).toEqual({ a: null, b: { c: null } });
  });

  it("refuses an attribute the schema does not have on the way in, naming it", () => {
    const t = obj({ a: obj({ b: S }) });
    const bytes = msgpackEncode({ a: { b: "x", zz: 1 } });
    expect(() => decodeDynamicValue({ msgpack: bytes }, t)).toThrow(ValueError);
    try {
      decodeDynamicValue({ msgpack: bytes }, t);
    } catch (e) {
      expect((e as ValueError).path).toEqual([{ attribute: "a" }, { attribute: "zz" }]);
      expect((e as ValueError).message).toBe("a.zz: unsupported attribute");
    }
  });

  it("leaves out an attribute the schema does not have on the way out, with an error at its path", () => {
    const t = obj({ list: { kind: "list", element: obj({ a: S }) } });
    const { bytes, diags } = encode({ list: [{ a: "x", stray: 1 }] }, t);
    expect(msgpackDecode(bytes)).toEqual({ list: [{ a: "x" }] });
    expect(diags).toHaveLength(1);
    expect(diags[0]).toMatchObject({ severity: "error", attribute: [{ attribute: "list" }, { index: 0 }, { attribute: "stray" }] });
  });

  it("writes a value of the wrong type as null, with an error at its path", () => {
    const t = obj({ m: { kind: "map", element: N }, s: S });
    const { bytes, diags } = encode({ m: { k: "seven" }, s: 7 } as unknown as TfValue, t);
    expect(msgpackDecode(bytes)).toEqual({ m: { k: null }, s: null });
    expect(diags.map((d) => d.attribute)).toEqual([[{ attribute: "m" }, { key: "k" }], [{ attribute: "s" }]]);
    expect(encode(Number.NaN, N).diags).toHaveLength(1);
  });

  it("reads an empty DynamicValue as null", () => {
    expect(decodeDynamicValue(null, S)).toBeNull();
    expect(decodeDynamicValue({ msgpack: Buffer.alloc(0), json: Buffer.alloc(0) }, S)).toBeNull();
  });

  it("prints paths the way Terraform does", () => {
    expect(formatPath([{ attribute: "backends" }, { index: 1 }, { attribute: "weight" }])).toBe("backends[1].weight");
    expect(formatPath([{ attribute: "tags" }, { key: "a b" }])).toBe('tags["a b"]');
  });
});
