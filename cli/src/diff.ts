/**
 * Field-level differences between two JSON values, as `weft apply` shows
 * what a write changes: one line per leaf that was added, removed or
 * changed, named by its path (`ports[0].port`).
 */
import { printable } from "./printable.ts";

export type Change =
  | { op: "add"; path: string; after: unknown }
  | { op: "remove"; path: string; before: unknown }
  | { op: "change"; path: string; before: unknown; after: unknown };

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isContainer = (v: unknown): v is Record<string, unknown> | unknown[] => isObject(v) || Array.isArray(v);
const IDENT = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

export function childPath(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  if (IDENT.test(key)) return parent ? `${parent}.${key}` : key;
  return `${parent}[${JSON.stringify(key)}]`;
}

/** The leaves under a value, with their paths; an empty object or array is a leaf of its own. */
function leaves(path: string, v: unknown): [string, unknown][] {
  if (!isContainer(v)) return [[path, v]];
  const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v);
  if (entries.length === 0) return [[path, v]];
  return entries.flatMap(([k, x]) => leaves(childPath(path, k), x));
}

/** Changes from `before` to `after`; a key in `ignore` is skipped at the top level (etag, timestamps). */
export function diff(before: unknown, after: unknown, ignore: readonly string[] = [], path = ""): Change[] {
  if (before === undefined && after === undefined) return [];
  if (before === undefined) return leaves(path, after).map(([p, a]) => ({ op: "add", path: p, after: a }));
  if (after === undefined) return leaves(path, before).map(([p, b]) => ({ op: "remove", path: p, before: b }));
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => !(path === "" && ignore.includes(k)));
    return keys.flatMap((k) => diff(before[k], after[k], [], childPath(path, k)));
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length + after.length > 0) {
    const n = Math.max(before.length, after.length);
    return Array.from({ length: n }, (_, i) => diff(before[i], after[i], [], childPath(path, i))).flat();
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ op: "change", path, before, after }];
}

const show = (v: unknown): string => printable(JSON.stringify(v) ?? "undefined");

/** One line per change: `+ path: value`, `- path: value`, `~ path: old -> new`. */
export function formatChange(c: Change): string {
  const path = printable(c.path || "(whole)");
  if (c.op === "add") return `+ ${path}: ${show(c.after)}`;
  if (c.op === "remove") return `- ${path}: ${show(c.before)}`;
  return `~ ${path}: ${show(c.before)} -> ${show(c.after)}`;
}
