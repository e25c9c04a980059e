/**
 * Terraform values ↔ API JSON, following the field model. Pure. Only
 * attribute names are translated (camel ↔ snake): map keys such as labels
 * are the user's data and pass through unchanged.
 */
import { UNKNOWN, type TfObject, type TfValue } from "../framework.ts";
import type { Field, Shape } from "./fields.ts";

type Json = null | string | number | boolean | Json[] | { [key: string]: Json };

const isObject = (v: TfValue | undefined): v is TfObject => typeof v === "object" && v !== null && !Array.isArray(v);

/** True when the value, or anything inside it, is not known yet. */
export function hasUnknown(value: TfValue | undefined): boolean {
  if (value === UNKNOWN) return true;
  if (Array.isArray(value)) return value.some(hasUnknown);
  if (isObject(value)) return Object.values(value).some(hasUnknown);
  return false;
}

export function deepEqual(a: TfValue | undefined, b: TfValue | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    return [...keys].every((k) => deepEqual(a[k] ?? null, b[k] ?? null));
  }
  return false;
}

function valueToApi(shape: Shape, value: TfValue): Json | undefined {
  if (value === null || value === UNKNOWN || value === undefined) return undefined;
  switch (shape.kind) {
    case "scalar":
      return value as string | number | boolean;
    case "list":
      return (value as TfValue[]).filter((v) => v !== null && v !== UNKNOWN) as Json[];
    case "map":
      return Object.fromEntries(Object.entries(value as TfObject).filter(([, v]) => v !== null && v !== UNKNOWN)) as Json;
    case "object":
      return objectToApi(shape.fields, value as TfObject);
    case "objectList":
      return (value as TfObject[]).map((item) => objectToApi(shape.element.fields, item));
  }
}

/** The request body: input fields that have a value, under their API names. */
export function objectToApi(fields: Field[], value: TfObject): { [key: string]: Json } {
  const out: { [key: string]: Json } = {};
  for (const field of fields) {
    if (!field.input || field.property === null) continue;
    const json = valueToApi(field.shape, value[field.attribute] ?? null);
    if (json !== undefined) out[field.property] = json;
  }
  return out;
}

function valueFromApi(shape: Shape, json: unknown): TfValue {
  if (json === null || json === undefined) return null;
  switch (shape.kind) {
    case "scalar":
      return json as string | number | boolean;
    case "list":
      return [...(json as TfValue[])];
    case "map":
      return { ...(json as TfObject) };
    case "object":
      return objectFromApi(shape.fields, json as Record<string, unknown>);
    case "objectList":
      return (json as Record<string, unknown>[]).map((item) => objectFromApi(shape.element.fields, item));
  }
}

/** An answer as a Terraform object: every attribute of the model, null where the answer has nothing. */
export function objectFromApi(fields: Field[], json: Record<string, unknown>): TfObject {
  const out: TfObject = {};
  for (const field of fields) out[field.attribute] = field.property === null ? null : valueFromApi(field.shape, json[field.property]);
  return out;
}

const isEmptyCollection = (v: TfValue | undefined) =>
  (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);

/**
 * Where the API fills an empty map or list for an omitted one, empty and
 * null mean the same: keep whichever the earlier value had (null when there
 * is none, as on import), so the same configuration never shows a diff.
 */
export function reconcile(fields: Field[], answered: TfObject, earlier: TfObject | null): TfObject {
  const out: TfObject = { ...answered };
  for (const field of fields) {
    const value = answered[field.attribute];
    const before = earlier?.[field.attribute] ?? null;
    if (field.defaulted && isEmptyCollection(value) && before === null) out[field.attribute] = null;
  }
  return out;
}
