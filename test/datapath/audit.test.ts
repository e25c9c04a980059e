/**
 * Policy audit mode in the compiler (compiler/policy.ts): audit rules never
 * change weft_policy; weft_audit holds, for each (subject, direction) an
 * audit rule touches, the policy as it would be enforced.
 */
import fc from "fast-check";
import { protocols } from "@weft/codec";
import { describe, expect, it } from "vitest";
import { compileNode } from "../../api/src/compiler/compile.ts";
import { createEvaluator } from "./evaluate.ts";
import type { IdentityRow, PolicyRow, PolicyRule, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { snapshot } from "./support.ts";

const acme: TenantRow = { id: 1, name: "acme", defaultAction: "allow" };
const identities: IdentityRow[] = [
  { tenantId: 1, name: "web", numericId: 256, labels: { app: "web" } },
  { tenantId: 1, name: "db", numericId: 257, labels: { app: "db" } },
  { tenantId: 1, name: "batch", numericId: 258, labels: { app: "batch" } },
];
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "web-1", identity: "web", node: "n1", addresses: ["10.0.0.1"] },
  { tenantId: 1, name: "db-1", identity: "db", node: "n1", addresses: ["10.0.0.2"] },
  { tenantId: 1, name: "batch-1", identity: "batch", node: "n1", addresses: ["10.0.0.3"] },
];
const platform = (policies: PolicyRow[]): Snapshot => snapshot({ tenants: [acme], identities, workloads, nodes: [{ name: "n1", zone: "a" }], policies });
const fromWeb: PolicyRule = { peers: [{ identity: "web" }], ports: [{ port: 5432, protocol: "tcp" }], action: "allow" };
const denyBatch: PolicyRule = { peers: [{ identity: "batch" }], ports: [], action: "deny" };
const dbPolicy = (ingress: PolicyRule[], mode?: "enforce" | "audit"): PolicyRow => ({ id: 1, tenantId: 1, name: "db", subject: { identity: "db" }, ingress, ...(mode ? { mode } : {}) });

describe("policy audit mode", () => {
  it("a policy in audit mode leaves weft_policy as if it did not exist and stages itself whole in weft_audit", () => {
    const audited = compileNode(platform([dbPolicy([fromWeb], "audit")]), "n1");
    const none = compileNode(platform([]), "n1");
    expect(audited.maps.policy).toEqual(none.maps.policy);
    const enforced = compileNode(platform([dbPolicy([fromWeb])]), "n1");
    expect(audited.maps.audit).toEqual(enforced.maps.policy);
    expect(enforced.maps.audit).toEqual([]);
  });

  it("one audit rule in an enforced policy: enforced without it, staged with it", () => {
    const out = compileNode(platform([dbPolicy([fromWeb, { ...denyBatch, mode: "audit" }])]), "n1");
    expect(out.maps.policy).toEqual(compileNode(platform([dbPolicy([fromWeb])]), "n1").maps.policy);
    expect(out.maps.audit).toEqual(compileNode(platform([dbPolicy([fromWeb, denyBatch])]), "n1").maps.policy);
  });

  it("switching audit to enforce is the one write that moves the rules to weft_policy", () => {
    const staged = compileNode(platform([dbPolicy([fromWeb], "audit")]), "n1");
    const live = compileNode(platform([dbPolicy([fromWeb], "enforce")]), "n1");
    expect(live.maps.policy).toEqual(staged.maps.audit);
    expect(live.maps.audit).toEqual([]);
    expect(live.hash).not.toBe(staged.hash);
  });

  it("never loosens or tightens what is enforced, and the audit map answers as the policies would if all were enforced", () => {
    const peer = fc.constantFrom("web", "db", "batch");
    const ruleArb: fc.Arbitrary<PolicyRule> = fc.record({
      peers: fc.array(peer.map((identity) => ({ identity })), { maxLength: 2 }),
      ports: fc.array(fc.record({ port: fc.constantFrom(0, 80, 5432), protocol: fc.constantFrom("tcp" as const, "any" as const) }), { maxLength: 2 }),
      action: fc.constantFrom("allow" as const, "deny" as const),
      mode: fc.constantFrom(undefined, "audit" as const, "enforce" as const),
    }).map(({ mode, ...r }) => (mode ? { ...r, mode } : r));
    const policyArb = fc.record({
      subject: peer,
      ingress: fc.option(fc.array(ruleArb, { maxLength: 3 }), { nil: undefined }),
      egress: fc.option(fc.array(ruleArb, { maxLength: 3 }), { nil: undefined }),
      mode: fc.constantFrom(undefined, "audit" as const),
    });
    fc.assert(
      fc.property(fc.array(policyArb, { maxLength: 3 }), (specs) => {
        const rows: PolicyRow[] = specs.map((s, i) => ({
          id: i + 1,
          tenantId: 1,
          name: `p${i}`,
          subject: { identity: s.subject },
          ...(s.ingress ? { ingress: s.ingress } : {}),
          ...(s.egress ? { egress: s.egress } : {}),
          ...(s.mode ? { mode: s.mode } : {}),
        }));
        const isAudit = (p: PolicyRow, r: PolicyRule) => p.mode === "audit" || r.mode === "audit";
        const enforcedOnly = rows
          .filter((p) => p.mode !== "audit")
          .map((p) => ({ ...p, ...(p.ingress ? { ingress: p.ingress.filter((r) => !isAudit(p, r)) } : {}), ...(p.egress ? { egress: p.egress.filter((r) => !isAudit(p, r)) } : {}) }));
        const allEnforced = rows.map((p) => ({ ...p, mode: "enforce" as const, ingress: p.ingress?.map((r) => ({ ...r, mode: "enforce" as const })), egress: p.egress?.map((r) => ({ ...r, mode: "enforce" as const })) }))
          .map((p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as unknown as PolicyRow);

        const out = compileNode(platform(rows), "n1");
        const expectEnforced = compileNode(platform(enforcedOnly), "n1");
        const expectAll = compileNode(platform(allEnforced), "n1");
        // Rule ids differ (removing rules shifts positions), verdicts must not: weft_policy decides as the enforced rules alone.
        const enforced = createEvaluator(out.maps);
        const enforcedTruth = createEvaluator(expectEnforced.maps);
        // Where weft_audit has entries for a (subject, direction), it decides like the all-enforced policy.
        const audit = createEvaluator({ ...out.maps, policy: out.maps.audit as never });
        const truth = createEvaluator(expectAll.maps);
        const staged = new Set(out.maps.audit.map((e) => `${e.key.localIdentity}/${e.key.direction}`));
        for (const w of workloads) {
          for (const r of workloads) {
            for (const direction of ["ingress", "egress"] as const) {
              const id = identities.find((i) => i.name === w.identity)!.numericId;
              for (const port of [80, 5432, 9]) {
                const flow = { local: w.addresses[0]!, remote: r.addresses[0]!, port, protocol: protocols.tcp, direction };
                expect(enforced(flow).verdict, JSON.stringify(flow)).toBe(enforcedTruth(flow).verdict);
                if (staged.has(`${id}/${direction}`)) expect(audit(flow).verdict, JSON.stringify(flow)).toBe(truth(flow).verdict);
              }
            }
          }
        }
        // And nothing is staged where no audit rule or policy is.
        if (!rows.some((p) => p.mode === "audit" || [...(p.ingress ?? []), ...(p.egress ?? [])].some((r) => r.mode === "audit"))) expect(out.maps.audit).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
