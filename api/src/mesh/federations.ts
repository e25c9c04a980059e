/**
 * Federations (issue #16): a tenant trusts another trust domain, whose
 * bundle its workloads then get beside their own (the Workload API's
 * federated bundles). Two kinds of bundle:
 *
 * - `{spiffeBundle}`: a SPIFFE bundle pasted as a JWK set, checked here
 *   (certificates that parse and are CAs, EC or RSA public JWKs, no private
 *   member) and served as stored.
 * - `{tenant}`: another Weft tenant, its CA read live. Served only under
 *   mutual consent: that tenant must itself declare a federation naming this
 *   tenant by name with this tenant's trust domain, and this declaration must
 *   name that tenant's trust domain. Until then the federation is `pending`
 *   and nothing of the other tenant is served. A missing tenant, a tenant
 *   that has not consented and a trust domain that does not match all read
 *   the same `pending`, so naming a tenant tells the caller nothing it was
 *   not told by that tenant's own consent.
 *
 * - `{endpointUrl, endpointCa?}`: a SPIFFE bundle endpoint (https_web),
 *   fetched by the API under the operator's allow-list and cached per
 *   replica (bundle-endpoints.ts); its bundle passes the checks a pasted one
 *   does. A failed fetch reads `unavailable` with the reason, and the last
 *   good bundle, if any, is still served. The refresher
 *   (bundle-refresher.ts) also keeps the last good bundle in Postgres, for
 *   the L7 proxy's JWT keys.
 *
 * Nothing here reaches the maps: writes are recorded (audit, change log)
 * but not admitted; the follower recompiles the tenant's JWT keys.
 */
