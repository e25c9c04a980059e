// cty types (Terraform's type system) as the plugin layer walks them, parsed
// from their JSON form: "string", ["list","string"], ["object",{...}], ...
// The framework's TfType is a subset of that JSON form; values of a
// "dynamic" slot carry their own type on the wire, which may be any type,
// tuples included.
import type { TfAttribute, TfSchema, TfType } from "../framework.ts";

export type CtyType =
  | { kind: "string" }
  | { kind: "number" }
  | { kind: "bool" }
  | { kind: "dynamic" }
  | { kind: "list" | "set" | "map"; element: CtyType }
  | { kind: "object"; attributes: ReadonlyMap<string, CtyType> }
  | { kind: "tuple"; elements: readonly CtyType[] };

export class CtyTypeError extends Error {
  override name = "CtyTypeError";
}

const PRIMITIVES = {
  string: { kind: "string" },
  number: { kind: "number" },
  bool: { kind: "bool" },
  dynamic: { kind: "dynamic" },
} as const satisfies Record<string, CtyType>;

/**
 * A type from its JSON form. Objects may carry a third element listing
 * optional attributes (["object",{...},["a"]]); that only matters to
 * Terraform's type conversion, never on the wire, so it is ignored.
 */
export function parseType(json: unknown): CtyType {
  if (typeof json === "string") {
    const t = (PRIMITIVES as Record<string, CtyType>)[json];
    if (!t) throw new CtyTypeError(`unknown primitive type ${JSON.stringify(json)}`);
    return t;
  }
  if (!Array.isArray(json) || json.length < 2) throw new CtyTypeError(`malformed type ${JSON.stringify(json)}`);
  const [kind, arg] = json as [unknown, unknown];
  switch (kind) {
    case "list":
    case "set":
    case "map":
      return { kind, element: parseType(arg) };
    case "object": {
      if (typeof arg !== "object" || arg === null || Array.isArray(arg)) {
        throw new CtyTypeError("object type needs a map of attribute types");
      }
      return { kind, attributes: new Map(Object.entries(arg).map(([k, v]) => [k, parseType(v)])) };
    }
    case "tuple":
      if (!Array.isArray(arg)) throw new CtyTypeError("tuple type needs a list of element types");
      return { kind, elements: arg.map(parseType) };
    default:
      throw new CtyTypeError(`unknown type kind ${JSON.stringify(kind)}`);
  }
}

/** The JSON form Terraform reads (schema attribute types, dynamic values). */
export function typeJson(t: CtyType): unknown {
  switch (t.kind) {
    case "list":
    case "set":
    case "map":
      return [t.kind, typeJson(t.element)];
    case "object":
      return ["object", Object.fromEntries([...t.attributes].map(([k, v]) => [k, typeJson(v)]))];
    case "tuple":
      return ["tuple", t.elements.map(typeJson)];
    default:
      return t.kind;
  }
}

/** The type of one schema attribute: its own type, or what its nested attributes imply. */
export function attributeType(a: TfAttribute): CtyType {
  if (a.type !== undefined && a.nested === undefined) return parseType(a.type satisfies TfType);
  if (a.nested !== undefined && a.type === undefined) {
    const object = objectOf(a.nested.attributes);
    return a.nested.nesting === "single" ? object : { kind: a.nested.nesting, element: object };
  }
  throw new CtyTypeError(`attribute ${a.name}: exactly one of type and nested must be set`);
}

function objectOf(attributes: readonly TfAttribute[]): CtyType {
  return { kind: "object", attributes: new Map(attributes.map((a) => [a.name, attributeType(a)])) };
}

/** The object type of a whole resource, data source or provider block (cty's ImpliedType). */
export const impliedType = (schema: TfSchema): CtyType => objectOf(schema.attributes);
