import { and, eq, isNotNull, like, ne, sql } from "drizzle-orm";
import { exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import type { webcrypto } from "node:crypto";
import type { Kek } from "../ca/kek.ts";
import type { Db } from "../db/client.ts";
import { settings } from "../db/schema.ts";

const SIGNING_KEY = "token_signing_key";

export interface SigningKey {
  kid: string;
  privateKey: webcrypto.CryptoKey;
  publicKey: webcrypto.CryptoKey;
}

/**
 * What the settings row holds: the public JWK in the clear and the private
 * JWK sealed under the KEK (AES-256-GCM, bound to the row and the key id), so
 * a copy of the database (a backup, a world-readable data directory) does not
 * let anyone sign tokens. Versions before sealing stored the private JWK
 * itself (with its `d`); such a key is retired on start (loadSigningKey).
 */
type SealedRow = JWK & { kid: string; sealed: string };
type PlainRow = JWK & { kid: string; d: string };

const contextOf = (kid: string) => `weft/settings/${SIGNING_KEY}/${kid}`;

function publicPart(jwk: JWK & { kid: string }): JWK & { kid: string } {
  const { kty, crv, x, y, kid } = jwk;
  return { kty, crv, x, y, kid } as JWK & { kid: string };
}

function seal(jwk: PlainRow, kek: Kek): SealedRow {
  return { ...publicPart(jwk), sealed: kek.seal(Buffer.from(JSON.stringify(jwk), "utf8"), contextOf(jwk.kid)) };
}

async function open(row: SealedRow, kek: Kek): Promise<SigningKey> {
  let jwk: PlainRow;
  try {
    jwk = JSON.parse(kek.open(row.sealed, contextOf(row.kid)).toString("utf8")) as PlainRow;
  } catch {
    // Never fall back to a fresh key: tokens signed by the replicas holding the right KEK would stop working.
    throw new Error(
      "cannot open the sealed token signing key: wrong KEK (WEFT_KEK or key file; every replica needs the same one) or corrupted data",
    );
  }
  return fromJwk(jwk);
}

async function fromJwk(jwk: PlainRow): Promise<SigningKey> {
  return {
    kid: jwk.kid,
    privateKey: (await importJWK(jwk, "ES256")) as webcrypto.CryptoKey,
    publicKey: (await importJWK(publicPart(jwk), "ES256")) as webcrypto.CryptoKey,
  };
}

async function generate(): Promise<PlainRow> {
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: crypto.randomUUID() } as PlainRow;
}


/** One key per process for a throwaway KEK: every app of the process (tests run several on one database) shares it. */
let ephemeral: Promise<SigningKey> | undefined;

export interface LoadedSigningKey {
  key: SigningKey;
  /** Signing keys sealed under other KEKs found in the settings table: replicas that disagree on the KEK (log it). */
  otherKeks: number;
}

/**
 * The ES256 key that signs tenant tokens, shared by every replica (of one
 * KEK) through the settings table, its private half sealed under the KEK, in
 * the row `token_signing_key/<KEK id>`. The first process to start creates
 * it; a racing second one loses the insert and reads the winner's key.
 *
 * A replica given another KEK cannot open that key and gets a key of its
 * own: its tokens are good only on replicas sharing its KEK (as CA keys are),
 * and the caller logs the disagreement. Tokens need their api_tokens row
 * besides, so no key, old or new, mints authority by itself.
 *
 * The plain row `token_signing_key` of versions before sealing is retired
 * on start: a fresh key is sealed into this KEK's row (first insert wins, so
 * replicas starting together all end with the same key), and only then is
 * the plain row deleted. Tokens the plain key signed stop working and must
 * be minted again: a key that was readable in the database, its backups and
 * its freed pages must be taken as known, and the row check alone would not
 * stop a forger who also holds a copy of api_tokens.
 *
 * With a throwaway KEK (no WEFT_KEK, no data directory: in-process tests) a
 * key sealed under it could be opened by no other process, so the key is
 * kept in this process's memory and the settings table is not touched.
 */
export async function loadSigningKey(db: Db, kek: Kek, opts: { ephemeral?: boolean } = {}): Promise<LoadedSigningKey> {
  if (opts.ephemeral) return { key: await (ephemeral ??= generate().then(fromJwk)), otherKeks: 0 };
  const name = `${SIGNING_KEY}/${kek.id(SIGNING_KEY)}`;
  const read = async (key: string) => (await db.select().from(settings).where(eq(settings.key, key)))[0]?.value;
  let value = await read(name);
  if (value === undefined) {
    // A key that sat in the clear is retired, not sealed: every backup and
    // every page PGlite or Postgres ever wrote may still hold it.
    const jwk = await generate();
    await db.insert(settings).values({ key: name, value: seal(jwk, kek) }).onConflictDoNothing();
    value = await read(name);
  }
  // After the sealed copy exists (ours or a racing replica's, which holds the same key).
  await db.delete(settings).where(and(eq(settings.key, SIGNING_KEY), isNotNull(sql`${settings.value} ->> 'd'`)));
  if (typeof (value as Partial<SealedRow> | undefined)?.sealed !== "string") {
    throw new Error(`the settings row ${name} holds no sealed key`);
  }
  const [{ n }] = (await db
    .select({ n: sql<number>`count(*)::int` })
    .from(settings)
    .where(and(like(settings.key, `${SIGNING_KEY}/%`), ne(settings.key, name)))) as [{ n: number }];
  return { key: await open(value as SealedRow, kek), otherKeks: n };
}
