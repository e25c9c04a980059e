// JWT-SVIDs (spiffe/spiffe standards/JWT-SVID.md): ES256 JWS, header with
// only alg, kid and typ, claims sub, aud, exp and iat.
import { SignJWT } from "jose";
import type { KeyObject } from "node:crypto";
import type { FieldError } from "./errors.ts";

export const DEFAULT_JWT_SVID_TTL_MS = 5 * 60 * 1000; // SPIRE's default: 5 min
export const MAX_AUDIENCES = 32;

/** The audience must be a non-empty array of non-empty strings. */
export function validateAudience(audience: unknown, field = "audience"): FieldError[] {
  if (!Array.isArray(audience) || audience.length === 0) {
    return [{ field, message: "audience must be a non-empty array of strings" }];
  }
  if (audience.length > MAX_AUDIENCES) return [{ field, message: `at most ${MAX_AUDIENCES} audiences allowed` }];
  return audience.flatMap((a, i) =>
    typeof a === "string" && a.length > 0 ? [] : [{ field: `${field}[${i}]`, message: "audience entries must be non-empty strings" }],
  );
}

export interface JwtSvidInput {
  privateKey: KeyObject;
  kid: string;
  spiffeId: string;
  audience: readonly string[];
  now: Date;
  ttlMs?: number;
  /** The signing key's own end of life; the token never outlives it. */
  notAfter: Date;
}

export async function mintJwtSvid(input: JwtSvidInput): Promise<{ token: string; expiresAt: Date }> {
  const iat = Math.floor(input.now.getTime() / 1000);
  const exp = Math.floor(Math.min(input.now.getTime() + (input.ttlMs ?? DEFAULT_JWT_SVID_TTL_MS), input.notAfter.getTime()) / 1000);
  if (exp <= iat) throw new Error("the JWT signing key has expired; rotate it before issuing");
  const token = await new SignJWT({})
    .setProtectedHeader({ alg: "ES256", kid: input.kid, typ: "JWT" })
    .setSubject(input.spiffeId)
    .setAudience([...input.audience])
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(input.privateKey);
  return { token, expiresAt: new Date(exp * 1000) };
}
