import { parseIPv4 } from "@weft/codec";
import { and, eq, inArray } from "drizzle-orm";
import { federations, policies } from "../db/schema.ts";
import type { WriteScope } from "../db/transactions.ts";
import { MAX_RULES_PER_POLICY } from "../compiler/ids.ts";
import { mtlsObstacle } from "../compiler/transport.ts";
import type { Follower } from "../follower/follow.ts";
import { policyRowOf } from "../follower/rows.ts";
import type { TenantDbRow } from "../services/tenant-directory.ts";
import { meshRows, namedIn, requireIdentities, writeMeshRow } from "./write.ts";
import type { Preconditions, ResourceStore } from "./write.ts";
import { etagOf, putIntent } from "./preconditions.ts";
import { fieldRefusal, MeshRefusal } from "./refusal.ts";
import type { PolicySpec } from "./specs.ts";
import { pathValueProblem } from "./http-paths.ts";

export type PolicyDbRow = typeof policies.$inferSelect;

const rows = meshRows(policies, "policy");
const { byName } = rows;

const directions = (spec: PolicySpec) =>
  (["ingress", "egress"] as const).flatMap((d) => (spec[d] ?? []).map((rule, i) => ({ direction: d, field: `body.${d}.${i}`, rule })));

type PolicyRule = NonNullable<PolicySpec["ingress"]>[number];

/**
 * Where a rule's `http` cannot be decided: the L7 proxy of the caller's node
 * decides a request to a service it takes, so only for what the subject
 * receives, from callers it knows by identity (a CIDR peer has none), over
 * tcp. Answers the field at fault and why; null when the rule can carry it.
 */
function httpObstacle(direction: "ingress" | "egress", rule: PolicyRule, field: string): { field: string; message: string } | null {
  const http = rule.http;
  if (http === undefined) return null;
  if (direction === "egress") return { field: `${field}.http`, message: "only ingress rules take http: the proxy decides for the service's backends, by its callers" };
  const cidr = (rule.peers ?? []).findIndex((p) => "cidr" in p);
  if (cidr >= 0) return { field: `${field}.http`, message: `a CIDR peer (peers.${cidr}) has no identity the proxy can check: http needs identity peers` };
  const port = (rule.ports ?? []).findIndex((p) => p.protocol === "udp" || (p.protocol === "any" && (p.port ?? 0) !== 0));
  if (port >= 0) return { field: `${field}.http`, message: `the proxy reads HTTP over tcp only (ports.${port}): name protocol "tcp" or leave it out` };
  for (const [k, claim] of (http.jwt?.claims ?? []).entries()) {
    // The proxy reads a claim by JSON path ($.name): a dot would name a nested member instead.
    if (claim.name.includes(".")) return { field: `${field}.http.jwt.claims.${k}.name`, message: "a top-level claim's name: the proxy cannot read a name with a dot" };
    const empty = claim.values.indexOf("");
    if (empty >= 0) return { field: `${field}.http.jwt.claims.${k}.values.${empty}`, message: "an empty value: a claim the proxy matches holds at least one character" };
  }
  for (const [k, prefix] of (http.pathPrefixes ?? []).entries()) {
    const problem = pathValueProblem(prefix);
    if (problem) return { field: `${field}.http.pathPrefixes.${k}`, message: problem };
  }
  return null;
}

/**
 * Rule ids carry the rule's position in 8 bits; CIDRs must be prefixes as
 * written (10.1.0.0/16, not 10.1.2.3/16); a rule that asks for mtls must be
 * one the transport can carry (compiler/transport.ts), and one with http
 * one the L7 proxy can decide (httpObstacle).
 */
