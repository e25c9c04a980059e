// SPIFFE ID rules (spiffe/spiffe standards/SPIFFE-ID.md). Pure functions that
// return every problem found, each with the request field it belongs to, so a
// 400 response can list them all at once.
import type { FieldError } from "./errors.ts";

export const MAX_TRUST_DOMAIN_BYTES = 255;
/** The spec asks implementations to support IDs up to 2048 bytes; we refuse longer ones. */
export const MAX_SPIFFE_ID_BYTES = 2048;
const SCHEME = "spiffe://";

const TRUST_DOMAIN_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/;

export function validateTrustDomain(td: string, field = "trustDomain"): FieldError[] {
  const errors: FieldError[] = [];
  const bytes = Buffer.byteLength(td, "utf8");
  if (bytes === 0) errors.push({ field, message: "trust domain must not be empty" });
  if (bytes > MAX_TRUST_DOMAIN_BYTES) {
    errors.push({ field, message: `trust domain is ${bytes} bytes; at most ${MAX_TRUST_DOMAIN_BYTES} allowed` });
  }
  if (bytes > 0 && !TRUST_DOMAIN_CHARS.test(td)) {
    const hint = /[A-Z]/.test(td) ? " (capital letters are not allowed: use lowercase)" : "";
    errors.push({
      field,
      message: `trust domain may contain only lowercase letters, digits, '.', '-' and '_'${hint}`,
    });
  }
  return errors;
}

/**
 * A workload path such as "/ns/prod/sa/web". The root path ("" or "/") is
 * refused: an SVID's SPIFFE ID must name a workload, not the trust domain.
 */
export function validatePath(path: string, field = "path"): FieldError[] {
  if (path.length === 0 || path === "/") {
    return [{ field, message: "path must name a workload, e.g. /ns/prod/sa/web" }];
  }
  if (!path.startsWith("/")) return [{ field, message: "path must start with '/'" }];
  if (path.endsWith("/")) return [{ field, message: "path must not end with '/'" }];
  const errors: FieldError[] = [];
  if (path.includes("%")) {
    errors.push({ field, message: "path must not contain percent-encoding ('%')" });
  }
  const segments = path.slice(1).split("/");
  segments.forEach((seg, i) => {
    const where = `segment ${i + 1}`;
    if (seg === "") errors.push({ field, message: `${where} is empty ('//' is not allowed)` });
    else if (seg === "." || seg === "..") errors.push({ field, message: `${where} is '${seg}', which is not allowed` });
    else if (!seg.includes("%") && !SEGMENT_CHARS.test(seg)) {
      errors.push({ field, message: `${where} may contain only letters, digits, '.', '-' and '_'` });
    }
  });
  return errors;
}

export function spiffeId(trustDomain: string, path: string): string {
  return `${SCHEME}${trustDomain}${path}`;
}

/** Validates both parts and the joined ID's length. */
export function validateSpiffeId(
  trustDomain: string,
  path: string,
  fields: { trustDomain: string; path: string } = { trustDomain: "trustDomain", path: "path" },
): FieldError[] {
  const errors = [...validateTrustDomain(trustDomain, fields.trustDomain), ...validatePath(path, fields.path)];
  const bytes = Buffer.byteLength(spiffeId(trustDomain, path), "utf8");
  if (bytes > MAX_SPIFFE_ID_BYTES) {
    errors.push({ field: fields.path, message: `SPIFFE ID would be ${bytes} bytes; at most ${MAX_SPIFFE_ID_BYTES} allowed` });
  }
  return errors;
}

/** Splits "spiffe://td/path" into its parts, or returns errors for `field`. */
export function parseSpiffeId(
  id: string,
  field = "spiffeId",
): { ok: true; trustDomain: string; path: string } | { ok: false; errors: FieldError[] } {
  if (!id.startsWith(SCHEME)) return { ok: false, errors: [{ field, message: "SPIFFE ID must start with spiffe://" }] };
  const rest = id.slice(SCHEME.length);
  const slash = rest.indexOf("/");
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? "" : rest.slice(slash);
  const errors = validateSpiffeId(trustDomain, path, { trustDomain: field, path: field });
  return errors.length ? { ok: false, errors } : { ok: true, trustDomain, path };
}
