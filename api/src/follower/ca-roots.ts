/**
 * The X.509 roots node transports verify a tenant's SVIDs with
 * (TenantRow.trustBundlePem, served in GET /v1/nodes/{node}/transport): the
 * tenant CA's certificates, every stored slot (prepared, active and old),
 * oldest first, as GET .../bundle.pem lists them. A CA change is a "bundle"
 * entry in the change log (ca/store.ts), which the follower reads as a
 * reload of the tenant row, as it does for the JWT keys (jwt-keys.ts).
 *
 * bundle.pem also drops, at the moment it is read, a slot that became
 * prunable since the last CA write; these rows keep it until the rotation
 * schedule's prune writes (and logs) that: a document must not change
 * without a revision, and a CA with nothing valid under it verifies nothing.
 */
import { inArray } from "drizzle-orm";
import { toPem } from "@weft/pki/der";
import { caSlots } from "../db/schema.ts";
import type { Tx } from "../db/transactions.ts";

/** Every tenant's bundle (tenantIds absent), or those of some tenants, by tenant id; a tenant without a CA has none. */
export async function caRootsOf(tx: Tx, tenantIds?: readonly number[]): Promise<Map<number, string>> {
  if (tenantIds?.length === 0) return new Map();
  const slots = await tx
    .select({ tenantId: caSlots.tenantId, der: caSlots.caCertDer, notBefore: caSlots.notBefore, createdAt: caSlots.createdAt })
    .from(caSlots)
    .where(tenantIds === undefined ? undefined : inArray(caSlots.tenantId, [...new Set(tenantIds)]));
  // The order ca/store.ts loads slots in (created_at: notBefore has whole seconds), which bundle.pem keeps.
  slots.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.notBefore.getTime() - b.notBefore.getTime());
  const out = new Map<number, string>();
  for (const s of slots) out.set(s.tenantId, (out.get(s.tenantId) ?? "") + toPem("CERTIFICATE", Buffer.from(s.der, "base64")));
  return out;
}
