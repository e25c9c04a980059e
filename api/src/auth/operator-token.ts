import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { eq } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { settings } from "../db/schema.ts";

const OPERATOR_TOKEN_HASH = "operator_token_sha256";
export const OPERATOR_TOKEN_PREFIX = "weft_op_";

const sha256 = (s: string) => createHash("sha256").update(s).digest();

/** Only the operator token's hash is kept; the token itself is shown once. */
export class OperatorToken {
  private constructor(private readonly hash: Buffer) {}

  matches(token: string): boolean {
    return timingSafeEqual(sha256(token), this.hash);
  }

  /**
   * The token from WEFT_OPERATOR_TOKEN replaces any stored one; without it the
   * stored hash stays, and on the very first start a token is generated and
   * handed back (the only time it exists in plain text).
   */
  static async establish(db: Db, fromEnv: string | undefined): Promise<{ operator: OperatorToken; generated?: string }> {
    if (fromEnv !== undefined) {
      const hex = sha256(fromEnv).toString("hex");
      await db
        .insert(settings)
        .values({ key: OPERATOR_TOKEN_HASH, value: hex })
        .onConflictDoUpdate({ target: settings.key, set: { value: hex, updatedAt: new Date() } });
      return { operator: new OperatorToken(Buffer.from(hex, "hex")) };
    }
    const [row] = await db.select().from(settings).where(eq(settings.key, OPERATOR_TOKEN_HASH));
    if (row) return { operator: new OperatorToken(Buffer.from(row.value as string, "hex")) };
    const generated = OPERATOR_TOKEN_PREFIX + randomBytes(32).toString("base64url");
    const hex = sha256(generated).toString("hex");
    const inserted = await db
      .insert(settings)
      .values({ key: OPERATOR_TOKEN_HASH, value: hex })
      .onConflictDoNothing()
      .returning();
    if (inserted.length === 0) {
      // Another replica generated one first; its token is the one to use.
      const [winner] = await db.select().from(settings).where(eq(settings.key, OPERATOR_TOKEN_HASH));
      return { operator: new OperatorToken(Buffer.from(winner!.value as string, "hex")) };
    }
    return { operator: new OperatorToken(Buffer.from(hex, "hex")), generated };
  }
}
