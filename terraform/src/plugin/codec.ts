// DynamicValue <-> plain JavaScript, driven by the schema's cty type.
//
// Wire rules: hashicorp/terraform docs/plugin-protocol/object-wire-format.md.
// msgpack: null is nil; an unknown value is an extension value of any code
// (code 12 carries refinements, which we may ignore); we write unknowns as
// code 0 with one zero byte (d4 00 00), as cty does. Objects carry every
// attribute (cty refuses a map of another length), maps and objects are
// msgpack maps, lists, sets and tuples arrays, numbers ints or float64s (or
// decimal strings for numbers beyond float64), and a value of type
// "dynamic" is [type JSON as bytes, value]. JSON (UpgradeResourceState's
// raw state, and a DynamicValue whose msgpack field is empty) has no
// unknowns and writes a dynamic value as {"type":..., "value":...}.
import { Decoder, Encoder, ExtData } from "@msgpack/msgpack";
import { UNKNOWN, type AttributePath, type Diagnostic, type TfObject, type TfValue } from "../framework.ts";
import { type CtyType, parseType, typeJson } from "./cty.ts";

/** A value that does not fit its type; path says where. */
export class ValueError extends Error {
  override name = "ValueError";
  constructor(
    readonly path: AttributePath,
    message: string,
  ) {
    super(path.length ? `${formatPath(path)}: ${message}` : message);
  }
}

/** a.b[0]["key"], the way Terraform prints a path. */
export function formatPath(path: AttributePath): string {
  let out = "";
  for (const s of path) {
    if ("attribute" in s) out += out ? `.${s.attribute}` : s.attribute;
    else if ("index" in s) out += `[${s.index}]`;
    else out += `[${JSON.stringify(s.key)}]`;
  }
  return out || "(root)";
}

export interface DecodeOptions {
  format: "msgpack" | "json";
  /**
   * Object attributes the type does not have: an error (Terraform never
   * sends them), or ignored (stored state written before an attribute
   * was removed).
   */
  extraAttributes: "error" | "ignore";
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof ExtData);

/** Sets an own property, also for the key "__proto__". */
function put(o: TfObject, key: string, v: TfValue): void {
  if (key === "__proto__") Object.defineProperty(o, key, { value: v, enumerable: true, writable: true, configurable: true });
  else o[key] = v;
}

const own = (o: object, key: string): boolean => Object.prototype.hasOwnProperty.call(o, key);

function describe(v: unknown): string {
  if (v === null) return "null";
  if (v === UNKNOWN) return "an unknown value";
  if (Array.isArray(v)) return "an array";
  if (v instanceof Uint8Array) return "bytes";
  if (v instanceof ExtData) return `an extension value (code ${v.type})`;
  return typeof v === "object" ? "an object" : `a ${typeof v}`;
}

function decodedNumber(raw: unknown, path: AttributePath): number {
  if (typeof raw === "number") return raw;
  if (typeof raw === "bigint") return Number(raw);
  if (typeof raw === "string" && raw.trim() !== "") {
    const n = Number(raw);
    if (!Number.isNaN(n)) return n;
  }
  throw new ValueError(path, `number is required, got ${describe(raw)}`);
}

/**
 * One decoded msgpack or JSON value, checked against its type, as a
 * TfValue. Objects get every attribute of their type, null where absent.
 */
