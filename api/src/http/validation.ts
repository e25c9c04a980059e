// Request validation: ajv, as Fastify would set it up, but in two instances.
// Query strings, path parameters and headers arrive as text, so they are
// coerced to their schema's types ("?limit=10" is the number 10). A JSON body
// already carries its types: coercing it would take {"appliedRevision": [null]}
// as 0 or {"name": 5} as "5", and a client's type error would be written as
// data instead of being answered with a 400. Bodies are validated as sent.
import { AjvCompiler, type ValidatorFactory } from "@fastify/ajv-compiler";

type CompiledValidator = ReturnType<ReturnType<ValidatorFactory>>;
/** What Fastify calls per request part: ajv's function (`errors`, `schemaEnv`) or one of ours with the same shape. */
type Validator = ((data: unknown, ctx?: unknown) => boolean) & { errors?: unknown; schemaEnv?: unknown };

/** An ajv-shaped error, so the error handler names the field as it names every other. */
export interface NonFiniteError {
  instancePath: string;
  keyword: "finite";
  message: string;
  params: Record<string, never>;
}

const FINITE_MESSAGE = "must be a finite number";

/** Path (ajv's /a/0/b form) of the first non-finite number in a value, or null. */
export function nonFinitePath(value: unknown, path = "", depth = 0): string | null {
  if (typeof value === "number") return Number.isFinite(value) ? null : path;
  if (value === null || typeof value !== "object" || depth > 32) return null;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = nonFinitePath(value[i], `${path}/${i}`, depth + 1);
      if (found !== null) return found;
    }
    return null;
  }
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue;
    const found = nonFinitePath((value as Record<string, unknown>)[key], `${path}/${key}`, depth + 1);
    if (found !== null) return found;
  }
  return null;
}

/** True when text that ajv coerces could become a number in this schema (a number or integer type anywhere). */
const mayCoerceToNumber = (schema: unknown): boolean => /"(number|integer)"/.test(JSON.stringify(schema) ?? "");

/**
 * ajv's coercion turns "1e400" (or 600 digits) into Infinity and lets it past
 * `maximum`; JSON.parse does the same to a body's 1e400. Such a number must
 * never reach a handler or the database: it is refused as a validation error
 * of its part (400, "must be a finite number"), after the schema passed.
 */
function refusingNonFinite(validate: CompiledValidator): Validator {
  const inner = validate as unknown as Validator;
  const checked: Validator = (data, ctx) => {
    if (!inner(data, ctx)) {
      checked.errors = inner.errors;
      return false;
    }
    const path = nonFinitePath(data);
    if (path === null) return true;
    const error: NonFiniteError = { instancePath: path, keyword: "finite", message: FINITE_MESSAGE, params: {} };
    checked.errors = [error];
    return false;
  };
  // Fastify hands ajv's functions the parent object (so a coerced root value sticks) when it sees schemaEnv.
  if (inner.schemaEnv !== undefined) checked.schemaEnv = inner.schemaEnv;
  return checked;
}

/** Header names are case-insensitive and arrive lowercased: so must the schema's (Fastify does this for its own ajv). */
function lowerCaseHeaders(schema: unknown): unknown {
  const s = schema as { type?: unknown; properties?: Record<string, unknown>; required?: string[] } | null;
  if (s === null || typeof s !== "object" || s.properties === undefined) return schema;
  return {
    ...s,
    properties: Object.fromEntries(Object.entries(s.properties).map(([k, v]) => [k.toLowerCase(), v])),
    ...(s.required ? { required: s.required.map((k) => k.toLowerCase()) } : {}),
  };
}

const coercingPool = AjvCompiler();
const exactPool = AjvCompiler();

/**
 * Fastify's `schemaController.compilersFactory.buildValidator`: called with
 * the shared schemas (app.addSchema) and the server's `ajv` option, it gives
 * the function that compiles each route part. Both ajv instances are built
 * the way Fastify builds its own (@fastify/ajv-compiler: same defaults, same
 * plugins and formats); only `coerceTypes` differs, and only for bodies.
 */
export const buildValidator: ValidatorFactory = (externalSchemas, ajv) => {
  const options = { customOptions: {}, ...ajv };
  const coercing = coercingPool(externalSchemas, options);
  const exact = exactPool(externalSchemas, { ...options, customOptions: { ...options.customOptions, coerceTypes: false } } as typeof ajv);
  return (route) => {
    if (route.httpPart === "body") return refusingNonFinite(exact(route)) as unknown as CompiledValidator;
    const schema = route.httpPart === "headers" ? lowerCaseHeaders(route.schema) : route.schema;
    const validate = coercing({ ...route, schema } as typeof route);
    // Text coerces to a number only where the schema says number: elsewhere there is nothing to check.
    return mayCoerceToNumber(schema) ? (refusingNonFinite(validate) as unknown as CompiledValidator) : validate;
  };
};
