/**
 * Which policy rules the node-to-node transport carries (issue 18), shared by
 * the API (which refuses an explicit mtls it cannot honour) and the compiler
 * (which leaves a rule plaintext when the tenant's default asks for mtls and
 * the rule cannot be carried).
 *
 * The transport carries TCP streams between two workload identities and
 * proves both ends by their SVIDs, so a rule can be mtls only when it allows,
 * names identities (or any peer of the tenant) and not addresses (a CIDR peer
 * has no SVID), and allows TCP: a port naming udp, or "any" protocol on a
 * given port, would leave part of what it allows outside the transport.
 */
import { protocols } from "@weft/codec";
import type { PolicyRule, PortSelector, TenantRow } from "./types.ts";

/** Why `rule` cannot be mtls, with the path of the part of the rule at fault ("peers.0"); null when it can. */
export function mtlsObstacle(rule: Pick<PolicyRule, "action" | "peers" | "ports">): { path: string; message: string } | null {
  if (rule.action !== "allow") return { path: "action", message: "a deny rule carries no traffic: mtls needs an allow rule" };
  const cidr = rule.peers.findIndex((p) => "cidr" in p);
  if (cidr >= 0) return { path: `peers.${cidr}`, message: "a CIDR peer has no SVID: mtls needs identity peers" };
  const port = rule.ports.findIndex((p) => p.protocol === "udp" || (p.protocol === "any" && (p.port ?? 0) !== 0));
  if (port >= 0) return { path: `ports.${port}`, message: 'mtls carries tcp only: name protocol "tcp" or leave it out' };
  return null;
}

/** Whether the transport carries what `rule` allows between nodes; audit rules enforce nothing, so they steer nothing. */
export function carriedByTransport(rule: PolicyRule, tenant: TenantRow, policyMode: PolicyRule["mode"]): boolean {
  if (policyMode === "audit" || rule.mode === "audit") return false;
  return (rule.transport ?? tenant.defaultTransport ?? "plaintext") === "mtls" && mtlsObstacle(rule) === null;
}

/** The TCP ports of an mtls rule (0: any): the part of what it allows that the transport carries. */
export function mtlsPorts(ports: readonly PortSelector[]): number[] {
  if (ports.length === 0) return [0];
  return [...new Set(ports.map((p) => p.port ?? 0))].sort((a, b) => a - b);
}

export const TCP = protocols.tcp;
