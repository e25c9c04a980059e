/**
 * mesh/transport.ts buildTransportDocument on its own: steer entries and
 * rows in, the document out; "any peer" entries, ports merged, and entries
 * that would join two tenants (the compiler never writes one) ignored.
 */
import type { Entry } from "@weft/codec";
import { describe, expect, it } from "vitest";
import { buildTransportDocument, type TransportRows } from "../../api/src/mesh/transport.ts";

const steer = (local: number, remote: number, port: number, direction: "ingress" | "egress"): Entry<"steer"> => ({
  key: { localIdentity: local, remoteIdentity: remote, port, protocol: 6, direction },
  value: { action: "allow", ruleId: 1, mtls: true },
});
const marker = (local: number, direction: "ingress" | "egress"): Entry<"steer"> => ({
  key: { localIdentity: local, remoteIdentity: 0, port: 0, protocol: 0, direction },
  value: { action: "default-deny", ruleId: 0 },
});
const id = (td: string, name: string) => `spiffe://${td}/sa/${name}`;
const rows: TransportRows = {
  identities: new Map([
    [256, { tenantId: 1, spiffeId: id("a.test", "web") }],
    [257, { tenantId: 1, spiffeId: id("a.test", "client") }],
    [258, { tenantId: 1, spiffeId: id("a.test", "batch") }],
    [300, { tenantId: 2, spiffeId: id("b.test", "web") }],
  ]),
  trustDomains: new Map([
    [1, "a.test"],
    [2, "b.test"],
  ]),
  remoteWorkloads: [
    { numericId: 257, addresses: ["198.18.1.2", "198.18.1.3"], endpoint: "198.18.244.1:15008" },
    { numericId: 258, addresses: ["198.18.1.9"], endpoint: "198.18.244.1:15008" },
    { numericId: 300, addresses: ["198.18.3.1"], endpoint: "198.18.244.3:15008" },
  ],
};
const pems = new Map([
  [1, "A PEM"],
  [2, "B PEM"],
]);

describe("buildTransportDocument", () => {
  it("an any-peer ingress entry allows every identity of the local one's tenant; ports merge, port 0 means any", () => {
    const doc = buildTransportDocument([marker(256, "ingress"), steer(256, 0, 8080, "ingress"), steer(256, 257, 9090, "ingress"), steer(256, 257, 9091, "ingress")], rows, pems);
    expect(doc.bundles).toEqual([{ trustDomain: "a.test", caPem: "A PEM" }]);
    // Who may arrive: the receiving transport checks a stream's source address against these.
    expect(doc.remotes).toEqual([
      { address: "198.18.1.2", spiffeId: id("a.test", "client"), node: "198.18.244.1:15008" },
      { address: "198.18.1.3", spiffeId: id("a.test", "client"), node: "198.18.244.1:15008" },
      { address: "198.18.1.9", spiffeId: id("a.test", "batch"), node: "198.18.244.1:15008" },
    ]);
    expect(doc.allow).toEqual([
      { source: id("a.test", "batch"), destination: id("a.test", "web"), ports: [8080] },
      { source: id("a.test", "client"), destination: id("a.test", "web"), ports: [8080, 9090, 9091] },
      { source: id("a.test", "web"), destination: id("a.test", "web"), ports: [8080] },
    ]);
    const any = buildTransportDocument([steer(256, 257, 0, "ingress"), steer(256, 257, 9090, "ingress")], rows, pems);
    expect(any.allow).toEqual([{ source: id("a.test", "client"), destination: id("a.test", "web") }]);
  });

  it("egress entries name the remotes: every address of the steered-to identity's workloads, with their node's endpoint", () => {
    const doc = buildTransportDocument([marker(256, "egress"), steer(256, 257, 5432, "egress")], rows, pems);
    expect(doc.remotes).toEqual([
      { address: "198.18.1.2", spiffeId: id("a.test", "client"), node: "198.18.244.1:15008" },
      { address: "198.18.1.3", spiffeId: id("a.test", "client"), node: "198.18.244.1:15008" },
    ]);
    expect(doc.allow).toEqual([]);
  });

  it("never joins two tenants, even if an entry named one: no remote, pair or bundle of the other tenant", () => {
    const doc = buildTransportDocument([steer(256, 300, 80, "egress"), steer(256, 300, 80, "ingress"), steer(256, 0, 80, "egress")], rows, pems);
    expect(JSON.stringify(doc)).not.toContain("b.test");
    expect(doc.remotes.map((r) => r.address)).toEqual(["198.18.1.2", "198.18.1.3", "198.18.1.9"]);
  });

  it("only allow entries count, and nothing of a tenant without a steered local identity", () => {
    expect(buildTransportDocument([marker(256, "egress"), marker(256, "ingress")], rows, pems)).toEqual({ bundles: [], remotes: [], allow: [] });
    expect(buildTransportDocument([], rows, pems)).toEqual({ bundles: [], remotes: [], allow: [] });
  });
});