import { X509Certificate, createPublicKey } from "node:crypto";
import { and, asc, eq, sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { TENANT_SETTING, federationEndpointBundles, federations, tenants, workloads } from "../db/schema.ts";
import { read, type Tx, type WriteScope } from "../db/transactions.ts";
import type { Follower } from "../follower/follow.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { certificatesOfPem, endpointUrlProblem, sourceKey, type BundleEndpoints, type EndpointSource, type EndpointState, type Jwks } from "./bundle-endpoints.ts";
import { etagOf, putIntent } from "./preconditions.ts";
import { fieldRefusal, MeshRefusal, type FieldError } from "./refusal.ts";
import type { FederationSpec } from "./specs.ts";
import { meshRows, writeMeshRow, type Preconditions, type ResourceStore } from "./write.ts";

export type FederationDbRow = typeof federations.$inferSelect;
export type FederationStatus = "active" | "pending" | "unavailable";
/** A row with its status, computed when read: it depends on the other tenant's rows, or on its endpoint. */
export type FederationView = FederationDbRow & { status: FederationStatus; reason?: string };

/** A bundle's authorities as the node agent takes them: DER, base64. */
export interface BundleAuthorities {
  x509Authorities: string[];
  jwtAuthorities: { keyId: string; publicKey: string }[];
}

/** JWK members that hold private key material (RFC 7518 6.2.2, 6.3.2, 6.4.1). */
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const CURVES = new Set(["P-256", "P-384", "P-521"]);

/**
 * The authorities of a pasted bundle, or the problems found, each with its
 * field. Keys of other uses are refused rather than skipped: a paste that
 * holds something unexpected is more likely a mistake than a future format.
 */
export function authoritiesOfJwks(jwks: { keys: Record<string, unknown>[] }, field = "body.bundle.spiffeBundle"): BundleAuthorities | FieldError[] {
  const errors: FieldError[] = [];
  const out: BundleAuthorities = { x509Authorities: [], jwtAuthorities: [] };
  const kids = new Set<string>();
  jwks.keys.forEach((k, i) => {
    const at = `${field}.keys.${i}`;
    const priv = PRIVATE_MEMBERS.find((m) => m in k);
    if (priv) return errors.push({ field: `${at}.${priv}`, message: "a bundle holds public keys only: private key material is refused" });
    if (k.kty === "EC" ? !CURVES.has(String(k.crv)) : k.kty !== "RSA") {
      return errors.push({ field: `${at}.kty`, message: "must be EC (P-256, P-384, P-521) or RSA" });
    }
    let spki: Buffer;
    try {
      const { use: _u, x5c: _x, kid: _k, ...jwk } = k;
      spki = createPublicKey({ key: jwk as import("node:crypto").JsonWebKey, format: "jwk" }).export({ type: "spki", format: "der" });
    } catch (err) {
      return errors.push({ field: at, message: `not a valid public JWK: ${(err as Error).message}` });
    }
    if (k.use === "x509-svid") {
      const x5c = k.x5c as string[] | undefined;
      if (!x5c || x5c.length !== 1) return errors.push({ field: `${at}.x5c`, message: "an x509-svid key carries exactly one certificate" });
      let cert: X509Certificate;
      try {
        cert = new X509Certificate(Buffer.from(x5c[0]!, "base64"));
      } catch {
        return errors.push({ field: `${at}.x5c.0`, message: "not a DER certificate in base64" });
      }
      if (!cert.ca) return errors.push({ field: `${at}.x5c.0`, message: "not a CA certificate (basicConstraints cA)" });
      if (!cert.publicKey.export({ type: "spki", format: "der" }).equals(spki)) {
        return errors.push({ field: at, message: "the key does not match its certificate's public key" });
      }
      out.x509Authorities.push(cert.raw.toString("base64"));
    } else if (k.use === "jwt-svid") {
      if (typeof k.kid !== "string" || k.kid === "") return errors.push({ field: `${at}.kid`, message: "a jwt-svid key needs a kid" });
      if (kids.has(k.kid)) return errors.push({ field: `${at}.kid`, message: `kid "${k.kid}" appears twice` });
      kids.add(k.kid);
      out.jwtAuthorities.push({ keyId: k.kid, publicKey: spki.toString("base64") });
    } else {
      errors.push({ field: `${at}.use`, message: 'must be "x509-svid" or "jwt-svid"' });
    }
  });
  return errors.length > 0 ? errors : out;
}

const rows = meshRows(federations, "federation");
const { byName } = rows;

type TenantBundle = { tenant: string };
const namesTenant = (bundle: unknown): bundle is TenantBundle => typeof (bundle as TenantBundle).tenant === "string";
export const namesEndpoint = (bundle: unknown): bundle is EndpointSource => typeof (bundle as EndpointSource).endpointUrl === "string";

/** The first problem of a bundle, for an endpoint's answer; null when it is usable. */
export function jwksProblem(jwks: { keys: Record<string, unknown>[] }): string | null {
  const checked = authoritiesOfJwks(jwks, "bundle");
  return Array.isArray(checked) ? `${checked[0]!.field}: ${checked[0]!.message}` : null;
}

/** An endpoint federation's status from its endpoint's state; before any fetch (a write's answer), pending. */
const endpointStatus = (row: FederationView, state: EndpointState | null): FederationView =>
  state === null
    ? { ...row, status: "pending", reason: "the endpoint is fetched on the first read" }
    : state.ok
      ? { ...row, status: "active" }
      : { ...row, status: "unavailable", reason: state.reason ?? "the endpoint failed" };

/** Endpoint federations' statuses, fetching where nothing is cached yet: called outside any transaction. */
async function withEndpointStatus(endpoints: BundleEndpoints, tenantId: number, list: FederationView[]): Promise<FederationView[]> {
  return Promise.all(
    list.map(async (row) => (namesEndpoint(row.bundle) ? endpointStatus(row, await endpoints.state(tenantId, row.name, row.bundle)) : row)),
  );
}

/**
 * The other tenant, when `row` names one that consents: it exists, its trust
 * domain is the row's, and it declares a federation naming `tenant` by name
 * with `tenant`'s trust domain. Read under the other tenant's row-level
 * security (`setTenant`), which the caller restores afterwards.
 */
async function consentingTenant(tx: Tx, setTenant: (id: number) => Promise<void>, tenant: TenantDbRow, row: FederationDbRow): Promise<TenantDbRow | null> {
  if (!namesTenant(row.bundle)) return null;
  const [other] = await tx.select().from(tenants).where(eq(tenants.name, row.bundle.tenant));
  if (!namedTenantMatches(tenant, row, other)) return null;
  await setTenant(other!.id);
  const reverse = await tx
    .select()
    .from(federations)
    .where(and(eq(federations.tenantId, other!.id), eq(federations.trustDomain, tenant.trustDomain)));
  return consents(tenant, row, other, reverse) ? (other as TenantDbRow) : null;
}

/** The tenant a federation's bundle names, if it names one. */
export const namedTenant = (bundle: unknown): string | undefined => (namesTenant(bundle) ? bundle.tenant : undefined);

type TenantKeys = { id: number; name: string; trustDomain: string };

/** The first half of consent: the tenant `row` names exists, is not `self`, and has the row's trust domain. */
const namedTenantMatches = (self: TenantKeys, row: { trustDomain: string }, other: TenantKeys | undefined): boolean =>
  other !== undefined && other.id !== self.id && other.trustDomain === row.trustDomain;

/**
 * Whether `other`, the tenant `self`'s federation `row` names, consents:
 * it matches the row, and one of its federations (`otherFederations`)
 * names `self` by name with `self`'s trust domain.
 */
export function consents(self: TenantKeys, row: { trustDomain: string }, other: TenantKeys | undefined, otherFederations: readonly { trustDomain: string; bundle: unknown }[]): boolean {
  return namedTenantMatches(self, row, other) && otherFederations.some((r) => r.trustDomain === self.trustDomain && namedTenant(r.bundle) === self.name);
}

async function withStatus(tx: Tx, setTenant: (id: number) => Promise<void>, tenant: TenantDbRow, list: FederationDbRow[]): Promise<FederationView[]> {
  const out: FederationView[] = [];
  for (const row of list) {
    const active = !namesTenant(row.bundle) || (await consentingTenant(tx, setTenant, tenant, row)) !== null;
    out.push({ ...row, status: active ? "active" : "pending" });
  }
  await setTenant(tenant.id);
  return out;
}

const setTenantOf = (tx: Tx) => async (id: number) => {
  await tx.execute(sql`SELECT set_config(${TENANT_SETTING}, ${String(id)}, true)`);
};

/** An endpoint's URL and CA, refused with 422 naming the field: the allow-list first of all. */
function checkEndpoint(bundle: EndpointSource, allowed: readonly string[]): void {
  const problem = endpointUrlProblem(bundle.endpointUrl, allowed);
  if (problem) throw fieldRefusal("invalid", "the bundle endpoint may not be fetched", "body.bundle.endpointUrl", problem);
  if (bundle.endpointCa !== undefined) {
    const certs = certificatesOfPem(bundle.endpointCa);
    if (typeof certs === "string") throw fieldRefusal("invalid", "the endpoint CA is not usable", "body.bundle.endpointCa", certs);
  }
}

async function putFederation(
  endpoints: BundleEndpoints,
  allowed: readonly string[],
  w: WriteScope,
  tenant: TenantDbRow,
  name: string,
  spec: FederationSpec,
  pre: Preconditions,
) {
  if (spec.trustDomain === tenant.trustDomain) {
    throw fieldRefusal("invalid", "a tenant does not federate with its own trust domain", "body.trustDomain", "is this tenant's own trust domain");
  }
  if ("spiffeBundle" in spec.bundle) {
    const checked = authoritiesOfJwks(spec.bundle.spiffeBundle as { keys: Record<string, unknown>[] });
    if (Array.isArray(checked)) throw new MeshRefusal("invalid", "the bundle is not a usable SPIFFE bundle", checked);
  }
  if (namesEndpoint(spec.bundle)) checkEndpoint(spec.bundle, allowed);
  return writeMeshRow(w, undefined, {
    kind: "federation",
    tenantId: tenant.id,
    name,
    lock: () => rows.lock(w, tenant.id, name),
    apply: async (existing) => {
      const intent = putIntent(existing ? etagOf(existing.revision) : null, pre.ifMatch, pre.ifNoneMatch);
      const [clash] = await w.tx
        .select({ name: federations.name })
        .from(federations)
        .where(and(eq(federations.tenantId, tenant.id), eq(federations.trustDomain, spec.trustDomain)));
      if (clash && clash.name !== name) {
        throw fieldRefusal("conflict", "another federation of this tenant has that trust domain", "body.trustDomain", `is federation "${clash.name}"'s`);
      }
      // A bundle fetched from the endpoint this federation named before is not this endpoint's: the refresher fetches anew.
      const sameEndpoint = existing !== undefined && namesEndpoint(existing.bundle) && namesEndpoint(spec.bundle) && sourceKey(existing.bundle) === sourceKey(spec.bundle);
      if (existing !== undefined && !sameEndpoint) await w.tx.delete(federationEndpointBundles).where(and(eq(federationEndpointBundles.tenantId, tenant.id), eq(federationEndpointBundles.name, name)));
      const values = { trustDomain: spec.trustDomain, bundle: spec.bundle, revision: w.revision };
      const [row] = existing
        ? await w.tx.update(federations).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
        : await w.tx.insert(federations).values({ tenantId: tenant.id, name, ...values }).returning();
      let [shown] = await withStatus(w.tx, w.setTenant, tenant, [row!]);
      // No fetch inside the write's transaction: the cache's word, if it has one.
      if (namesEndpoint(shown!.bundle)) shown = endpointStatus(shown!, endpoints.peek(tenant.id, name, shown!.bundle));
      return { change: null, op: "upsert", action: `federation.${intent}`, result: { row: shown!, intent } };
    },
  });
}

/** The store of tenant-resource.ts: rows come with their status; `allowed` is WEFT_FEDERATION_ENDPOINTS. */
export function federationStore(endpoints: BundleEndpoints, allowed: readonly string[]): ResourceStore<FederationSpec, FederationView> {
  const decorate = async (db: Db, tenantId: number, list: FederationDbRow[]) => {
    const views = await read(db, tenantId, async (tx) => {
      const [tenant] = await tx.select().from(tenants).where(eq(tenants.id, tenantId));
      return tenant ? withStatus(tx, setTenantOf(tx), tenant as TenantDbRow, list) : [];
    });
    return withEndpointStatus(endpoints, tenantId, views);
  };
  return {
    async find(db, tenantId, name) {
      const row = await rows.find(db, tenantId, name);
      return row ? ((await decorate(db, tenantId, [row]))[0] ?? null) : null;
    },
    async list(db, tenantId, limit, after) {
      return decorate(db, tenantId, await rows.list(db, tenantId, limit, after));
    },
    put: (w, _follower, tenant, name, spec, pre) => putFederation(endpoints, allowed, w, tenant, name, spec, pre),
    remove: (w, follower, tenantId, name, ifMatch) => rows.remove(w, follower, tenantId, name, ifMatch),
  };
}

/**
 * The bundles a tenant's workloads trust besides their own, by trust domain:
 * pasted ones as stored, other tenants' only under consent (their CA read
 * with `caBundle`), endpoints' as last fetched well (fetched after the
 * transaction): by this replica, or else as the refresher stored it (a
 * replica restarted while the endpoint is down still serves it), never from
 * an endpoint the operator no longer allows. Ordered by federation name.
 */
export async function federatedBundles(
  db: Db,
  endpoints: BundleEndpoints,
  tenant: TenantDbRow,
  caBundle: (tenant: TenantDbRow) => Promise<{ keys: Record<string, unknown>[] }>,
): Promise<(BundleAuthorities & { trustDomain: string })[]> {
  const found = await read(db, tenant.id, async (tx) => {
    const list = await tx.select().from(federations).where(eq(federations.tenantId, tenant.id)).orderBy(asc(federations.name));
    const stored = await tx.select().from(federationEndpointBundles).where(eq(federationEndpointBundles.tenantId, tenant.id));
    const out: { row: FederationDbRow; other: TenantDbRow | null; stored: Jwks | null }[] = [];
    const setTenant = setTenantOf(tx);
    for (const row of list) {
      const kept = namesEndpoint(row.bundle) ? stored.find((s) => s.name === row.name && s.source === sourceKey(row.bundle as EndpointSource)) : undefined;
      out.push({ row, other: namesTenant(row.bundle) ? await consentingTenant(tx, setTenant, tenant, row) : null, stored: (kept?.bundle as Jwks | undefined) ?? null });
    }
    return out;
  });
  // Endpoints in parallel: one that hangs costs its timeout once, not once per federation after it.
  const states = await Promise.all(found.map(({ row }) => (namesEndpoint(row.bundle) ? endpoints.state(tenant.id, row.name, row.bundle) : null)));
  const bundles: (BundleAuthorities & { trustDomain: string })[] = [];
  for (const [i, { row, other, stored }] of found.entries()) {
    let jwks: { keys: Record<string, unknown>[] };
    if (namesTenant(row.bundle)) {
      if (!other) continue;
      jwks = await caBundle(other);
    } else if (namesEndpoint(row.bundle)) {
      const fetched = states[i]?.jwks ?? (endpoints.allows(row.bundle) ? stored : null);
      if (!fetched) continue;
      jwks = fetched;
    } else {
      jwks = (row.bundle as { spiffeBundle: { keys: Record<string, unknown>[] } }).spiffeBundle;
    }
    const a = authoritiesOfJwks(jwks);
    if (!Array.isArray(a)) bundles.push({ trustDomain: row.trustDomain, ...a });
  }
  return bundles;
}

/** Whether `node` runs a workload of the tenant: a node credential reads the tenant's federated bundles only then. */
export async function nodeHostsTenant(db: Db, tenantId: number, node: string): Promise<boolean> {
  const [hit] = await read(db, tenantId, (tx) =>
    tx.select({ name: workloads.name }).from(workloads).where(and(eq(workloads.tenantId, tenantId), eq(workloads.node, node))).limit(1),
  );
  return hit !== undefined;
}
