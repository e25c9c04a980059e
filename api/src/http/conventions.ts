import { badRequest, preconditionFailed } from "./problem.ts";

/** Strong ETag of a resource: the global revision that last wrote it. */
export const etagOf = (revision: number): string => `"${revision}"`;

/** Weak comparison (RFC 9110 8.8.3.2), for If-None-Match: W/"5" and "5" are the same version. */
function etagList(header: string): string[] {
  return header.split(",").map((t) => t.trim().replace(/^W\//, ""));
}

/**
 * Strong comparison (RFC 9110 13.1.1), for If-Match: a weak tag matches
 * nothing, since it does not promise the same version a write would replace.
 */
function strongEtagList(header: string): string[] {
  return header
    .split(",")
    .map((t) => t.trim())
    .filter((t) => !t.startsWith("W/"));
}

export type PutIntent = "create" | "replace";

/**
 * RFC 9110 preconditions for a PUT: If-Match names the version being replaced,
 * `If-None-Match: *` makes the PUT create-only.
 */
export function putIntent(currentEtag: string | null, ifMatch?: string, ifNoneMatch?: string): PutIntent {
  if (ifNoneMatch !== undefined) {
    const tags = etagList(ifNoneMatch);
    if (currentEtag !== null && (tags.includes("*") || tags.includes(currentEtag))) {
      throw preconditionFailed("the resource exists and If-None-Match forbids replacing it");
    }
  }
  requireMatch(currentEtag, ifMatch);
  return currentEtag === null ? "create" : "replace";
}

/** If-Match on PUT or DELETE: the write goes ahead only against the named version. */
export function requireMatch(currentEtag: string | null, ifMatch?: string): void {
  if (ifMatch === undefined) return;
  const tags = strongEtagList(ifMatch);
  if (currentEtag === null) throw preconditionFailed("If-Match was given but the resource does not exist");
  if (!tags.includes("*") && !tags.includes(currentEtag)) {
    throw preconditionFailed(`If-Match ${ifMatch} does not match the current ETag ${currentEtag}`);
  }
}

/** True when a conditional GET can answer 304. */
export function notModified(currentEtag: string, ifNoneMatch?: string): boolean {
  if (ifNoneMatch === undefined) return false;
  // A client echoing the one ETag it was given, the usual case, needs no parsing.
  if (ifNoneMatch === currentEtag) return true;
  const tags = etagList(ifNoneMatch);
  return tags.includes("*") || tags.includes(currentEtag);
}

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
