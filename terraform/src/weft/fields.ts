/**
 * OpenAPI schema → the provider's field model, and the model → Terraform
 * attributes. Pure. The field model keeps what the Terraform schema cannot
 * say (the API's property name, enums, formats, bounds, anyOf unions) so
 * that value translation, validation and error paths all follow one
 * derivation.
 */
import type { TfAttribute, TfType } from "../framework.ts";
import type { JsonSchema } from "./openapi.ts";

/** Bounds and formats checked by validate(), as the document states them. */
export type Rules = Pick<JsonSchema, "format" | "pattern" | "minimum" | "maximum" | "minLength" | "maxLength" | "minItems" | "maxItems"> & {
  /** A number that must be whole (JSON Schema's integer). */
  integer?: boolean;
  enum?: string[];
};

export type ScalarType = "string" | "number" | "bool";

/** One alternative of an anyOf of objects: the properties it allows and those it needs. */
export interface Alternative {
  attributes: string[];
  required: string[];
  /** The values a string attribute must take in this alternative (a discriminator such as filters' type). */
  values: Record<string, string[]>;
}

export type Shape =
  | { kind: "scalar"; type: ScalarType; rules: Rules }
  | { kind: "list"; element: ScalarShape; rules: Rules }
  | { kind: "map"; element: ScalarShape; rules: Rules }
  | { kind: "object"; fields: Field[]; alternatives?: Alternative[]; rules: Rules }
  | { kind: "objectList"; element: ObjectShape; rules: Rules };
export type ScalarShape = Extract<Shape, { kind: "scalar" }>;
export type ObjectShape = Extract<Shape, { kind: "object" }>;

export interface Field {
  /** Terraform's name: snake_case. */
  attribute: string;
  /** The API's name: camelCase; null for attributes that are not API properties (id). */
  property: string | null;
  shape: Shape;
  required: boolean;
  optional: boolean;
  computed: boolean;
  sensitive: boolean;
  /** Sent in request bodies (false: only answered). */
  input: boolean;
  /**
   * The API answers a value when the request left it out (a default, or the
   * value it keeps): an empty map or list then means the same as null.
   */
  defaulted: boolean;
  description?: string;
}

/** displayName → display_name, x509SvidTtlSeconds → x509_svid_ttl_seconds. */
export const snakeCase = (camel: string): string => camel.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

const SCALARS: Record<string, ScalarType> = { string: "string", integer: "number", number: "number", boolean: "bool" };
const isNull = (s: JsonSchema) => s.type === "null";

/** anyOf [X, null] → X: nullability is Terraform's null, not a type. */
function withoutNull(schema: JsonSchema): { schema: JsonSchema; nullable: boolean } {
  const alternatives = schema.anyOf?.filter((s) => !isNull(s));
  if (!schema.anyOf || !alternatives || alternatives.length === schema.anyOf.length) return { schema, nullable: false };
  const only = alternatives.length === 1 ? alternatives[0]! : { ...schema, anyOf: alternatives };
  return { schema: { ...only, description: only.description ?? schema.description }, nullable: true };
}

