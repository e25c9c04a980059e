// The one place that decides who may obtain an SVID for an identity. Routes
// call this and nothing else, so the node-agent case (a later issue) only
// extends the Principal union and this function.

export type Principal =
  /** The platform operator manages every tenant, so may obtain any SVID. */
  | { kind: "operator" }
  | { kind: "tenant"; tenantId: string; scopes: readonly string[] }
  | {
      kind: "node";
      nodeId: string;
      /** Identities of the workloads currently scheduled on this node, as the caller loaded them. */
      workloadIdentities: readonly { tenantId: string; identityName: string }[];
    };

export interface IdentityRef {
  tenantId: string;
  identityName: string;
}

/**
 * "not_found" must be answered like a missing identity (404), so names of
 * other tenants do not leak; "forbidden" is a 403 within one's own tenant.
 */
export type SvidDecision = { allow: true } | { allow: false; reason: "not_found" | "forbidden"; message: string };

/** Scopes that let a tenant token obtain SVIDs: admin includes write. */
const SVID_SCOPES = new Set(["write", "admin"]);

export function mayObtainSvid(principal: Principal, identity: IdentityRef): SvidDecision {
  switch (principal.kind) {
    case "operator":
      return { allow: true };
    case "tenant":
      if (principal.tenantId !== identity.tenantId) {
        return { allow: false, reason: "not_found", message: "identity not found" };
      }
      if (!principal.scopes.some((s) => SVID_SCOPES.has(s))) {
        return { allow: false, reason: "forbidden", message: "obtaining an SVID needs the write scope" };
      }
      return { allow: true };
    case "node": {
      const onNode = principal.workloadIdentities.some(
        (w) => w.tenantId === identity.tenantId && w.identityName === identity.identityName,
      );
      return onNode
        ? { allow: true }
        : { allow: false, reason: "not_found", message: "identity not found among this node's workloads" };
    }
  }
}
