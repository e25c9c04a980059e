// The one place that decides who may obtain an SVID for an identity. Routes
// call this and nothing else: svidPrincipalOf gathers the facts about the
// caller, mayObtainSvid decides on them.

import type { Principal as RequestPrincipal } from "../auth/principal.ts";

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

/**
 * The workloads registered on `node` that carry `identity` (tenant + name),
 * as identity references; an empty list when there are none.
 */
export type NodeWorkloadLookup = (node: string, identity: IdentityRef) => Promise<IdentityRef[]>;

/**
 * The request's principal as mayObtainSvid sees it. For a node only the
 * workloads matching the identity asked for are loaded: the decision needs
 * no others, and a node may carry thousands.
 */
export async function svidPrincipalOf(
  principal: RequestPrincipal,
  identity: IdentityRef,
  workloadsOn: NodeWorkloadLookup,
): Promise<Principal> {
  switch (principal.kind) {
    case "operator":
      return { kind: "operator" };
    case "tenant":
      return { kind: "tenant", tenantId: String(principal.tenantId), scopes: principal.scopes };
    case "node":
      return { kind: "node", nodeId: principal.node, workloadIdentities: await workloadsOn(principal.node, identity) };
  }
}
