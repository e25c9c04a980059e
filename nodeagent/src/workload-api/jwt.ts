// SPDX-License-Identifier: Apache-2.0
/**
 * JWT-SVIDs for the Workload API: minted by the API under the node's
 * credential (which issues them only for identities of workloads on this
 * node), kept per (identity, audience) until half their life as SPIRE's
 * agent does; and validated against a trust domain's JWT keys (the
 * JWT-SVID rules of the SPIFFE standard: ES/RS/PS algorithms only, a kid,
 * sub a SPIFFE ID, aud holding the audience, exp in the future).
 */
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, type JWK } from "jose";
import type { ApiClient } from "../agent/client.ts";

const ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"];

export class JwtSvidCache {
  private readonly cache = new Map<string, { token: string; renewAt: number }>();

  constructor(
    private readonly client: Pick<ApiClient, "issueJwtSvid">,
    private readonly now: () => number = Date.now,
  ) {}

  async get(tenant: string, identity: string, spiffeId: string, audience: readonly string[]): Promise<string> {
    const key = JSON.stringify([tenant, identity, spiffeId, [...new Set(audience)].sort()]);
    const hit = this.cache.get(key);
    if (hit && hit.renewAt > this.now()) return hit.token;
    const answer = await this.client.issueJwtSvid(tenant, identity, audience);
    const claims = decodeJwt(answer.token);
    if (claims.sub !== spiffeId) throw new Error(`the API minted a JWT-SVID for ${String(claims.sub)}, not ${spiffeId}`);
    const issuedAt = typeof claims.iat === "number" ? claims.iat * 1000 : this.now();
    const expires = Date.parse(answer.expiresAt);
    this.cache.set(key, { token: answer.token, renewAt: issuedAt + (expires - issuedAt) / 2 });
    // Bounded: entries past their half-life go when the map grows.
    if (this.cache.size > 1024) for (const [k, v] of this.cache) if (v.renewAt <= this.now()) this.cache.delete(k);
    return answer.token;
  }
}

export interface JwtValidationError {
  error: string;
}

/** Validates `token` for `audience` with the JWT keys of its trust domain (`keysOf`; undefined: not trusted). */
export async function validateJwtSvid(
  token: string,
  audience: string,
  keysOf: (trustDomain: string) => Record<string, unknown>[] | undefined,
): Promise<{ spiffeId: string; claims: Record<string, unknown> } | JwtValidationError> {
  let sub: unknown;
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
    sub = decodeJwt(token).sub;
  } catch (err) {
    return { error: `malformed JWT-SVID: ${(err as Error).message}` };
  }
  if (typeof header.alg !== "string" || !ALGORITHMS.includes(header.alg)) return { error: `unsupported JWT-SVID algorithm ${JSON.stringify(header.alg)}` };
  if (typeof header.kid !== "string" || header.kid === "") return { error: "the JWT-SVID has no key ID" };
  if (header.typ !== undefined && header.typ !== "JWT" && header.typ !== "JOSE") return { error: `the JWT-SVID's typ is ${JSON.stringify(header.typ)}, not JWT or JOSE` };
  let trustDomain: string;
  try {
    const u = new URL(String(sub));
    if (u.protocol !== "spiffe:" || !u.host || u.pathname === "" || u.pathname === "/") throw new Error();
    trustDomain = u.host;
  } catch {
    return { error: `the JWT-SVID's subject ${JSON.stringify(sub)} is not a SPIFFE ID` };
  }
  const keys = keysOf(trustDomain);
  if (!keys) return { error: `no keys found for trust domain ${JSON.stringify(trustDomain)}` };
  try {
    // The bundle marks its keys `use: "jwt-svid"`; jose picks only keys without `use` or with "sig".
    const jwks = createLocalJWKSet({ keys: keys.map(({ use: _use, ...k }) => k as JWK) });
    const { payload } = await jwtVerify(token, jwks, { audience, algorithms: ALGORITHMS, requiredClaims: ["sub", "aud", "exp"] });
    return { spiffeId: String(payload.sub), claims: payload as Record<string, unknown> };
  } catch (err) {
    return { error: `the JWT-SVID does not validate: ${(err as Error).message}` };
  }
}
