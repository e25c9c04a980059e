import { and, eq, gt } from "drizzle-orm";
import { SignJWT, jwtVerify, errors as joseErrors } from "jose";
import type { Config } from "../config.ts";
import type { Db } from "../db/client.ts";
import { apiTokens, revocations } from "../db/schema.ts";
import { read } from "../db/transactions.ts";
import type { ChangeFeed } from "../services/change-feed.ts";
import { SCOPES, type Principal, type Scope } from "./principal.ts";
import type { SigningKey } from "./token-keys.ts";

const ISSUER = "weft";
const AUDIENCE = "weft-api";
/** Verified tokens kept; a full cache is emptied rather than scanned. */
const CACHE_LIMIT = 10_000;

/** What a token may be: its longest life, and how many one tenant may mint per minute. */
export interface TokenPolicy {
  maxTtlSeconds: number;
  mintLimit: number;
}

/** WEFT_TOKEN_MAX_TTL and WEFT_TOKEN_MINT_LIMIT; unset (in-process configs) means the defaults. The one place that says so. */
export function tokenPolicy(config: Pick<Config, "tokenMaxTtlSeconds" | "tokenMintLimit">): TokenPolicy {
  return { maxTtlSeconds: config.tokenMaxTtlSeconds ?? 31_536_000, mintLimit: config.tokenMintLimit ?? 60 };
}

/** Replicas' clocks may differ by this much: a token minted at the maximum life on one is still good on another. */
const CLOCK_SKEW_SECONDS = 60;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type TenantPrincipal = Extract<Principal, { kind: "tenant" }>;

export class TokenRejected extends Error {}

/**
 * Token mints per key (tenant) in fixed windows, in this replica's memory:
 * with N replicas a tenant may mint up to N times the limit. At most
 * `maxKeys` windows are kept; when full, ended windows go first, then the
 * oldest (which forgets that tenant's count: memory stays bounded).
 */
export class MintLimiter {
  private readonly windows = new Map<string | number, { start: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {}

  get size(): number {
    return this.windows.size;
  }

  /** Counts one mint; 0 when admitted, else the seconds until the key may mint again (for Retry-After). */
  take(key: string | number): number {
    const wait = this.peek(key);
    if (wait > 0) return wait;
    const t = this.now();
    const w = this.windows.get(key);
    if (w && t - w.start < this.windowMs) {
      w.count++;
      return 0;
    }
    this.windows.delete(key);
    if (this.windows.size >= this.maxKeys) this.evict(t);
    this.windows.set(key, { start: t, count: 1 });
    return 0;
  }

  /** What take would answer, without counting (dry runs). */
  peek(key: string | number): number {
    const t = this.now();
    const w = this.windows.get(key);
    if (!w || t - w.start >= this.windowMs || w.count < this.limit) return 0;
    return Math.max(1, Math.ceil((w.start + this.windowMs - t) / 1000));
  }

  private evict(t: number): void {
    for (const [key, w] of this.windows) if (t - w.start >= this.windowMs) this.windows.delete(key);
    // Insertion order is start order: the first entries are the oldest windows.
    for (const key of this.windows.keys()) {
      if (this.windows.size < this.maxKeys) break;
      this.windows.delete(key);
    }
  }
}

/**
 * Tenant tokens are ES256 JWTs. A signature is not enough: a token's
 * authority is its api_tokens row (same id and tenant, scopes covering the
 * claimed ones, expiry not before the claimed one), which revocation and
 * tenant deletion remove; and no token lives longer than the maximum TTL,
 * whatever it claims. So a copy of the signing key alone forges nothing.
 *
 * Verifying a signature and reading the row cost ~0.2 ms and a query, too
 * much for every request, so a verified token is cached until it expires; a
 * replica never accepts a token whose row it has not read itself. The cache
 * is only safe because every replica also keeps the set of revoked ids and
 * checks it on every hit: revocations arrive through the change feed
 * (LISTEN/NOTIFY) at once, and a poll of the revocations table is the backstop.
 */
export class TenantTokens {
  private readonly verified = new Map<string, TenantPrincipal>();
  /** Revoked token id -> expiry (s); kept until the token would have expired anyway. */
  private readonly revoked = new Map<string, number>();
  private lastRevision = 0;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  /** The refresh in flight, and whether another must follow it (a revocation arrived meanwhile). */
  private refreshing: Promise<void> | undefined;
  private refreshAgain = false;
  private readonly maxTtlSeconds: number;

  constructor(
    private readonly db: Db,
    private readonly key: SigningKey,
    opts: { maxTtlSeconds?: number; feed?: ChangeFeed } = {},
  ) {
    this.maxTtlSeconds = opts.maxTtlSeconds ?? tokenPolicy({}).maxTtlSeconds;
    this.unsubscribe = opts.feed?.subscribe((event) => {
      if (event.op !== "delete") return;
      if (event.kind === "token") {
        // Refused at once; the refresh below replaces this bound with the row's own expiry.
        if (!this.revoked.has(event.name)) this.revoked.set(event.name, Date.now() / 1000 + this.maxTtlSeconds + CLOCK_SKEW_SECONDS);
        this.refreshSoon();
      } else if (event.kind === "tenant") {
        // Its tokens' ids are in the revocations table only.
        this.refreshSoon();
      }
    });
  }

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
    // A revoked token's row is gone: say why it is refused, and spare the query.
    this.recheck(principal);
    await this.verifyRow(principal);
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
        requiredClaims: ["jti", "exp", "iat", "tid", "scp"],
      });
      const now = Date.now() / 1000;
      if (payload.exp! - payload.iat! > this.maxTtlSeconds || payload.exp! > now + this.maxTtlSeconds + CLOCK_SKEW_SECONDS) {
        throw new TokenRejected("token lifetime exceeds the maximum");
      }
      const scopes = payload.scp;
      if (
        typeof payload.tid !== "number" ||
        !UUID.test(payload.jti!) ||
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

  /** The token's row: without it (revoked, tenant deleted, or never minted) the signature is worth nothing. */
  private async verifyRow(principal: TenantPrincipal): Promise<void> {
    const [row] = await read(this.db, principal.tenantId, (tx) =>
      tx
        .select({ scopes: apiTokens.scopes, expiresAt: apiTokens.expiresAt })
        .from(apiTokens)
        .where(and(eq(apiTokens.id, principal.tokenId), eq(apiTokens.tenantId, principal.tenantId))),
    );
    if (
      !row ||
      !principal.scopes.every((s) => row.scopes.includes(s)) ||
      principal.expiresAt > Math.floor(row.expiresAt.getTime() / 1000)
    ) {
      throw new TokenRejected("token invalid");
    }
  }

  /** Takes effect on this replica at once; others see it through the change feed (or, failing that, their next poll). */
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

  /** Refreshes now, or once more after the refresh in flight: a revocation committed after it started must not wait for the poll. */
  private refreshSoon(): void {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    this.refreshing = this.refreshRevocations()
      .catch(() => {
        // The database is unreachable: the poll tries again.
      })
      .finally(() => {
        this.refreshing = undefined;
        if (this.refreshAgain) {
          this.refreshAgain = false;
          this.refreshSoon();
        }
      });
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
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}
