import { asc, eq, gt } from "drizzle-orm";
import { validateTrustDomain } from "../ca/spiffe-id.ts";
import type { Db } from "../db/client.ts";
import { apiTokens, revocations, tenants } from "../db/schema.ts";
import { read, type WriteScope } from "../db/transactions.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { etagOf, putIntent, requireMatch, type PutIntent } from "./preconditions.ts";
import { MeshRefusal, notFound } from "./refusal.ts";
import type { TenantSpec } from "./specs.ts";

async function lockTenant(w: WriteScope, name: string): Promise<TenantDbRow | undefined> {
  const [row] = await w.tx.select().from(tenants).where(eq(tenants.name, name)).for("update");
  return row;
}

/** Create or replace by name. The trust domain is fixed at creation: SVIDs already issued name it. */
export async function putTenant(
  w: WriteScope,
  name: string,
  spec: TenantSpec,
  defaultTrustDomain: string,
  preconditions: { ifMatch?: string; ifNoneMatch?: string; createOnly?: boolean },
): Promise<{ row: TenantDbRow; intent: PutIntent }> {
  const existing = await lockTenant(w, name);
  if (existing && preconditions.createOnly) throw new MeshRefusal("conflict", `tenant "${name}" already exists`);
  const intent = putIntent(existing ? etagOf(existing.revision) : null, preconditions.ifMatch, preconditions.ifNoneMatch);
  let row: TenantDbRow | undefined;
  if (existing) {
    if (spec.trustDomain !== undefined && spec.trustDomain !== existing.trustDomain) {
      throw new MeshRefusal("invalid", "the trust domain of a tenant cannot change", [
        { field: "body.trustDomain", message: `is fixed at creation as "${existing.trustDomain}"` },
      ]);
    }
    [row] = await w.tx
      .update(tenants)
      .set({
        displayName: spec.displayName ?? "",
        labels: spec.labels ?? {},
        defaultAction: spec.defaultAction ?? "allow",
        defaultTransport: spec.defaultTransport ?? "plaintext",
        revision: w.revision,
        updatedAt: new Date(),
      })
      .where(eq(tenants.id, existing.id))
      .returning();
  } else {
    const trustDomain = spec.trustDomain ?? defaultTrustDomain;
    // The SPIFFE-ID rules, also for a default built from the name and WEFT_TRUST_DOMAIN_SUFFIX.
    const invalid = validateTrustDomain(trustDomain, "body.trustDomain");
    if (invalid.length) throw new MeshRefusal("malformed", "invalid trust domain", invalid);
    const [clash] = await w.tx.select({ name: tenants.name }).from(tenants).where(eq(tenants.trustDomain, trustDomain));
    if (clash) {
      throw new MeshRefusal("conflict", "another tenant already uses that trust domain", [
        { field: "body.trustDomain", message: `"${trustDomain}" is taken` },
      ]);
    }
    [row] = await w.tx
      .insert(tenants)
      .values({
        name,
        displayName: spec.displayName ?? "",
        labels: spec.labels ?? {},
        defaultAction: spec.defaultAction ?? "allow",
        defaultTransport: spec.defaultTransport ?? "plaintext",
        trustDomain,
        revision: w.revision,
      })
      .returning();
  }
  await w.setTenant(row!.id);
  await w.record({ tenantId: row!.id, kind: "tenant", name, op: "upsert" }, `tenant.${intent}`);
  return { row: row!, intent };
}

/** Deletes the tenant and everything it owns; its tokens are revoked on every replica. */
export async function deleteTenant(
  w: WriteScope,
  name: string,
  ifMatch: string | undefined,
): Promise<{ id: string; expiresAt: Date }[]> {
  const existing = await lockTenant(w, name);
  if (!existing) throw notFound(`tenant "${name}"`);
  requireMatch(etagOf(existing.revision), ifMatch);
  await w.setTenant(existing.id);
  const tokens = await w.tx.select({ id: apiTokens.id, expiresAt: apiTokens.expiresAt }).from(apiTokens);
  if (tokens.length > 0) {
    await w.tx
      .insert(revocations)
      .values(tokens.map((t) => ({ tokenId: t.id, expiresAt: t.expiresAt, revision: w.revision })))
      .onConflictDoNothing();
  }
  await w.record({ tenantId: existing.id, kind: "tenant", name, op: "delete" }, "tenant.delete");
  await w.tx.delete(tenants).where(eq(tenants.id, existing.id));
  return tokens;
}

export async function listTenants(db: Db, limit: number, after: string | undefined): Promise<TenantDbRow[]> {
  return read(db, null, (tx) =>
    tx
      .select()
      .from(tenants)
      .where(after === undefined ? undefined : gt(tenants.name, after))
      .orderBy(asc(tenants.name))
      .limit(limit + 1),
  );
}
