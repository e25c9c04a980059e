export const SCOPES = ["read", "write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** admin implies write implies read. */
const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 };

export const scopeRank = (scopes: readonly Scope[]): number => Math.max(0, ...scopes.map((s) => RANK[s]));
export const hasScope = (scopes: readonly Scope[], needed: Scope): boolean => scopeRank(scopes) >= RANK[needed];

export type Principal =
  | { kind: "operator" }
  | {
      kind: "tenant";
      tokenId: string;
      tenantId: number;
      scopes: Scope[];
      /** Seconds since the epoch. */
      expiresAt: number;
    }
  /** A node agent, by its node credential: its own node's datapath and status, SVIDs of its workloads. */
  | { kind: "node"; node: string };

/** How a principal appears in the audit log. */
export function actorOf(principal: Principal): string {
  switch (principal.kind) {
    case "operator":
      return "operator";
    case "tenant":
      return `token:${principal.tokenId}`;
    case "node":
      return `node:${principal.node}`;
  }
}