function rulesOf(s: JsonSchema): Rules {
  const rules: Rules = {};
  for (const key of ["format", "pattern", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"] as const) {
    if (s[key] !== undefined) (rules as Record<string, unknown>)[key] = s[key];
  }
  if (s.enum) rules.enum = s.enum.map(String);
  if (s.type === "integer") rules.integer = true;
  return rules;
}

/** Where a field sits: in a request body (required as the body says) or only in answers (computed). */
type Context = "input" | "output";

export function shapeOf(raw: JsonSchema, context: Context): Shape {
  const { schema } = withoutNull(raw);
  if (schema.anyOf) {
    // An anyOf of string enums is one string with the union of the enums.
    if (schema.anyOf.every((a) => a.type === "string" && a.enum)) {
      return { kind: "scalar", type: "string", rules: { enum: schema.anyOf.flatMap((a) => a.enum!.map(String)) } };
    }
    if (schema.anyOf.every((a) => a.type === "object" && a.properties)) return unionShape(schema.anyOf, context);
    throw new Error(`cannot translate anyOf: ${JSON.stringify(schema).slice(0, 200)}`);
  }
  const scalar = schema.type === undefined ? undefined : SCALARS[schema.type];
  if (scalar) return { kind: "scalar", type: scalar, rules: rulesOf(schema) };
  if (schema.type === "array" && schema.items) {
    const element = shapeOf(schema.items, context);
    if (element.kind === "scalar") return { kind: "list", element, rules: rulesOf(schema) };
    if (element.kind === "object") return { kind: "objectList", element, rules: rulesOf(schema) };
    throw new Error("arrays of collections are not translated");
  }
  if (schema.type === "object" && schema.properties) return objectShape(schema, context);
  if (schema.type === "object" && typeof schema.additionalProperties === "object") {
    const element = shapeOf(schema.additionalProperties, context);
    if (element.kind !== "scalar") throw new Error("maps of collections are not translated");
    return { kind: "map", element, rules: { ...rulesOf(schema), ...(schema.maxProperties ? { maxItems: schema.maxProperties } : {}) } };
  }
  throw new Error(`cannot translate schema: ${JSON.stringify(schema).slice(0, 200)}`);
}

function objectShape(schema: JsonSchema, context: Context): ObjectShape {
  const required = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties ?? {}).map(([property, s]) =>
    nestedField(property, s, context, required.has(property)),
  );
  return { kind: "object", fields, rules: {} };
}

/**
 * An anyOf of objects (selector | explicit; identity/labels | cidr) becomes
 * one object with the union of their properties, all optional; validate()
 * then insists that the set ones fit exactly one alternative. A string enum
 * several alternatives share (a discriminator: filters' type) takes the
 * union of their values, and each alternative keeps its own to fit by.
 */
function unionShape(alternatives: JsonSchema[], context: Context): ObjectShape {
  const byName = new Map<string, Field>();
  for (const alt of alternatives) {
    for (const [property, s] of Object.entries(alt.properties ?? {})) {
      const field = nestedField(property, s, context, false);
      const had = byName.get(property);
      if (had === undefined) byName.set(property, field);
      else if (had.shape.kind === "scalar" && had.shape.rules.enum && field.shape.kind === "scalar" && field.shape.rules.enum) {
        had.shape.rules.enum = [...new Set([...had.shape.rules.enum, ...field.shape.rules.enum])];
      }
    }
  }
  const valuesOf = (alt: JsonSchema): Record<string, string[]> =>
    Object.fromEntries(
      Object.entries(alt.properties ?? {}).flatMap(([property, s]) => {
        const enumValues = withoutNull(s).schema.enum;
        return enumValues ? [[snakeCase(property), enumValues.map(String)]] : [];
      }),
    );
  return {
    kind: "object",
    fields: [...byName.values()],
    alternatives: alternatives.map((alt) => ({
      attributes: Object.keys(alt.properties ?? {}).map(snakeCase),
      required: (alt.required ?? []).map(snakeCase),
      values: valuesOf(alt),
    })),
    rules: {},
  };
}

function nestedField(property: string, schema: JsonSchema, context: Context, required: boolean): Field {
  const input = context === "input";
  const description = withoutNull(schema).schema.description;
  return {
    attribute: snakeCase(property),
    property,
    shape: shapeOf(schema, context),
    required: input && required,
    optional: input && !required,
    computed: !input,
    sensitive: false,
    input,
    defaulted: false,
    ...(description ? { description } : {}),
  };
}

export interface DeriveOptions {
  /** Answer-only properties left out of the schema (timestamps would show a diff on every write). */
  omit?: string[];
  sensitive?: string[];
}

const DEFAULT_OMIT = ["createdAt", "updatedAt"];