export function fromWire(raw: unknown, t: CtyType, path: AttributePath, o: DecodeOptions): TfValue {
  if (raw instanceof ExtData) {
    if (o.format === "msgpack") return UNKNOWN;
    throw new ValueError(path, "extension value in JSON");
  }
  if (raw === null || raw === undefined) return null;
  switch (t.kind) {
    case "string":
      if (typeof raw === "string") return raw;
      throw new ValueError(path, `string is required, got ${describe(raw)}`);
    case "number":
      return decodedNumber(raw, path);
    case "bool":
      if (typeof raw === "boolean") return raw;
      throw new ValueError(path, `bool is required, got ${describe(raw)}`);
    case "list":
    case "set":
      if (!Array.isArray(raw)) throw new ValueError(path, `${t.kind} is required, got ${describe(raw)}`);
      return raw.map((e, i) => fromWire(e, t.element, [...path, { index: i }], o));
    case "tuple":
      if (!Array.isArray(raw) || raw.length !== t.elements.length) {
        throw new ValueError(path, `tuple of ${t.elements.length} elements is required`);
      }
      return raw.map((e, i) => fromWire(e, t.elements[i]!, [...path, { index: i }], o));
    case "map": {
      if (!isMap(raw)) throw new ValueError(path, `map is required, got ${describe(raw)}`);
      const out: TfObject = {};
      for (const [k, v] of Object.entries(raw)) put(out, k, fromWire(v, t.element, [...path, { key: k }], o));
      return out;
    }
    case "object": {
      if (!isMap(raw)) throw new ValueError(path, `object is required, got ${describe(raw)}`);
      const out: TfObject = {};
      for (const [name, at] of t.attributes) {
        put(out, name, own(raw, name) ? fromWire(raw[name], at, [...path, { attribute: name }], o) : null);
      }
      if (o.extraAttributes === "error") {
        for (const k of Object.keys(raw)) {
          if (!t.attributes.has(k)) throw new ValueError([...path, { attribute: k }], "unsupported attribute");
        }
      }
      return out;
    }
    case "dynamic":
      return fromWireDynamic(raw, path, o);
  }
}

function fromWireDynamic(raw: unknown, path: AttributePath, o: DecodeOptions): TfValue {
  let typeRaw: unknown;
  let value: unknown;
  if (o.format === "msgpack") {
    if (!Array.isArray(raw) || raw.length !== 2) throw new ValueError(path, "dynamic value must be [type, value]");
    [typeRaw, value] = raw as [unknown, unknown];
    if (typeRaw instanceof Uint8Array) typeRaw = Buffer.from(typeRaw).toString("utf8");
    if (typeof typeRaw !== "string") throw new ValueError(path, "dynamic value type must be JSON bytes");
    typeRaw = parseJson(typeRaw, path);
  } else {
    if (!isMap(raw) || !own(raw, "type")) throw new ValueError(path, 'dynamic value must be {"type":..., "value":...}');
    typeRaw = raw.type;
    value = raw.value;
  }
  let t: CtyType;
  try {
    t = parseType(typeRaw);
  } catch (e) {
    throw new ValueError(path, (e as Error).message);
  }
  return fromWire(value, t, path, o);
}

function parseJson(text: string, path: AttributePath): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ValueError(path, `invalid JSON: ${(e as Error).message}`);
  }
}

/** What cty writes for a wholly unknown value: fixext 1, code 0, one zero byte. */
const UNKNOWN_WIRE = new ExtData(0, Uint8Array.of(0));

/** The type a dynamic slot's value is sent with: the closest type its JavaScript shape implies. */
export function inferType(v: TfValue): CtyType {
  if (v === null || v === UNKNOWN) return { kind: "dynamic" };
  if (typeof v === "string") return { kind: "string" };
  if (typeof v === "number") return { kind: "number" };
  if (typeof v === "boolean") return { kind: "bool" };
  if (Array.isArray(v)) return { kind: "tuple", elements: v.map(inferType) };
  return { kind: "object", attributes: new Map(Object.entries(v).map(([k, e]) => [k, inferType(e)])) };
}

function wrongValue(diags: Diagnostic[], path: AttributePath, message: string): null {
  diags.push({
    severity: "error",
    summary: "Provider produced an invalid value",
    detail: `${formatPath(path)}: ${message}. This is a bug in the Weft provider.`,
    attribute: path,
  });
  return null;
}

/**
 * A TfValue as the value @msgpack/msgpack should write, shaped by its type.
 * Never throws: a value that does not fit is written as null with an error
 * diagnostic at its path, and an attribute the type does not have is left
 * out with an error diagnostic, so an apply that created something still
 * hands Terraform a state to keep.
 */
