import { eq } from "drizzle-orm";
import { exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { webcrypto } from "node:crypto";
import type { Db } from "../db/client.ts";
import { settings } from "../db/schema.ts";

const SIGNING_KEY = "token_signing_key";

export interface SigningKey {
  kid: string;
  privateKey: webcrypto.CryptoKey;
  publicKey: webcrypto.CryptoKey;
}

/**
 * The ES256 key that signs tenant tokens, shared by every replica through the
 * settings table. The first process to start creates it; a racing second one
 * loses the insert and reads the winner's key.
 */
export async function loadSigningKey(db: Db): Promise<SigningKey> {
  const existing = await db.select().from(settings).where(eq(settings.key, SIGNING_KEY));
  let jwk = existing[0]?.value as (JWK & { kid: string }) | undefined;
  if (!jwk) {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const fresh = { ...(await exportJWK(privateKey)), kid: crypto.randomUUID() };
    await db.insert(settings).values({ key: SIGNING_KEY, value: fresh }).onConflictDoNothing();
    const [row] = await db.select().from(settings).where(eq(settings.key, SIGNING_KEY));
    jwk = row!.value as JWK & { kid: string };
  }
  const { d: _private, ...publicJwk } = jwk;
  return {
    kid: jwk.kid,
    privateKey: (await importJWK(jwk, "ES256")) as webcrypto.CryptoKey,
    publicKey: (await importJWK(publicJwk, "ES256")) as webcrypto.CryptoKey,
  };
}

