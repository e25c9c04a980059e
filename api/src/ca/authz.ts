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
      /** The node's labels as stored now (read at the request, never cached past a change). */
      labels: Readonly<Record<string, string>>;
      /**
       * Identities of the workloads currently scheduled on this node, as the
       * caller loaded them, each with its identity's node selector as stored now.
       */
      workloadIdentities: readonly NodeWorkloadIdentity[];
    };

/** A workload's identity on a node, with the identity's current node selector. */
export interface NodeWorkloadIdentity {
  tenantId: string;
  identityName: string;
  nodeSelector: Readonly<Record<string, string>>;
}

/**
 * Whether a node with these labels may run an identity with this node
 * selector: every label the selector names must be on the node with the same
 * value; an empty selector matches every node. The one definition, used for
 * SVIDs here and for workload writes (mesh/workloads.ts).
 */
export function nodeSelectorMatches(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector)) {
    if (!Object.hasOwn(labels, key) || labels[key] !== value) return false;
  }
  return true;
}

/**
 * Whether a node credential may itself declare (create, replace or delete) a
 * workload of an identity: the identity allows node registration and its node
 * selector matches the node's labels. A missing identity is no identity.
 */
export function nodeMayRegister(
  identity: { allowNodeRegistration: boolean; nodeSelector: Readonly<Record<string, string>> } | null | undefined,
  nodeLabels: Readonly<Record<string, string>>,
): boolean {
  return !!identity && identity.allowNodeRegistration && nodeSelectorMatches(identity.nodeSelector, nodeLabels);
}

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
      // On the node, and permitted there by the identity now: its node selector
      // matches the node's current labels (SPIRE: the entry names the agent).
      const onNode = principal.workloadIdentities.some(
        (w) =>
          w.tenantId === identity.tenantId &&
          w.identityName === identity.identityName &&
          nodeSelectorMatches(w.nodeSelector, principal.labels),
      );
      return onNode
        ? { allow: true }
        : { allow: false, reason: "not_found", message: "identity not found among this node's workloads" };
    }
  }
}

/**
 * The node's current labels and the workloads registered on `node` that carry
 * `identity` (tenant + name), each with the identity's current node selector;
 * an empty list when there are none. Read from the database on every call: a
 * selector or label change must stop issuance at once.
 */
export type NodeWorkloadLookup = (
  node: string,
  identity: IdentityRef,
) => Promise<{ labels: Record<string, string>; workloads: NodeWorkloadIdentity[] }>;

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
    case "node": {
      const { labels, workloads } = await workloadsOn(principal.node, identity);
      return { kind: "node", nodeId: principal.node, labels, workloadIdentities: workloads };
    }
  }
}
