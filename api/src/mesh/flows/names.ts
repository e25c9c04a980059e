/**
 * The names a batch's numbers stand for, read once per batch as the platform
 * (every tenant's rows, read-only) with one query per kind, bounded by what
 * the batch carries: at most two identities and one address per flow.
 */
import { and, eq, inArray, sql } from "drizzle-orm";
import type { Db } from "../../db/client.ts";
import { platformRead } from "../../db/platform-read.ts";
import { cidrIdentities, identities, policies, services, tenants, workloads } from "../../db/schema.ts";
import type { Tx } from "../../db/transactions.ts";
import { decodeRuleId } from "../../compiler/ids.ts";
import type { FlowBatch } from "./specs.ts";
import type { FlowNames } from "./views.ts";

const FIRST_NAMED_IDENTITY = 256;

export async function namesOf(db: Db, node: string, batch: FlowBatch): Promise<FlowNames> {
  const ids = new Set<number>();
  const addresses = new Set<string>();
  const policyIds = new Set<number>();
  const vips = new Set<string>();
  for (const a of batch.aggregates) ids.add(a.srcIdentity).add(a.dstIdentity);
  for (const f of batch.flows) {
    ids.add(f.src.identity).add(f.dst.identity);
    if (f.src.identity === 0) addresses.add(f.src.address);
    if (f.dst.identity === 0) addresses.add(f.dst.address);
    const rule = decodeRuleId(f.ruleId);
    if (rule) policyIds.add(rule.policyId);
    if (f.originalDst) vips.add(f.originalDst.address);
  }
  const named = [...ids].filter((n) => n >= FIRST_NAMED_IDENTITY);
  return platformRead(db, async (tx) => {
    const present = await tx.selectDistinct({ tenantId: workloads.tenantId }).from(workloads).where(eq(workloads.node, node));
    const byAddress = await workloadsAt(tx, [...addresses]);
    for (const w of byAddress) named.push(w.identity);
    const idRows = named.length === 0 ? [] : await tx
      .select({ id: identities.securityIdentity, tenantId: identities.tenantId, name: identities.name })
      .from(identities)
      .where(inArray(identities.securityIdentity, named));
    const cidrRows = named.length === 0 ? [] : await tx
      .select({ id: cidrIdentities.numericId, cidr: cidrIdentities.cidr })
      .from(cidrIdentities)
      .where(inArray(cidrIdentities.numericId, named));
    const policyRows = policyIds.size === 0 ? [] : await tx
      .select({ id: policies.id, tenantId: policies.tenantId, name: policies.name, ingressRules: sql<number>`coalesce(jsonb_array_length(${policies.ingress}), 0)::int` })
      .from(policies)
      .where(inArray(policies.id, [...policyIds]));
    const serviceRows = vips.size === 0 ? [] : await tx
      .select({ vip: services.vip, tenantId: services.tenantId, name: services.name })
      .from(services)
      .where(inArray(services.vip, [...vips]));
    const tenantIds = [...new Set([...idRows.map((r) => r.tenantId), ...present.map((p) => p.tenantId)])];
    const tenantRows = tenantIds.length === 0 ? [] : await tx.select({ id: tenants.id, name: tenants.name }).from(tenants).where(inArray(tenants.id, tenantIds));
    return {
      tenants: new Map(tenantRows.map((t) => [t.id, t.name])),
      identities: new Map(idRows.map((r) => [r.id, { tenantId: r.tenantId, name: r.name }])),
      cidrs: new Map(cidrRows.map((r) => [r.id, r.cidr])),
      workloads: new Map(byAddress.map((w) => [w.address, { tenantId: w.tenantId, identity: w.identity }])),
      policies: new Map(policyRows.map((p) => [p.id, { tenantId: p.tenantId, name: p.name, ingressRules: p.ingressRules }])),
      services: new Map(serviceRows.map((s) => [s.vip, { tenantId: s.tenantId, name: s.name }])),
      presentOnNode: new Set(present.map((p) => p.tenantId)),
    };
  });
}

/** The workloads holding these addresses, with their identities' numbers. */
async function workloadsAt(tx: Tx, addresses: string[]): Promise<Array<{ address: string; tenantId: number; identity: number }>> {
  if (addresses.length === 0) return [];
  const rows = await tx
    .select({ addresses: workloads.addresses, tenantId: workloads.tenantId, identity: identities.securityIdentity })
    .from(workloads)
    .innerJoin(identities, and(eq(identities.tenantId, workloads.tenantId), eq(identities.name, workloads.identity)))
    .where(sql`${workloads.addresses} && ARRAY[${sql.join(addresses.map((a) => sql`${a}`), sql`, `)}]::text[]`);
  const wanted = new Set(addresses);
  return rows.flatMap((r) => r.addresses.filter((a) => wanted.has(a)).map((address) => ({ address, tenantId: r.tenantId, identity: r.identity })));
}