/**
 * The top-level fields of a resource from its write body and its answer.
 * Body properties the body requires are required; others optional, and
 * computed too when the answer always carries a value for them (the API
 * fills a default), unless that value is a map or list: there an empty one
 * stands for null, so that removing the attribute from the configuration
 * still clears it. Answer-only properties are computed.
 */
export function deriveFields(body: JsonSchema | null, answer: JsonSchema, options: DeriveOptions = {}): Field[] {
  const omit = new Set(options.omit ?? DEFAULT_OMIT);
  const sensitive = new Set(options.sensitive ?? []);
  const bodyRequired = new Set(body?.required ?? []);
  const answerRequired = new Set(answer.required ?? []);
  const names = [...Object.keys(body?.properties ?? {})];
  for (const name of Object.keys(answer.properties ?? {})) if (!names.includes(name)) names.push(name);
  return names
    .filter((name) => !omit.has(name))
    .map((property) => {
      const inBody = body?.properties?.[property];
      const answered = answer.properties?.[property];
      const schema = (inBody ?? answered)!;
      const shape = shapeOf(schema, inBody ? "input" : "output");
      const alwaysAnswered = answered !== undefined && answerRequired.has(property) && !withoutNull(answered).nullable;
      const defaulted = inBody !== undefined && !bodyRequired.has(property) && alwaysAnswered;
      const collection = shape.kind === "map" || shape.kind === "list" || shape.kind === "objectList";
      const description = withoutNull(schema).schema.description ?? (answered && withoutNull(answered).schema.description);
      return {
        attribute: snakeCase(property),
        property,
        shape,
        required: inBody !== undefined && bodyRequired.has(property),
        optional: inBody !== undefined && !bodyRequired.has(property),
        computed: inBody === undefined || (defaulted && !collection),
        sensitive: sensitive.has(property),
        input: inBody !== undefined,
        defaulted,
        ...(description ? { description } : {}),
      };
    });
}

function tfType(shape: Shape): TfType {
  switch (shape.kind) {
    case "scalar":
      return shape.type;
    case "list":
      return ["list", shape.element.type];
    case "map":
      return ["map", shape.element.type];
    default:
      throw new Error("nested shapes have no plain type");
  }
}

const describe = (field: Field): string | undefined => {
  const parts = [field.description];
  if (field.shape.kind === "scalar" && field.shape.rules.enum) parts.push(`One of: ${field.shape.rules.enum.join(", ")}.`);
  if (field.shape.kind === "object" && field.shape.alternatives) {
    parts.push(`Exactly one of: ${field.shape.alternatives.map((a) => a.attributes.join("/")).join(" | ")}.`);
  }
  const text = parts.filter(Boolean).join(" ");
  return text === "" ? undefined : text;
};

export function toAttribute(field: Field): TfAttribute {
  const flags = {
    ...(field.required ? { required: true } : {}),
    ...(field.optional ? { optional: true } : {}),
    ...(field.computed ? { computed: true } : {}),
    ...(field.sensitive ? { sensitive: true } : {}),
  };
  const description = describe(field);
  const base = { name: field.attribute, ...(description ? { description } : {}), ...flags };
  const { shape } = field;
  if (shape.kind === "object") return { ...base, nested: { nesting: "single", attributes: shape.fields.map(toAttribute) } };
  if (shape.kind === "objectList") return { ...base, nested: { nesting: "list", attributes: shape.element.fields.map(toAttribute) } };
  return { ...base, type: tfType(shape) };
}

/** A field that is not an API property: tenant, name, id. */
export function syntheticField(attribute: string, how: "required" | "computed", description: string, rules: Rules = {}): Field {
  return {
    attribute,
    property: null,
    shape: { kind: "scalar", type: "string", rules },
    required: how === "required",
    optional: false,
    computed: how === "computed",
    sensitive: false,
    input: false,
    defaulted: false,
    description,
  };
}
