/**
 * Paths that HTTP routes match and L7 policy rules authorize: the Gateway
 * API's rules for a path value (HTTPPathMatch), so that what a route or a
 * rule names is one path the proxy compares as written. Dot segments,
 * doubled or encoded slashes and fragments are refused: a client could
 * spell the same resource another way past a prefix ("/api/../admin",
 * "/api%2fx"), or never reach it.
 */

const PATH_CHARACTERS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+$/;

/** Why `path` (already "/" then printable ASCII, by the schema) is no plain path; null when it is one. */
export function pathValueProblem(path: string): string | null {
  if (!PATH_CHARACTERS.test(path)) return "may hold only RFC 3986 path characters and %XX escapes (no '?', '#', spaces or quotes)";
  if (path.includes("//")) return "may not hold an empty segment ('//')";
  if (/%2f/i.test(path)) return "may not hold an encoded '/' (%2F)";
  if (/\/\.\.?(\/|$)/.test(path)) return "may not hold a '.' or '..' segment";
  return null;
}
