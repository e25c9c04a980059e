/**
 * Planned state for a create or update, without I/O: config values where
 * the user gave them, prior values where nothing that determines them
 * changes, UNKNOWN for what the API will decide.
 */
import { UNKNOWN, type AttributePath, type TfObject } from "../framework.ts";
import type { Field } from "./fields.ts";
import { deepEqual } from "./values.ts";

export interface Change {
  prior: TfObject;
  planned: TfObject;
  config: TfObject;
}

/** When an update may keep a computed attribute's prior value (it keeps nothing when absent). */
export type Keeps = Record<string, (change: Change) => boolean>;

export interface PlanShape {
  fields: Field[];
  /** Attributes whose change replaces the resource (tenant, name; a join token's ttl). */
  replaceOn: string[];
  keeps: Keeps;
  /** The id from the attributes it is made of, null while one is unknown; absent: the API assigns it. */
  idOf?: (value: TfObject) => string | null;
}

export interface Planned {
  planned: TfObject;
  action: "create" | "replace" | "update" | "none";
  requiresReplace: AttributePath[];
}

const settable = (f: Field) => f.required || f.optional;

export function planChange(shape: PlanShape, prior: TfObject | null, proposed: TfObject, config: TfObject): Planned {
  const settled: TfObject = { ...proposed };
  // Optional+computed and left out of the config: the value stays. Terraform proposes the prior value for
  // plain attributes but null for nested ones (a service's topology), so take it from the prior state.
  if (prior !== null) {
    for (const f of shape.fields) if (f.optional && f.computed && (config[f.attribute] ?? null) === null) settled[f.attribute] = prior[f.attribute] ?? null;
    const changed = shape.fields.some((f) => settable(f) && !deepEqual(settled[f.attribute] ?? null, prior[f.attribute] ?? null));
    if (!changed) return { planned: settled, action: "none", requiresReplace: [] };
  }
  const replacing = prior === null ? [] : shape.replaceOn.filter((a) => !deepEqual(settled[a] ?? null, prior[a] ?? null));
  const fresh = prior === null || replacing.length > 0;
  const planned: TfObject = { ...settled };
  for (const f of shape.fields) {
    if (!f.computed) continue;
    if (f.optional && (config[f.attribute] ?? null) !== null) continue;
    if (fresh) planned[f.attribute] = UNKNOWN;
    else if (!f.optional) {
      const keep = shape.keeps[f.attribute]?.({ prior: prior!, planned, config }) ?? false;
      planned[f.attribute] = keep ? (prior![f.attribute] ?? null) : UNKNOWN;
    }
  }
  // "acme/web" is known at plan time whenever tenant and name are.
  if (shape.idOf) planned.id = shape.idOf(planned) ?? UNKNOWN;
  return {
    planned,
    action: prior === null ? "create" : replacing.length > 0 ? "replace" : "update",
    requiresReplace: replacing.map((attribute) => [{ attribute }]),
  };
}
