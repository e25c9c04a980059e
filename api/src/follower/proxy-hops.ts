/**
 * The node's L7 proxy's part in its transport document (mesh/transport.ts
 * ProxyHops), from what the compiler made for the node: its L7 document's
 * transport servers (hops out) and its mtls allow entries for other nodes'
 * proxies (hops in).
 */
import { constants, type Entry } from "@weft/codec";
import type { L7Config } from "../compiler/index.ts";
import type { ProxyHops } from "../mesh/transport.ts";

/** Undefined when the node has no proxy address (no pod block). `tenants`: the names of the tenants whose backends are targets. */
export function proxyHopsOf(l7: L7Config | null, policy: readonly Entry<"policy">[]): (ProxyHops & { tenants: string[] }) | undefined {
  if (l7 === null) return undefined;
  const entries = policy.filter((e) => e.key.remoteIdentity === constants.IDENTITY_PROXY && e.key.direction === "ingress" && e.value.mtls === true);
  const tenantOfBackend = new Map<string, string>();
  for (const f of l7.frontends) {
    tenantOfBackend.set(f.defaultBackend, f.tenant);
    for (const r of f.rules) for (const b of r.backends) tenantOfBackend.set(b.backend, f.tenant);
  }
  const targets: { address: string; port: number }[] = [];
  const tenants = new Set<string>();
  for (const b of l7.backends) {
    for (const s of b.servers) {
      if (s.transport !== true) continue;
      targets.push({ address: s.address, port: s.port });
      const tenant = tenantOfBackend.get(b.name);
      if (tenant !== undefined) tenants.add(tenant);
    }
  }
  return { address: l7.proxyAddress, entries, targets, tenants: [...tenants] };
}
