/**
 * The JWT-SVID keys the compiler's L7 documents carry (TenantRow.jwtKeys):
 * per tenant, its own CA slots' keys under its trust domain, and the keys
 * of each federation whose bundle it pasted under that trust domain. A
 * federation naming another tenant or an endpoint is refused by a JWT rule
 * (mesh/policies.ts): its keys live outside these rows.
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { inArray } from "drizzle-orm";
import { caSlots, federations } from "../db/schema.ts";
import type { Tx } from "../db/transactions.ts";
import type { JwtKey, TrustDomainJwtKeys } from "../compiler/index.ts";

/**
 * The key as the proxy verifies with it, its alg from its type; null for one
 * it cannot take (P-521, a kid that is not printable ASCII: the config names
 * it in quotes), or that does not parse: a row written past the API's checks
 * costs its own key, never the follower's pull.
 */
export function jwtKeyOf(kid: string, material: Buffer | JsonWebKey): JwtKey | null {
  if (!/^[\x20-\x7e]{1,256}$/.test(kid)) return null;
  let key: KeyObject;
  try {
    key = Buffer.isBuffer(material) ? createPublicKey({ key: material, format: "der", type: "spki" }) : createPublicKey({ key: material, format: "jwk" });
  } catch {
    return null;
  }
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const alg = key.asymmetricKeyType === "rsa" ? "RS256" : curve === "prime256v1" ? "ES256" : curve === "secp384r1" ? "ES384" : null;
  return alg === null ? null : { kid, alg, publicKeyPem: key.export({ type: "spki", format: "pem" }).toString() };
}

/** A pasted bundle's jwt-svid keys (checked when it was written: mesh/federations.ts authoritiesOfJwks). */
function pastedKeys(bundle: unknown): JwtKey[] {
  const jwks = (bundle as { spiffeBundle?: { keys?: Record<string, unknown>[] } }).spiffeBundle;
  return (jwks?.keys ?? []).flatMap((k) => {
    if (k.use !== "jwt-svid" || typeof k.kid !== "string") return [];
    const { use: _u, kid, x5c: _x, ...jwk } = k;
    return jwtKeyOf(kid as string, jwk as JsonWebKey) ?? [];
  });
}

/** Every tenant's keys (tenantIds absent), or those of some tenants, by tenant id; `trustDomains` names each tenant's own. */
export async function jwtKeysOf(tx: Tx, trustDomains: ReadonlyMap<number, string>, tenantIds?: readonly number[]): Promise<Map<number, TrustDomainJwtKeys[]>> {
  const only = tenantIds === undefined ? undefined : [...tenantIds];
  if (only?.length === 0) return new Map();
  const slots = await tx
    .select({ tenantId: caSlots.tenantId, kid: caSlots.jwtKid, spki: caSlots.jwtPublicKeySpki })
    .from(caSlots)
    .where(only ? inArray(caSlots.tenantId, only) : undefined);
  const feds = await tx
    .select({ tenantId: federations.tenantId, trustDomain: federations.trustDomain, bundle: federations.bundle })
    .from(federations)
    .where(only ? inArray(federations.tenantId, only) : undefined);
  const out = new Map<number, TrustDomainJwtKeys[]>();
  const add = (tenantId: number, trustDomain: string, keys: JwtKey[]) => {
    let list = out.get(tenantId);
    if (list === undefined) out.set(tenantId, (list = []));
    const held = list.find((k) => k.trustDomain === trustDomain);
    if (held) (held.keys as JwtKey[]).push(...keys);
    else list.push({ trustDomain, keys });
  };
  for (const s of slots) {
    const own = trustDomains.get(s.tenantId);
    const key = jwtKeyOf(s.kid, Buffer.from(s.spki, "base64"));
    if (own !== undefined && key !== null) add(s.tenantId, own, [key]);
  }
  for (const f of feds) if (f.trustDomain !== trustDomains.get(f.tenantId)) add(f.tenantId, f.trustDomain, pastedKeys(f.bundle));
  for (const list of out.values()) for (const td of list) (td.keys as JwtKey[]).sort((a, b) => (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0));
  return out;
}
