import { describe, expect, it } from "vitest";
import { mayObtainSvid, nodeMayRegister, nodeSelectorMatches, svidPrincipalOf } from "../../api/src/ca/authz.ts";

const web = { tenantId: "acme", identityName: "web" };

describe("who may obtain an SVID", () => {
  it("tenant tokens with write or admin scope, for their own tenant only", () => {
    expect(mayObtainSvid({ kind: "tenant", tenantId: "acme", scopes: ["write"] }, web)).toEqual({ allow: true });
    expect(mayObtainSvid({ kind: "tenant", tenantId: "acme", scopes: ["admin"] }, web)).toEqual({ allow: true });
    expect(mayObtainSvid({ kind: "tenant", tenantId: "acme", scopes: ["read"] }, web)).toMatchObject({ allow: false, reason: "forbidden" });
    // Another tenant's identity looks like a missing one, so names do not leak.
    expect(mayObtainSvid({ kind: "tenant", tenantId: "evil", scopes: ["write", "admin"] }, web)).toMatchObject({ allow: false, reason: "not_found" });
  });

  it("the operator, for any tenant's identity", () => {
    expect(mayObtainSvid({ kind: "operator" }, web)).toEqual({ allow: true });
  });

  it("node agents, only for identities of workloads on their node", () => {
    const any = { nodeSelector: {} };
    const node = { kind: "node" as const, nodeId: "n1", labels: {}, workloadIdentities: [{ ...web, ...any }, { tenantId: "other", identityName: "db", ...any }] };
    expect(mayObtainSvid(node, web)).toEqual({ allow: true });
    expect(mayObtainSvid(node, { tenantId: "acme", identityName: "db" })).toMatchObject({ allow: false, reason: "not_found" });
  });

  it("node agents, only while the identity's node selector matches the node's labels", () => {
    const node = (labels: Record<string, string>) => ({
      kind: "node" as const,
      nodeId: "n1",
      labels,
      workloadIdentities: [{ ...web, nodeSelector: { pool: "gpu", zone: "a" } }],
    });
    expect(mayObtainSvid(node({ pool: "gpu", zone: "a", extra: "x" }), web)).toEqual({ allow: true });
    expect(mayObtainSvid(node({ pool: "gpu" }), web)).toMatchObject({ allow: false, reason: "not_found" });
    expect(mayObtainSvid(node({ pool: "cpu", zone: "a" }), web)).toMatchObject({ allow: false, reason: "not_found" });
  });

  it("node selectors: every label must match; empty matches any node; inherited properties are no labels", () => {
    expect(nodeSelectorMatches({}, {})).toBe(true);
    expect(nodeSelectorMatches({ a: "1" }, { a: "1", b: "2" })).toBe(true);
    expect(nodeSelectorMatches({ a: "1", b: "2" }, { a: "1" })).toBe(false);
    expect(nodeSelectorMatches({ a: "" }, {})).toBe(false);
    expect(nodeSelectorMatches({ toString: Object.prototype.toString as unknown as string }, {})).toBe(false);
    expect(nodeMayRegister({ allowNodeRegistration: true, nodeSelector: {} }, {})).toBe(true);
    expect(nodeMayRegister({ allowNodeRegistration: false, nodeSelector: {} }, {})).toBe(false);
    expect(nodeMayRegister({ allowNodeRegistration: true, nodeSelector: { a: "1" } }, { a: "2" })).toBe(false);
    expect(nodeMayRegister(null, {})).toBe(false);
  });
});

describe("the facts mayObtainSvid decides on", () => {
  it("a node's are the workloads on it carrying the identity asked for, looked up for that node only", async () => {
    const asked: [string, { tenantId: string; identityName: string }][] = [];
    const lookup = async (node: string, identity: { tenantId: string; identityName: string }) => {
      asked.push([node, identity]);
      return { labels: {}, workloads: node === "n1" ? [{ ...identity, nodeSelector: {} }] : [] };
    };
    const onN1 = await svidPrincipalOf({ kind: "node", node: "n1" }, web, lookup);
    expect(mayObtainSvid(onN1, web)).toEqual({ allow: true });
    const onN2 = await svidPrincipalOf({ kind: "node", node: "n2" }, web, lookup);
    expect(mayObtainSvid(onN2, web)).toMatchObject({ allow: false, reason: "not_found" });
    expect(asked).toEqual([["n1", web], ["n2", web]]);
  });

  it("tenant tokens keep their tenant and scopes; nothing is looked up for them or the operator", async () => {
    const never = async () => {
      throw new Error("no lookup expected");
    };
    const token = { kind: "tenant" as const, tokenId: "t", tenantId: 7, scopes: ["read" as const], expiresAt: 0 };
    expect(await svidPrincipalOf(token, web, never)).toEqual({ kind: "tenant", tenantId: "7", scopes: ["read"] });
    expect(await svidPrincipalOf({ kind: "operator" }, web, never)).toEqual({ kind: "operator" });
  });
});