export function toWire(v: TfValue | undefined, t: CtyType, path: AttributePath, diags: Diagnostic[]): unknown {
  if (v === UNKNOWN) return UNKNOWN_WIRE;
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case "string":
      return typeof v === "string" ? v : wrongValue(diags, path, `string expected, got ${describe(v)}`);
    case "number":
      if (typeof v !== "number") return wrongValue(diags, path, `number expected, got ${describe(v)}`);
      // cty has no NaN, and the msgpack encoder writes safe integers as ints, the rest as float64.
      return Number.isFinite(v) ? v : wrongValue(diags, path, `finite number expected, got ${v}`);
    case "bool":
      return typeof v === "boolean" ? v : wrongValue(diags, path, `bool expected, got ${describe(v)}`);
    case "list":
    case "set":
      if (!Array.isArray(v)) return wrongValue(diags, path, `${t.kind} (an array) expected, got ${describe(v)}`);
      return v.map((e, i) => toWire(e, t.element, [...path, { index: i }], diags));
    case "tuple":
      if (!Array.isArray(v) || v.length !== t.elements.length) {
        return wrongValue(diags, path, `tuple of ${t.elements.length} elements expected, got ${describe(v)}`);
      }
      return v.map((e, i) => toWire(e, t.elements[i]!, [...path, { index: i }], diags));
    case "map": {
      if (!isMap(v)) return wrongValue(diags, path, `map expected, got ${describe(v)}`);
      const out: Record<string, unknown> = {};
      for (const [k, e] of Object.entries(v)) {
        const w = toWire(e, t.element, [...path, { key: k }], diags);
        if (k === "__proto__") Object.defineProperty(out, k, { value: w, enumerable: true });
        else out[k] = w;
      }
      return out;
    }
    case "object": {
      if (!isMap(v)) return wrongValue(diags, path, `object expected, got ${describe(v)}`);
      const out: Record<string, unknown> = {};
      for (const [name, at] of t.attributes) out[name] = toWire(v[name], at, [...path, { attribute: name }], diags);
      for (const k of Object.keys(v)) {
        if (!t.attributes.has(k)) wrongValue(diags, [...path, { attribute: k }], "attribute not in the schema (left out)");
      }
      return out;
    }
    case "dynamic": {
      const inner = inferType(v);
      return [Buffer.from(JSON.stringify(typeJson(inner))), toWire(v, inner, path, diags)];
    }
  }
}

const encoder = new Encoder();
const decoder = new Decoder();

/** The protocol's DynamicValue message as proto-loader hands it over. */
export interface DynamicValue {
  msgpack?: Uint8Array | null;
  json?: Uint8Array | null;
}

/**
 * A request's DynamicValue as a TfValue of type t. An absent value is null
 * (Terraform sends prior_state of a create as msgpack nil, but an absent
 * message means the same).
 */
export function decodeDynamicValue(dv: DynamicValue | null | undefined, t: CtyType): TfValue {
  if (dv?.msgpack && dv.msgpack.length > 0) {
    let raw: unknown;
    try {
      raw = decoder.decode(dv.msgpack);
    } catch (e) {
      throw new ValueError([], `malformed msgpack: ${(e as Error).message}`);
    }
    return fromWire(raw, t, [], { format: "msgpack", extraAttributes: "error" });
  }
  if (dv?.json && dv.json.length > 0) {
    return fromWire(parseJson(Buffer.from(dv.json).toString("utf8"), []), t, [], { format: "json", extraAttributes: "error" });
  }
  return null;
}

/** A TfValue of type t as a msgpack DynamicValue; problems land in diags (see toWire). */
export function encodeDynamicValue(v: TfValue, t: CtyType, diags: Diagnostic[]): { msgpack: Buffer } {
  const bytes = encoder.encode(toWire(v, t, [], diags));
  return { msgpack: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}
