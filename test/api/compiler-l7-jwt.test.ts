/**
 * L7 authorization by JWT (compiler/l7.ts), pure: a rule's jwt reaches its
 * authorization entry with defaults filled, and the document's jwks holds
 * the keys of each (tenant, trust domain) named, from the tenant row:
 * rotating a key in or out changes the document; another tenant's keys for
 * the same trust domain never leak into it.
 */
import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createCompiler } from "../../api/src/compiler/compile.ts";
import type { HttpRouteRow, IdentityRow, JwtKey, NodeRow, PolicyRow, ServiceRow, TenantRow, WorkloadRow } from "../../api/src/compiler/types.ts";
import { L7Document } from "../../api/src/mesh/specs.ts";
import { snapshot } from "../datapath/support.ts";
import { accepts } from "../support/schema-values.ts";

const pem = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }).toString();
const key = (kid: string): JwtKey => ({ kid, alg: "ES256", publicKeyPem: pem() });
const own1 = key("own-1");
const own2 = key("own-2");
const partner = key("partner-1");
const intruder = key("intruder-1");

const acme: TenantRow = {
  id: 1,
  name: "acme",
  defaultAction: "allow",
  trustDomain: "acme.test",
  jwtKeys: [
    { trustDomain: "acme.test", keys: [own1] },
    { trustDomain: "partner.test", keys: [partner] },
  ],
};
// Another tenant claims acme's trust domain with its own key (a pasted bundle is only its word).
const zeta: TenantRow = { id: 2, name: "zeta", defaultAction: "allow", trustDomain: "zeta.test", jwtKeys: [{ trustDomain: "acme.test", keys: [intruder] }] };
const identities: IdentityRow[] = [
  { tenantId: 1, name: "web", numericId: 256, labels: { app: "web" }, path: "/web" },
  { tenantId: 1, name: "api", numericId: 257, labels: { app: "api" }, path: "/api" },
  { tenantId: 2, name: "z", numericId: 300, labels: { app: "z" }, path: "/z" },
];
const workloads: WorkloadRow[] = [
  { tenantId: 1, name: "web-1", identity: "web", node: "n1", addresses: ["10.0.1.10"] },
  { tenantId: 1, name: "api-1", identity: "api", node: "n1", addresses: ["10.0.1.11"] },
  { tenantId: 2, name: "z-1", identity: "z", node: "n1", addresses: ["10.0.1.12"] },
];
const nodes: NodeRow[] = [{ name: "n1", zone: "a", podCidr: "10.0.1.0/24" }];
const service = (tenantId: number, id: number, name: string, app: string): ServiceRow => ({
  id,
  tenantId,
  name,
  vip: `198.19.0.${id}`,
  ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
  backends: { selector: { labels: { app } } },
  loadBalancing: "random",
  preferSameZone: false,
});
const route = (tenantId: number, id: number, parent: string): HttpRouteRow => ({ id, tenantId, name: "r", parentRefs: [{ name: parent }], rules: [{ backendRefs: [{}] }] });
const jwtPolicy: PolicyRow = {
  id: 1,
  tenantId: 1,
  name: "jwt",
  subject: { identity: "api" },
  ingress: [
    { peers: [{ identity: "web" }], ports: [], action: "allow", http: { methods: ["GET"], jwt: { audiences: ["web"], claims: [{ name: "team", values: ['a "b"', "c"] }] } } },
    { peers: [], ports: [], action: "deny", http: { jwt: { trustDomain: "partner.test", audiences: ["x", "y"] } } },
    { peers: [], ports: [], action: "allow", http: { pathPrefixes: ["/health"] } },
  ],
};
const zetaPolicy: PolicyRow = { id: 2, tenantId: 2, name: "z", subject: { identity: "z" }, ingress: [{ peers: [], ports: [], action: "allow", http: { jwt: { trustDomain: "acme.test", audiences: ["z"] } } }] };

const build = (tenants: TenantRow[], policies: PolicyRow[] = [jwtPolicy, zetaPolicy]) =>
  createCompiler(
    snapshot({
      tenants,
      identities,
      workloads,
      nodes,
      services: [service(1, 5, "api", "api"), service(2, 9, "zapi", "z")],
      httpRoutes: [route(1, 1, "api"), route(2, 2, "zapi")],
      policies,
    }),
  );

describe("the L7 document's JWT requirements", () => {
  it("carries each rule's jwt on its entry, trust domain and claims filled in, beside its other matches", () => {
    const doc = build([acme, zeta]).l7Document("n1")!;
    expect(accepts(L7Document, doc)).toBe(true);
    const entries = doc.frontends.find((f) => f.tenant === "acme")!.authorization.entries;
    expect(entries).toEqual([
      {
        action: "allow",
        sources: ["spiffe://acme.test/web"],
        methods: ["GET"],
        jwt: { trustDomain: "acme.test", audiences: ["web"], claims: [{ name: "team", values: ['a "b"', "c"] }] },
        policy: "jwt",
        rule: 0,
        groups: [0],
      },
      { action: "deny", jwt: { trustDomain: "partner.test", audiences: ["x", "y"], claims: [] }, policy: "jwt", rule: 1 },
      { action: "allow", pathPrefixes: ["/health"], policy: "jwt", rule: 2, groups: [0] },
    ]);
  });

  it("lists the keys of every (tenant, trust domain) named, each tenant's own only", () => {
    const doc = build([acme, zeta]).l7Document("n1")!;
    expect(doc.jwks).toEqual([
      { tenant: "acme", trustDomain: "acme.test", keys: [own1] },
      { tenant: "acme", trustDomain: "partner.test", keys: [partner] },
      { tenant: "zeta", trustDomain: "acme.test", keys: [intruder] },
    ]);
  });

  it("changes when a key rotates in or out, and lists a trust domain whose keys are gone with none (no token verifies)", () => {
    const compiler = build([acme, zeta]);
    const before = compiler.l7Document("n1")!;
    compiler.apply({ kind: "tenant", op: "put", row: { ...acme, jwtKeys: [{ trustDomain: "acme.test", keys: [own1, own2] }] } });
    const rotatedIn = compiler.l7Document("n1")!;
    expect(rotatedIn).not.toEqual(before);
    expect(rotatedIn.jwks?.[0]).toEqual({ tenant: "acme", trustDomain: "acme.test", keys: [own1, own2] });
    expect(rotatedIn.jwks?.[1]).toEqual({ tenant: "acme", trustDomain: "partner.test", keys: [] });
    compiler.apply({ kind: "tenant", op: "put", row: { ...acme, jwtKeys: [{ trustDomain: "acme.test", keys: [own2] }] } });
    expect(compiler.l7Document("n1")!.jwks?.[0]?.keys).toEqual([own2]);
  });

  it("has no jwks when no entry names a JWT", () => {
    const doc = build([acme, zeta], [{ ...jwtPolicy, ingress: [jwtPolicy.ingress![2]!] }])!.l7Document("n1")!;
    expect(doc.jwks).toBeUndefined();
  });
});
