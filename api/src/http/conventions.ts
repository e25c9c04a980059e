/**
 * The conventions of reads: the 304 of a conditional GET, opaque cursors and
 * pages. A write's preconditions (If-Match, If-None-Match) are the mesh's:
 * mesh/preconditions.ts.
 */
import { createHash } from "node:crypto";
import { weakEtags } from "../mesh/preconditions.ts";
import { badRequest } from "./problem.ts";

/** True when a conditional GET can answer 304. */
export function notModified(currentEtag: string, ifNoneMatch?: string): boolean {
  if (ifNoneMatch === undefined) return false;
  // A client echoing the one ETag it was given, the usual case, needs no parsing.
  if (ifNoneMatch === currentEtag) return true;
  const tags = weakEtags(ifNoneMatch);
  return tags.includes("*") || tags.includes(currentEtag);
}

/** A strong ETag for a representation with no revision of its own (a bundle): a digest of its bytes. */
export const contentEtag = (representation: string): string =>
  `"${createHash("sha256").update(representation).digest("base64url").slice(0, 27)}"`;

/** Cursors are opaque to clients: base64url of the last key of the previous page. */
export function encodeCursor(lastKey: string | number): string {
  return Buffer.from(JSON.stringify([lastKey])).toString("base64url");
}

export function decodeCursor<T extends string | number>(cursor: string | undefined, kind: "string" | "number"): T | undefined {
  if (cursor === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed.length === 1 && typeof parsed[0] === kind) return parsed[0] as T;
  } catch {
    // fall through to the same answer as a well-formed but foreign cursor
  }
  throw badRequest("cursor is not one this API issued", [
    { field: "query.cursor", message: "must be a nextCursor value from a previous page" },
  ]);
}

export const DEFAULT_PAGE_SIZE = 100;

/** Fetch limit+1 rows, return limit of them and the cursor of the next page. */
export function page<Row, Item>(
  rows: Row[],
  limit: number,
  keyOf: (row: Row) => string | number,
  toItem: (row: Row) => Item,
): { items: Item[]; nextCursor: string | null } {
  const more = rows.length > limit;
  const shown = more ? rows.slice(0, limit) : rows;
  const last = shown[shown.length - 1];
  return {
    items: shown.map(toItem),
    nextCursor: more && last !== undefined ? encodeCursor(keyOf(last)) : null,
  };
}
