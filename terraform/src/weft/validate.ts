/**
 * Configuration checks the document states: enums, formats (DNS labels,
 * IPv4), patterns, bounds, and "exactly one alternative" of anyOf unions.
 * Pure; unknown values are skipped (they are checked again once known).
 * What only the API can judge (references, capacity) waits for the dry run.
 */
import { UNKNOWN, type AttributePath, type Diagnostic, type TfObject, type TfValue } from "../framework.ts";
import { FORMATS } from "@weft/formats";
import type { Field, Rules, Shape } from "./fields.ts";
import { pathText } from "./problems.ts";

/** `summary` may name the attribute; the detail always says the whole path (ports[0].protocol). */
function invalid(path: AttributePath, summary: string, detail: string): Diagnostic {
  return { severity: "error", summary, detail: `${pathText(path)}: ${detail}`, attribute: path };
}

function checkScalar(rules: Rules, value: string | number | boolean, path: AttributePath, name: string): Diagnostic[] {
  const out: Diagnostic[] = [];
  if (typeof value === "string") {
    if (rules.enum && !rules.enum.includes(value)) {
      out.push(invalid(path, `Invalid value for ${name}`, `"${value}" is not one of: ${rules.enum.join(", ")}`));
    }
    const format = rules.format === undefined ? undefined : FORMATS[rules.format];
    if (format && !format.pattern.test(value)) out.push(invalid(path, `Invalid value for ${name}`, `"${value}" ${format.message}`));
    if (rules.pattern !== undefined && !new RegExp(rules.pattern).test(value)) {
      out.push(invalid(path, `Invalid value for ${name}`, `"${value}" must match ${rules.pattern}`));
    }
    if (rules.minLength !== undefined && value.length < rules.minLength) {
      out.push(invalid(path, `Invalid value for ${name}`, `must be at least ${rules.minLength} characters`));
    }
    if (rules.maxLength !== undefined && value.length > rules.maxLength) {
      out.push(invalid(path, `Invalid value for ${name}`, `must be at most ${rules.maxLength} characters`));
    }
  }
  if (typeof value === "number") {
    if (rules.integer && !Number.isInteger(value)) {
      out.push(invalid(path, `Invalid value for ${name}`, `${value} must be a whole number`));
    }
    if (rules.minimum !== undefined && value < rules.minimum) out.push(invalid(path, `Invalid value for ${name}`, `must be at least ${rules.minimum}`));
    if (rules.maximum !== undefined && value > rules.maximum) out.push(invalid(path, `Invalid value for ${name}`, `must be at most ${rules.maximum}`));
  }
  return out;
}

function checkCount(rules: Rules, count: number, path: AttributePath, name: string): Diagnostic[] {
  if (rules.minItems !== undefined && count < rules.minItems) return [invalid(path, `Invalid value for ${name}`, `needs at least ${rules.minItems} entries`)];
  if (rules.maxItems !== undefined && count > rules.maxItems) return [invalid(path, `Invalid value for ${name}`, `takes at most ${rules.maxItems} entries`)];
  return [];
}

function checkValue(shape: Shape, value: TfValue, path: AttributePath, name: string): Diagnostic[] {
  if (value === null || value === UNKNOWN) return [];
  switch (shape.kind) {
    case "scalar":
      return checkScalar(shape.rules, value as string | number | boolean, path, name);
    case "list": {
      const items = value as TfValue[];
      return [
        ...checkCount(shape.rules, items.length, path, name),
        ...items.flatMap((v, i) => checkValue(shape.element, v, [...path, { index: i }], name)),
      ];
    }
    case "map": {
      const entries = Object.entries(value as TfObject);
      return [
        ...checkCount(shape.rules, entries.length, path, name),
        ...entries.flatMap(([k, v]) => checkValue(shape.element, v, [...path, { key: k }], name)),
      ];
    }
    case "object":
      return [...checkAlternatives(shape, value as TfObject, path, name), ...validateObject(shape.fields, value as TfObject, path)];
    case "objectList": {
      const items = value as TfObject[];
      return [
        ...checkCount(shape.rules, items.length, path, name),
        ...items.flatMap((v, i) => checkValue(shape.element, v, [...path, { index: i }], name)),
      ];
    }
  }
}

/** The set attributes of a union object must fit exactly one of its alternatives. */
function checkAlternatives(shape: Extract<Shape, { kind: "object" }>, value: TfObject, path: AttributePath, name: string): Diagnostic[] {
  if (!shape.alternatives) return [];
  // An unknown attribute may yet be null or set: judge once it is known.
  if (Object.values(value).some((v) => v === UNKNOWN)) return [];
  const set = Object.keys(value).filter((k) => value[k] !== null);
  const fits = shape.alternatives.filter(
    (alt) =>
      set.every((a) => alt.attributes.includes(a)) &&
      alt.required.every((r) => set.includes(r)) &&
      Object.entries(alt.values).every(([a, values]) => value[a] === null || values.includes(value[a] as string)),
  );
  if (fits.length === 1) return [];
  const choices = shape.alternatives.map((a) => a.attributes.join(" or ")).join("; or ");
  const given = set.length === 0 ? "none is set" : `set: ${set.join(", ")}`;
  return [invalid(path, `Invalid ${name}: exactly one kind must be given`, `${name} takes exactly one of: ${choices} (${given})`)];
}

/** Checks every field of an object value; paths are relative to `at`. */
export function validateObject(fields: Field[], value: TfObject, at: AttributePath = []): Diagnostic[] {
  return fields.flatMap((field) => {
    const v = value[field.attribute] ?? null;
    if (field.computed && !field.optional) return [];
    return checkValue(field.shape, v, [...at, { attribute: field.attribute }], field.attribute);
  });
}
