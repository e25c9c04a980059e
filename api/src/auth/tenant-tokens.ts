import { gt } from "drizzle-orm";
import { SignJWT, jwtVerify, errors as joseErrors } from "jose";
import type { Db } from "../db/client.ts";
import { revocations } from "../db/schema.ts";
import { SCOPES, type Principal, type Scope } from "./principal.ts";
import type { SigningKey } from "./token-keys.ts";

const ISSUER = "weft";
const AUDIENCE = "weft-api";
/** Verified tokens kept; a full cache is emptied rather than scanned. */
const CACHE_LIMIT = 10_000;

export type TenantPrincipal = Extract<Principal, { kind: "tenant" }>;

export class TokenRejected extends Error {}

/**
 * Tenant tokens are ES256 JWTs. Verifying a signature costs ~0.2 ms, too much
 * for every request, so a verified token is cached until it expires; the
 * cache is only safe because every replica also keeps the set of revoked ids,
 * refreshed by polling, and checks it on every hit.
 */
export class TenantTokens {
  private readonly verified = new Map<string, TenantPrincipal>();
  /** Revoked token id -> expiry (s); kept until the token would have expired anyway. */
  private readonly revoked = new Map<string, number>();
  private lastRevision = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Db,
    private readonly key: SigningKey,
  ) {}

  async mint(claims: { tokenId: string; tenantId: number; scopes: Scope[]; expiresAt: number }): Promise<string> {
    return new SignJWT({ tid: claims.tenantId, scp: claims.scopes })
      .setProtectedHeader({ alg: "ES256", kid: this.key.kid, typ: "JWT" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setJti(claims.tokenId)
      .setSubject(claims.tokenId)
      .setIssuedAt()
      .setExpirationTime(claims.expiresAt)
      .sign(this.key.privateKey);
  }

  async verify(token: string): Promise<TenantPrincipal> {
    const cached = this.verifyCached(token);
    if (cached) return cached;
    const principal = await this.verifySignature(token);
    if (this.verified.size >= CACHE_LIMIT) this.verified.clear();
    this.verified.set(token, principal);
    return this.verifyCached(token)!;
  }

  /**
   * A token whose signature was verified before, checked again for expiry
   * and revocation, without a promise; undefined when its signature is not
   * cached (then verify() must check it). Throws TokenRejected as verify does.
   */
  verifyCached(token: string): TenantPrincipal | undefined {
    const principal = this.verified.get(token);
    if (!principal) return undefined;
    // An expired token leaves the cache; a revoked one stays, so that it is refused without a signature check.
    if (principal.expiresAt <= Date.now() / 1000) this.verified.delete(token);
    return this.recheck(principal);
  }

  /**
   * A principal this instance verified earlier, checked again for expiry and
   * revocation: what verifyCached adds to its lookup, for a caller that kept
   * the principal of a token it has seen (the guard, per connection).
   */
  recheck(principal: TenantPrincipal): TenantPrincipal {
    if (principal.expiresAt <= Date.now() / 1000) throw new TokenRejected("token expired");
    if (this.revoked.has(principal.tokenId)) throw new TokenRejected("token revoked");
    return principal;
  }

  private async verifySignature(token: string): Promise<TenantPrincipal> {
    try {
      const { payload } = await jwtVerify(token, this.key.publicKey, {
        issuer: ISSUER,
        audience: AUDIENCE,
        algorithms: ["ES256"],
        requiredClaims: ["jti", "exp", "tid", "scp"],
      });
      const scopes = payload.scp;
      if (
        typeof payload.tid !== "number" ||
        !Array.isArray(scopes) ||
        !scopes.every((s): s is Scope => (SCOPES as readonly unknown[]).includes(s))
      ) {
        throw new TokenRejected("token claims malformed");
      }
      return { kind: "tenant", tokenId: payload.jti!, tenantId: payload.tid, scopes, expiresAt: payload.exp! };
    } catch (err) {
      if (err instanceof TokenRejected) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new TokenRejected("token expired");
      throw new TokenRejected("token invalid");
    }
  }

  /** Takes effect on this replica at once; other replicas see it at their next poll. */
  markRevoked(tokenId: string, expiresAt: number): void {
    this.revoked.set(tokenId, expiresAt);
  }

  /** Loads revocations newer than the last seen revision; revisions commit in order, so none is skipped. */
  async refreshRevocations(): Promise<void> {
    const rows = await this.db.select().from(revocations).where(gt(revocations.revision, this.lastRevision));
    const now = Date.now() / 1000;
    for (const row of rows) {
      this.lastRevision = Math.max(this.lastRevision, row.revision);
      const exp = row.expiresAt.getTime() / 1000;
      if (exp > now) this.revoked.set(row.tokenId, exp);
    }
    for (const [id, exp] of this.revoked) if (exp <= now) this.revoked.delete(id);
  }

  async start(pollMs: number): Promise<void> {
    await this.refreshRevocations();
    const tick = () => {
      this.timer = setTimeout(() => {
        this.refreshRevocations()
          .catch(() => {
            // The database is unreachable: keep the revocations already known
            // and try again at the next tick.
          })
          .finally(() => {
            if (this.timer) tick();
          });
      }, pollMs);
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
