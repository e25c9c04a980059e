/** The URL parameters every tenant-owned resource is named by. */
import type { ResourceKind } from "../resource.ts";

export function tenantScopedKeys(noun: string): ResourceKind["keys"] {
  return [
    { parameter: "tenant", attribute: "tenant", description: `The tenant the ${noun} belongs to (a DNS label). Changing it replaces the ${noun}.` },
    { parameter: "name", attribute: "name", description: `The ${noun}'s name (a DNS label). Changing it replaces the ${noun}.` },
  ];
}
