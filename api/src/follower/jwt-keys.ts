/**
 * The JWT-SVID keys the compiler's L7 documents carry (TenantRow.jwtKeys):
 * per tenant, its own CA slots' keys under its trust domain; under each
 * trust domain it federates with, the pasted bundle's jwt-svid keys, or the
 * named tenant's CA keys once that tenant consents (its reverse federation,
 * as mesh/federations.ts serves them; none while pending); or, for a
 * federation naming a bundle endpoint, the jwt-svid keys of the last good
 * bundle the refresher stored from that very endpoint
 * (mesh/bundle-refresher.ts; none before the first good fetch).
 */
import { createPublicKey, type JsonWebKey, type KeyObject } from "node:crypto";
import { eq, inArray, or, sql } from "drizzle-orm";
import { caSlots, federationEndpointBundles, federations, tenants } from "../db/schema.ts";
import type { Tx } from "../db/transactions.ts";
import type { JwtKey, TrustDomainJwtKeys } from "../compiler/index.ts";
import { sourceKey, type EndpointSource } from "../mesh/bundle-endpoints.ts";
import { consents, namedTenant, namesEndpoint } from "../mesh/federations.ts";

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

/**
 * A bundle's jwt-svid keys: a pasted one's, checked when it was written, or
 * an endpoint's, checked when it was fetched (mesh/federations.ts
 * authoritiesOfJwks both).
 */
function jwtSvidKeys(jwks: { keys?: Record<string, unknown>[] } | undefined): JwtKey[] {
  return (jwks?.keys ?? []).flatMap((k) => {
    if (k.use !== "jwt-svid" || typeof k.kid !== "string") return [];
    const { use: _u, kid, x5c: _x, ...jwk } = k;
    return jwtKeyOf(kid as string, jwk as JsonWebKey) ?? [];
  });
}

type FederationKeysRow = { tenantId: number; name: string; trustDomain: string; bundle: unknown };

/** Every tenant's keys (tenantIds absent), or those of some tenants, by tenant id. */
export async function jwtKeysOf(tx: Tx, tenantIds?: readonly number[]): Promise<Map<number, TrustDomainJwtKeys[]>> {
  const only = tenantIds === undefined ? undefined : [...new Set(tenantIds)];
  if (only?.length === 0) return new Map();
  const feds: FederationKeysRow[] = await tx
    .select({ tenantId: federations.tenantId, name: federations.name, trustDomain: federations.trustDomain, bundle: federations.bundle })
    .from(federations)
    .where(only ? inArray(federations.tenantId, only) : undefined);
  const names = [...new Set(feds.flatMap((f) => namedTenant(f.bundle) ?? []))];
  const ts = await tx
    .select({ id: tenants.id, name: tenants.name, trustDomain: tenants.trustDomain })
    .from(tenants)
    .where(only ? or(inArray(tenants.id, only), names.length ? inArray(tenants.name, names) : undefined) : undefined);
  const byId = new Map(ts.map((t) => [t.id, t]));
  const byName = new Map(ts.map((t) => [t.name, t]));
  // Consent: the named tenant's own federation naming this tenant, with this tenant's trust domain.
  const namedIds = names.flatMap((n) => byName.get(n)?.id ?? []);
  const reverse: FederationKeysRow[] = only === undefined ? feds : namedIds.length === 0 ? [] : await tx
    .select({ tenantId: federations.tenantId, name: federations.name, trustDomain: federations.trustDomain, bundle: federations.bundle })
    .from(federations)
    .where(inArray(federations.tenantId, namedIds));
  const consenting = (f: FederationKeysRow): number | undefined => {
    const self = byId.get(f.tenantId);
    const other = byName.get(namedTenant(f.bundle)!);
    if (self === undefined || other === undefined) return undefined;
    return consents(self, f, other, reverse.filter((r) => r.tenantId === other.id)) ? other.id : undefined;
  };
  const slotTenants = only === undefined ? undefined : [...new Set([...only, ...namedIds])];
  const slots = await tx
    .select({ tenantId: caSlots.tenantId, kid: caSlots.jwtKid, spki: caSlots.jwtPublicKeySpki })
    .from(caSlots)
    .where(slotTenants ? inArray(caSlots.tenantId, slotTenants) : undefined);
  const caKeys = new Map<number, JwtKey[]>();
  for (const slot of slots) {
    const key = jwtKeyOf(slot.kid, Buffer.from(slot.spki, "base64"));
    if (key === null) continue;
    let list = caKeys.get(slot.tenantId);
    if (list === undefined) caKeys.set(slot.tenantId, (list = []));
    list.push(key);
  }
  // Endpoints' bundles as stored; one from an endpoint the federation no longer names does not count.
  const fetched = await tx
    .select({ tenantId: federationEndpointBundles.tenantId, name: federationEndpointBundles.name, source: federationEndpointBundles.source, bundle: federationEndpointBundles.bundle })
    .from(federationEndpointBundles)
    .where(only ? inArray(federationEndpointBundles.tenantId, only) : undefined);
  const fetchedOf = new Map(fetched.map((b) => [`${b.tenantId}/${b.name}`, b]));
  const endpointKeys = (f: FederationKeysRow): JwtKey[] => {
    const stored = fetchedOf.get(`${f.tenantId}/${f.name}`);
    return stored !== undefined && stored.source === sourceKey(f.bundle as EndpointSource) ? jwtSvidKeys(stored.bundle as { keys?: Record<string, unknown>[] }) : [];
  };
  const out = new Map<number, TrustDomainJwtKeys[]>();
  const add = (tenantId: number, trustDomain: string, keys: readonly JwtKey[]) => {
    if (keys.length === 0) return;
    let list = out.get(tenantId);
    if (list === undefined) out.set(tenantId, (list = []));
    list.push({ trustDomain, keys: [...keys].sort((a, b) => (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0)) });
  };
  for (const t of ts) if (only === undefined || only.includes(t.id)) add(t.id, t.trustDomain, caKeys.get(t.id) ?? []);
  for (const f of feds) {
    if (f.trustDomain === byId.get(f.tenantId)?.trustDomain) continue;
    if (namesEndpoint(f.bundle)) add(f.tenantId, f.trustDomain, endpointKeys(f));
    else if (namedTenant(f.bundle) === undefined) add(f.tenantId, f.trustDomain, jwtSvidKeys((f.bundle as { spiffeBundle?: { keys?: Record<string, unknown>[] } }).spiffeBundle));
    else {
      const other = consenting(f);
      if (other !== undefined) add(f.tenantId, f.trustDomain, caKeys.get(other) ?? []);
    }
  }
  return out;
}

/** The tenants whose federation names one of these tenants by name: a change to those tenants' CA or federations changes their keys. */
export async function federatingTenants(tx: Tx, tenantIds: readonly number[]): Promise<number[]> {
  if (tenantIds.length === 0) return [];
  const rows = await tx
    .select({ tenantId: federations.tenantId })
    .from(federations)
    .innerJoin(tenants, eq(sql`${federations.bundle}->>'tenant'`, tenants.name))
    .where(inArray(tenants.id, [...tenantIds]));
  return [...new Set(rows.map((r) => r.tenantId))];
}
