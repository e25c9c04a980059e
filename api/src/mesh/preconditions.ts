/**
 * The preconditions of a write (RFC 9110 13.1): a write goes ahead only
 * against the version the caller names. A version's tag is its ETag, the
 * global revision that last wrote the row; the routes take the tags from
 * If-Match and If-None-Match and hand them down as they came.
 */
import { MeshRefusal } from "./refusal.ts";

/** Strong ETag of a resource: the global revision that last wrote it. */
export const etagOf = (revision: number): string => `"${revision}"`;

/** Weak comparison (RFC 9110 8.8.3.2), for If-None-Match: W/"5" and "5" are the same version. */
export function weakEtags(header: string): string[] {
  return header.split(",").map((t) => t.trim().replace(/^W\//, ""));
}

/**
 * Strong comparison (RFC 9110 13.1.1), for If-Match: a weak tag matches
 * nothing, since it does not promise the same version a write would replace.
 */
function strongEtags(header: string): string[] {
  return header
    .split(",")
    .map((t) => t.trim())
    .filter((t) => !t.startsWith("W/"));
}

const failed = (detail: string) => new MeshRefusal("precondition-failed", detail);

export type PutIntent = "create" | "replace";

/**
 * RFC 9110 preconditions for a PUT: If-Match names the version being replaced,
 * `If-None-Match: *` makes the PUT create-only.
 */
export function putIntent(currentEtag: string | null, ifMatch?: string, ifNoneMatch?: string): PutIntent {
  if (ifNoneMatch !== undefined) {
    const tags = weakEtags(ifNoneMatch);
    if (currentEtag !== null && (tags.includes("*") || tags.includes(currentEtag))) {
      throw failed("the resource exists and If-None-Match forbids replacing it");
    }
  }
  requireMatch(currentEtag, ifMatch);
  return currentEtag === null ? "create" : "replace";
}

/** If-Match on PUT or DELETE: the write goes ahead only against the named version. */
export function requireMatch(currentEtag: string | null, ifMatch?: string): void {
  if (ifMatch === undefined) return;
  const tags = strongEtags(ifMatch);
  if (currentEtag === null) throw failed("If-Match was given but the resource does not exist");
  if (!tags.includes("*") && !tags.includes(currentEtag)) {
    throw failed(`If-Match ${ifMatch} does not match the current ETag ${currentEtag}`);
  }
}