function checkShape(spec: PolicySpec): void {
  const rules = directions(spec);
  if (rules.length > MAX_RULES_PER_POLICY) {
    throw fieldRefusal("invalid", `a policy holds at most ${MAX_RULES_PER_POLICY} rules`, "body.egress", `ingress and egress have ${rules.length} rules together`);
  }
  for (const { direction, field, rule } of rules) {
    const http = httpObstacle(direction, rule, field);
    if (http !== null) throw new MeshRefusal("malformed", "the L7 proxy cannot decide this rule's http match", [http]);
    (rule.peers ?? []).forEach((peer, j) => {
      if (!("cidr" in peer)) return;
      const [addr, len] = peer.cidr.split("/") as [string, string];
      const bits = 32 - Number(len);
      if (bits > 0 && parseIPv4(addr) % 2 ** bits !== 0) {
        throw new MeshRefusal("malformed", "a CIDR has host bits set", [{ field: `${field}.peers.${j}.cidr`, message: "host bits must be zero" }]);
      }
    });
    const obstacle = rule.transport === "mtls" ? mtlsObstacle({ action: rule.action, peers: rule.peers ?? [], ports: rule.ports ?? [] }) : null;
    if (obstacle !== null) {
      throw new MeshRefusal("malformed", "the transport cannot carry this rule", [{ field: `${field}.transport`, message: `${obstacle.message} (${field}.${obstacle.path})` }]);
    }
  }
}

/**
 * A rule's jwt.trustDomain must be the tenant's own or one it federates
 * with: by a pasted bundle, another tenant (whose keys count once it
 * consents) or a bundle endpoint (whose keys count once the refresher has
 * stored a good fetch: mesh/bundle-refresher.ts). The proxy verifies with
 * keys the compiler holds; a trust domain the tenant does not trust has none
 * to give. 422 naming the field otherwise.
 */
async function checkJwtTrustDomains(w: WriteScope, tenant: TenantDbRow, spec: PolicySpec): Promise<void> {
  const named = (spec.ingress ?? []).flatMap((rule, i) => {
    const td = rule.http?.jwt?.trustDomain;
    return td === undefined || td === tenant.trustDomain ? [] : [{ field: `body.ingress.${i}.http.jwt.trustDomain`, trustDomain: td }];
  });
  if (named.length === 0) return;
  const rows = await w.tx
    .select({ trustDomain: federations.trustDomain })
    .from(federations)
    .where(and(eq(federations.tenantId, tenant.id), inArray(federations.trustDomain, [...new Set(named.map((n) => n.trustDomain))])));
  for (const n of named) {
    if (rows.some((r) => r.trustDomain === n.trustDomain)) continue;
    throw fieldRefusal("invalid", "a JWT rule names a trust domain the tenant does not trust", n.field, `neither this tenant's trust domain nor one it federates with`);
  }
}

async function putPolicy(w: WriteScope, follower: Follower, tenant: TenantDbRow, name: string, spec: PolicySpec, pre: Preconditions) {
  checkShape(spec);
  await checkJwtTrustDomains(w, tenant, spec);
  return writeMeshRow(w, follower, {
    kind: "policy",
    tenantId: tenant.id,
    name,
    lock: () => rows.lock(w, tenant.id, name),
    apply: async (existing) => {
      const intent = putIntent(existing ? etagOf(existing.revision) : null, pre.ifMatch, pre.ifNoneMatch);
      await requireIdentities(w, tenant.id, [
        ...namedIn("body.subject", spec.subject),
        ...directions(spec).flatMap(({ field, rule }) => (rule.peers ?? []).flatMap((p, j) => namedIn(`${field}.peers.${j}`, p))),
      ]);
      const values = {
        subject: spec.subject,
        // Absent and empty differ: present governs the direction (compiler/policy.ts).
        ingress: spec.ingress ?? null,
        egress: spec.egress ?? null,
        mode: spec.mode ?? "enforce",
        revision: w.revision,
      };
      const [row] = existing
        ? await w.tx.update(policies).set({ ...values, updatedAt: new Date() }).where(byName(tenant.id, name)).returning()
        : await w.tx.insert(policies).values({ tenantId: tenant.id, name, ...values }).returning();
      return { change: { kind: "policy", op: "put", row: policyRowOf(row!) }, op: "upsert", action: `policy.${intent}`, result: { row: row!, intent } };
    },
  });
}

export const policyStore: ResourceStore<PolicySpec, PolicyDbRow> = { ...rows, put: putPolicy };
