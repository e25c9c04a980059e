import { describe, expect, it } from "vitest";
import { mayObtainSvid } from "../../api/src/ca/authz.ts";

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
