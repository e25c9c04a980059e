/**
 * The node-to-node transport in the compiler (issue 18; compiler/steer.ts,
 * compiler/transport.ts): mtls on the weft_policy entries an mtls rule
 * writes, and weft_steer on the nodes of both ends, keyed by identity.
 */
import type { Entry } from "@weft/codec";
import { describe, expect, it } from "vitest";
import { checkCapacity, capacities } from "../../api/src/compiler/capacity.ts";
import { compileNode, createCompiler } from "../../api/src/compiler/compile.ts";
import { diff, keyString } from "../../api/src/compiler/diff.ts";
import type { IdentityRow, PolicyRow, PolicyRule, Snapshot, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { snapshot, throughCodec } from "./support.ts";

const acme: TenantRow = { id: 1, name: "acme", defaultAction: "allow" };
const other: TenantRow = { id: 2, name: "other", defaultAction: "allow" };
const WEB = 256;
const DB = 257;
const BATCH = 258;
const OTHER = 300;
const identities: IdentityRow[] = [
  { tenantId: 1, name: "web", numericId: WEB, labels: { app: "web" } },
  { tenantId: 1, name: "db", numericId: DB, labels: { app: "db" } },
  { tenantId: 1, name: "batch", numericId: BATCH, labels: { app: "batch" } },
  { tenantId: 2, name: "web", numericId: OTHER, labels: { app: "web" } },
];
// web and batch share n1; db is on n2, beside tenant other's web.
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "web-1", identity: "web", node: "n1", addresses: ["198.18.1.1"] },
  { tenantId: 1, name: "batch-1", identity: "batch", node: "n1", addresses: ["198.18.1.2"] },
  { tenantId: 1, name: "db-1", identity: "db", node: "n2", addresses: ["198.18.2.1"] },
  { tenantId: 2, name: "web-1", identity: "web", node: "n2", addresses: ["198.18.2.9"] },
];
const nodes = [
  { name: "n1", zone: "a" },
  { name: "n2", zone: "b" },
];
const platform = (policies: PolicyRow[], tenant: TenantRow = acme, extra: PolicyRow[] = []): Snapshot =>
  snapshot({ tenants: [tenant, other], identities, workloads, nodes, policies: [...policies, ...extra] });

const policy = (subject: string, rules: { ingress?: PolicyRule[]; egress?: PolicyRule[] }, id = 1, tenantId = 1, mode?: "audit"): PolicyRow => ({
  id,
  tenantId,
  name: `p${id}`,
  subject: { identity: subject },
  ...rules,
  ...(mode ? { mode } : {}),
});
const rule = (r: Partial<PolicyRule>): PolicyRule => ({ peers: [], ports: [], action: "allow", ...r });
const fromWeb = (extra: Partial<PolicyRule> = {}) => rule({ peers: [{ identity: "web" }], ports: [{ port: 5432, protocol: "tcp" }], transport: "mtls", ...extra });

/** "local/direction/remote/port/protocol = action[ mtls]" lines: what a reader compares. */
const lines = (entries: readonly Entry<"policy" | "steer">[]): string[] =>
  entries.map((e) => `${keyString("steer", e.key)} = ${e.value.action}${e.value.mtls ? " mtls" : ""}`);
const steer = (snap: Snapshot, node: string) => lines(compileNode(snap, node).maps.steer);
const policyOf = (snap: Snapshot, node: string) => lines(compileNode(snap, node).maps.policy);

