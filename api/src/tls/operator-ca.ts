// The operator CA: the root that signs the API's own serving certificates
// (WEFT_TLS=self), kept as the token signing key is (auth/token-keys.ts): one
// settings row per KEK, the certificate in the clear and the private key
// sealed under the KEK, so every replica holding the KEK serves certificates
// that chain to the same root, and a copy of the database signs nothing.
import { createPrivateKey, type KeyObject } from "node:crypto";
import { and, eq, like, ne, sql } from "drizzle-orm";
import { toPem } from "@weft/pki/der";
import type { Kek } from "../ca/kek.ts";
import { generateP256, privateKeyDer } from "../ca/keys.ts";
import { createSelfSignedCa } from "../ca/x509.ts";
import type { Db } from "../db/client.ts";
import { settings } from "../db/schema.ts";

const OPERATOR_CA = "operator_ca";
/** Ten years: agents and Terraform pin this root, so it should outlive many serving certificates. */
export const OPERATOR_CA_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

export interface OperatorCa {
  certDer: Buffer;
  certPem: string;
  privateKey: KeyObject;
  notAfter: Date;
}

interface Row {
  certDer: string;
  notAfter: string;
  keySealed: string;
}

const contextOf = (rowKey: string) => `weft/settings/${rowKey}`;

function generate(kek: Kek, rowKey: string, now: Date): Row {
  const key = generateP256();
  // pathLength 0: the root signs serving certificates only, never another CA.
  const cert = createSelfSignedCa({
    commonNamePrefix: "Weft operator CA",
    altNames: [],
    pathLength: 0,
    privateKey: key.privateKey,
    publicKeySpki: key.publicKeySpki,
    now,
    ttlMs: OPERATOR_CA_TTL_MS,
  });
  return { certDer: cert.der.toString("base64"), notAfter: cert.notAfter.toISOString(), keySealed: kek.seal(privateKeyDer(key.privateKey), contextOf(rowKey)) };
}

function open(row: Row, kek: Kek, rowKey: string): OperatorCa {
  const certDer = Buffer.from(row.certDer, "base64");
  let pkcs8: Buffer;
  try {
    pkcs8 = kek.open(row.keySealed, contextOf(rowKey));
  } catch {
    throw new Error("cannot open the sealed operator CA key: wrong KEK (WEFT_KEK or key file; every replica needs the same one) or corrupted data");
  }
  return {
    certDer,
    certPem: toPem("CERTIFICATE", certDer),
    privateKey: createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" }),
    notAfter: new Date(row.notAfter),
  };
}

export interface LoadedOperatorCa {
  ca: OperatorCa;
  /** Operator CAs sealed under other KEKs: replicas that disagree on the KEK serve certificates of another root (log it). */
  otherKeks: number;
}

/**
 * The operator CA of this KEK, created by the first replica to start (a racing
 * one loses the insert and reads the winner's). With a throwaway KEK (no
 * WEFT_KEK and no data directory: in-process tests) it lives in memory only.
 */
export async function loadOperatorCa(db: Db, kek: Kek, opts: { ephemeral?: boolean; now?: Date } = {}): Promise<LoadedOperatorCa> {
  const now = opts.now ?? new Date();
  const rowKey = `${OPERATOR_CA}/${kek.id(OPERATOR_CA)}`;
  if (opts.ephemeral) return { ca: open(generate(kek, rowKey, now), kek, rowKey), otherKeks: 0 };
  const read = async () => (await db.select().from(settings).where(eq(settings.key, rowKey)))[0]?.value as Row | undefined;
  let row = await read();
  if (row === undefined) {
    await db.insert(settings).values({ key: rowKey, value: generate(kek, rowKey, now) }).onConflictDoNothing();
    row = await read();
  }
  if (typeof row?.keySealed !== "string" || typeof row.certDer !== "string") throw new Error(`the settings row ${rowKey} holds no operator CA`);
  const [{ n }] = (await db
    .select({ n: sql<number>`count(*)::int` })
    .from(settings)
    .where(and(like(settings.key, `${OPERATOR_CA}/%`), ne(settings.key, rowKey)))) as [{ n: number }];
  return { ca: open(row, kek, rowKey), otherKeks: n };
}
