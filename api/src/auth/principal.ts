export const SCOPES = ["read", "write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

/** admin implies write implies read. */
const RANK: Record<Scope, number> = { read: 1, write: 2, admin: 3 };

export function scopeRank(scopes: readonly Scope[]): number {
  // A loop rather than Math.max(...map): every tenant request asks, and this allocates nothing.
  let rank = 0;
  for (const s of scopes) if (RANK[s] > rank) rank = RANK[s];
  return rank;
}
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