describe("weft_steer and mtls policy entries", () => {
  it("an ingress mtls rule: the peer's node steers its egress to the subject, the subject's node its ingress from the peer", () => {
    const snap = platform([policy("db", { ingress: [fromWeb()] })]);
    expect(steer(snap, "n1")).toEqual([`${WEB}/egress/0/0/0 = default-deny`, `${WEB}/egress/${DB}/5432/6 = allow mtls`]);
    expect(steer(snap, "n2")).toEqual([`${DB}/ingress/0/0/0 = default-deny`, `${DB}/ingress/${WEB}/5432/6 = allow mtls`]);
    expect(policyOf(snap, "n2")).toEqual([`${DB}/ingress/0/0/0 = default-deny`, `${DB}/ingress/${WEB}/5432/6 = allow mtls`]);
    // batch takes no part: no steer entry names it, and its policy is untouched.
    expect(compileNode(snap, "n1").maps.steer.every((e) => e.key.localIdentity === WEB)).toBe(true);
  });

  it("an egress mtls rule: the subject's node steers its egress, the peer's node its ingress", () => {
    const snap = platform([policy("web", { egress: [rule({ peers: [{ identity: "db" }], ports: [{ port: 5432 }], transport: "mtls" })] })]);
    expect(steer(snap, "n1")).toEqual([`${WEB}/egress/0/0/0 = default-deny`, `${WEB}/egress/${DB}/5432/6 = allow mtls`]);
    expect(steer(snap, "n2")).toEqual([`${DB}/ingress/0/0/0 = default-deny`, `${DB}/ingress/${WEB}/5432/6 = allow mtls`]);
    // Protocol left out allows udp too: that part stays plaintext, the tcp part is mtls.
    expect(policyOf(snap, "n1")).toEqual([`${WEB}/egress/0/0/0 = default-deny`, `${WEB}/egress/${DB}/5432/0 = allow`, `${WEB}/egress/${DB}/5432/6 = allow mtls`]);
  });

  it("any peer: the subject's side names peer 0, every identity of the tenant (and no other tenant's) steers to the subject", () => {
    const snap = platform([policy("db", { ingress: [rule({ ports: [{ port: 5432, protocol: "tcp" }], transport: "mtls" })] })]);
    expect(steer(snap, "n1")).toEqual([
      `${WEB}/egress/0/0/0 = default-deny`,
      `${WEB}/egress/${DB}/5432/6 = allow mtls`,
      `${BATCH}/egress/0/0/0 = default-deny`,
      `${BATCH}/egress/${DB}/5432/6 = allow mtls`,
    ]);
    expect(steer(snap, "n2")).toEqual([
      `${DB}/ingress/0/0/0 = default-deny`,
      `${DB}/ingress/0/5432/6 = allow mtls`,
      `${DB}/egress/0/0/0 = default-deny`,
      `${DB}/egress/${DB}/5432/6 = allow mtls`,
    ]);
    expect(compileNode(snap, "n2").maps.steer.some((e) => e.key.localIdentity === OTHER || e.key.remoteIdentity === OTHER)).toBe(false);
  });

  it("any port: the mtls part is tcp on port 0, the rest of the protocols stay plaintext", () => {
    const snap = platform([policy("db", { ingress: [fromWeb({ ports: [] })] })]);
    expect(steer(snap, "n1")).toEqual([`${WEB}/egress/0/0/0 = default-deny`, `${WEB}/egress/${DB}/0/6 = allow mtls`]);
    expect(policyOf(snap, "n2")).toEqual([`${DB}/ingress/0/0/0 = default-deny`, `${DB}/ingress/${WEB}/0/0 = allow`, `${DB}/ingress/${WEB}/0/6 = allow mtls`]);
  });

  it("the tenant's default mtls applies to rules that name no transport; an explicit plaintext stays plaintext", () => {
    const mtlsTenant: TenantRow = { ...acme, defaultTransport: "mtls" };
    const { transport: _, ...unnamed } = fromWeb();
    expect(compileNode(platform([policy("db", { ingress: [unnamed] })], mtlsTenant), "n1").maps.steer).toEqual(
      compileNode(platform([policy("db", { ingress: [fromWeb()] })]), "n1").maps.steer,
    );
    expect(compileNode(platform([policy("db", { ingress: [unnamed] })], mtlsTenant), "n1").maps.steer.length).toBeGreaterThan(0);
    const plaintext = platform([policy("db", { ingress: [fromWeb({ transport: "plaintext" })] })], mtlsTenant);
    expect(compileNode(plaintext, "n1").maps.steer).toEqual([]);
    expect(policyOf(plaintext, "n2")).toEqual([`${DB}/ingress/0/0/0 = default-deny`, `${DB}/ingress/${WEB}/5432/6 = allow`]);
    // And with the default plaintext, an unnamed rule writes nothing of the transport.
    expect(compileNode(platform([policy("db", { ingress: [unnamed] })]), "n1").maps.steer).toEqual([]);
  });

  it("a same-node pair still gets its entries, keyed by identity (the datapath checks locality)", () => {
    const snap = platform([policy("batch", { ingress: [fromWeb()] })]);
    expect(steer(snap, "n1")).toEqual([
      `${WEB}/egress/0/0/0 = default-deny`,
      `${WEB}/egress/${BATCH}/5432/6 = allow mtls`,
      `${BATCH}/ingress/0/0/0 = default-deny`,
      `${BATCH}/ingress/${WEB}/5432/6 = allow mtls`,
    ]);
    expect(compileNode(snap, "n2").maps.steer).toEqual([]);
  });

  it("CIDR peers, udp, any-protocol ports, deny rules and audit rules never write mtls or steer entries, even under a default mtls", () => {
    const mtlsTenant: TenantRow = { ...acme, defaultTransport: "mtls" };
    const cannot: PolicyRule[] = [
      rule({ peers: [{ cidr: "198.19.0.0/16" }], ports: [{ port: 443, protocol: "tcp" }] }),
      rule({ peers: [{ identity: "web" }], ports: [{ port: 53, protocol: "udp" }] }),
      rule({ peers: [{ identity: "web" }], ports: [{ port: 80, protocol: "any" }] }),
      rule({ peers: [{ identity: "batch" }], ports: [], action: "deny" }),
      rule({ peers: [{ identity: "web" }], ports: [{ port: 9000, protocol: "tcp" }], mode: "audit" }),
    ];
    for (const tenant of [acme, mtlsTenant]) {
      const snap = platform([policy("db", { ingress: cannot.map((r) => ({ ...r, ...(tenant === acme ? { transport: "mtls" as const } : {}) })) })], tenant);
      for (const node of ["n1", "n2"]) {
        const out = compileNode(snap, node);
        expect(out.maps.steer).toEqual([]);
        expect(out.maps.policy.some((e) => e.value.mtls)).toBe(false);
        expect(out.maps.audit.some((e) => e.value.mtls)).toBe(false);
      }
    }
    // A whole policy in audit mode steers nothing either.
    expect(compileNode(platform([policy("db", { ingress: [fromWeb()] }, 1, 1, "audit")]), "n1").maps.steer).toEqual([]);
  });

  it("where a plaintext and an mtls allow meet at one key, the entry asks for mtls", () => {
    const snap = platform([policy("db", { ingress: [fromWeb({ transport: "plaintext" }), fromWeb()] })]);
    expect(policyOf(snap, "n2")).toEqual([`${DB}/ingress/0/0/0 = default-deny`, `${DB}/ingress/${WEB}/5432/6 = allow mtls`]);
  });

  it("a deny still wins over an mtls allow it overlaps", () => {
    const snap = platform([policy("db", { ingress: [fromWeb({ ports: [] }), rule({ peers: [{ identity: "web" }], ports: [{ port: 22, protocol: "tcp" }], action: "deny" })] })]);
    expect(policyOf(snap, "n2")).toContain(`${DB}/ingress/${WEB}/22/6 = deny`);
  });

  it("tenants never meet: tenant other's node part holds none of acme's steering for its identities", () => {
    const snap = platform([policy("db", { ingress: [fromWeb()] })], acme, [policy("web", { ingress: [rule({ transport: "mtls" })] }, 2, 2)]);
    const n2 = compileNode(snap, "n2").maps.steer;
    const acmeIds = new Set([WEB, DB, BATCH]);
    for (const e of n2) {
      const local = e.key.localIdentity;
      if (acmeIds.has(local)) expect(e.key.remoteIdentity === 0 || acmeIds.has(e.key.remoteIdentity)).toBe(true);
      else expect(local === OTHER && (e.key.remoteIdentity === 0 || e.key.remoteIdentity === OTHER)).toBe(true);
    }
    expect(n2.some((e) => e.key.localIdentity === OTHER)).toBe(true);
  });

  it("removing the rule removes every steer entry and marker, in the delta too", () => {
    const compiler = createCompiler(platform([policy("db", { ingress: [fromWeb()] }), policy("web", { egress: [rule({ peers: [{ identity: "db" }], transport: "mtls" })] }, 2)]));
    const before = { n1: compiler.compileNode("n1"), n2: compiler.compileNode("n2") };
    expect(before.n1.maps.steer.length).toBeGreaterThan(0);
    compiler.apply([
      { kind: "policy", op: "delete", tenantId: 1, name: "p1" },
      { kind: "policy", op: "delete", tenantId: 1, name: "p2" },
    ]);
    for (const node of ["n1", "n2"] as const) {
      const after = compiler.compileNode(node);
      expect(after.maps.steer).toEqual([]);
      expect(after.counts.steer).toBe(0);
      const delta = diff(before[node], after);
      expect(delta.deletes.steer.map((k) => keyString("steer", k)).sort()).toEqual(before[node].maps.steer.map((e) => keyString("steer", e.key)).sort());
    }
  });

  it("a tenant switching its default transport recompiles the steering (memo) exactly as a fresh compile", () => {
    const { transport: _, ...unnamed } = fromWeb();
    const compiler = createCompiler(platform([policy("db", { ingress: [unnamed] })]));
    expect(compiler.compileNode("n1").maps.steer).toEqual([]);
    compiler.apply({ kind: "tenant", op: "put", row: { ...acme, defaultTransport: "mtls" } });
    const fresh = compileNode(platform([policy("db", { ingress: [unnamed] })], { ...acme, defaultTransport: "mtls" }), "n1");
    expect(compiler.compileNode("n1").maps.steer).toEqual(fresh.maps.steer);
    expect(compiler.compileNode("n1").hash).toBe(fresh.hash);
  });

  it("steer and mtls survive the codec, and admission counts weft_steer against its capacity", () => {
    const snap = platform([policy("db", { ingress: [fromWeb()] })]);
    const out = compileNode(snap, "n2");
    expect(throughCodec(out.maps).steer).toEqual(out.maps.steer);
    expect(throughCodec(out.maps).policy).toEqual(out.maps.policy);
    expect(out.counts.steer).toBe(2);
    const problems = checkCapacity({ n2: out.counts }, capacities({ steer: 1 }));
    expect(problems).toEqual([{ map: "steer", node: "n2", needed: 2, available: 1 }]);
  });
});
