import { randomUUID } from "node:crypto";
import { Ajv } from "ajv";
import ajvFormats from "ajv-formats";
import { FORMATS } from "../../api/src/http/schemas.ts";

type Schema = Record<string, unknown> & {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  anyOf?: Schema[];
};

/**
 * A validator configured as the API's own (app.ts): the oracle that tells a
 * generated input the API must refuse from one it must accept.
 */
const ajv = new Ajv({ coerceTypes: "array", useDefaults: true, removeAdditional: false, allErrors: true, strict: false });
ajvFormats.default(ajv);
for (const [name, { pattern }] of Object.entries(FORMATS)) ajv.addFormat(name, pattern);

export function accepts(schema: unknown, value: unknown): boolean {
  return ajv.validate(schema as object, structuredClone(value)) as boolean;
}

/** The smallest value a schema accepts, with every optional field left out: enough to get past validation. */
export function validValue(schema: Schema): unknown {
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  if (schema.anyOf) return validValue(schema.anyOf[0]!);
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case "object":
      return Object.fromEntries((schema.required ?? []).map((k) => [k, validValue(schema.properties?.[k] ?? {})]));
    case "array":
      return Array.from({ length: Number(schema.minItems ?? 0) }, () => validValue(schema.items ?? {}));
    case "integer":
    case "number":
      return Number(schema.minimum ?? 1);
    case "boolean":
      return false;
    case "string":
      if (schema.format === "uuid") return randomUUID();
      if (schema.format === "dns-label") return "valid-name";
      if (schema.format === "date-time") return new Date().toISOString();
      if (schema.format === "ipv4") return "10.0.0.1";
      if (schema.format === "ipv4-prefix") return "10.0.0.0/8";
      return "x".repeat(Number(schema.minLength ?? 1));
    default:
      return null;
  }
}
