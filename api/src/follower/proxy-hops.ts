/**
 * The node's L7 proxy's part in its transport document (mesh/transport.ts
 * ProxyHops), from what the compiler made for the node: its L7 document's
 * transport servers (hops out) and the local L7 backends other nodes'
 * proxies reach through the transport (hops in, l7.ts proxyInboundHops).
 */
import type { L7Config } from "../compiler/index.ts";
import type { ProxyHops } from "../mesh/transport.ts";

/** Undefined when the node has no proxy address (no pod block). `tenants`: the names of the tenants whose backends are targets. */
export function proxyHopsOf(l7: L7Config | null, inbound: ProxyHops["inbound"]): (ProxyHops & { tenants: string[] }) | undefined {
  if (l7 === null) return undefined;
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
  return { address: l7.proxyAddress, inbound, targets, tenants: [...tenants] };
}
