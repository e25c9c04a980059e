import { describe, expect, it } from "vitest";
import { mayObtainSvid, svidPrincipalOf } from "../../api/src/ca/authz.ts";

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
    const node = { kind: "node" as const, nodeId: "n1", workloadIdentities: [web, { tenantId: "other", identityName: "db" }] };
    expect(mayObtainSvid(node, web)).toEqual({ allow: true });
    expect(mayObtainSvid(node, { tenantId: "acme", identityName: "db" })).toMatchObject({ allow: false, reason: "not_found" });
  });
});

describe("the facts mayObtainSvid decides on", () => {
  it("a node's are the workloads on it carrying the identity asked for, looked up for that node only", async () => {
    const asked: [string, { tenantId: string; identityName: string }][] = [];
    const lookup = async (node: string, identity: { tenantId: string; identityName: string }) => {
      asked.push([node, identity]);
      return node === "n1" ? [identity] : [];
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
