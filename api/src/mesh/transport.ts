/**
 * A node's transport document (issue 18): which peers its transport trusts,
 * where the workloads its own are steered to or arrive from live, and which identity may
 * open streams to which local one. Derived from the node's compiled
 * weft_steer entries, so the transport carries exactly what the kernel
 * steers to it; names, certificates and endpoints come from the rows the
 * change-log follower holds, so an agent's poll reads no database.
 *
 * Only tenants with a local identity in a steer entry appear, so a node
 * never learns of a tenant it does not host; the compiler never writes a
 * steer entry joining two tenants, and the lookups below stay inside the
 * tenant of the local identity all the same.
 */
import type { Entry } from "@weft/codec";
import type { TransportDocument } from "./specs.ts";

/** The rows a document is built from: the follower's, at one applied revision (follower/transport-rows.ts). */
export interface TransportRows {
  /** Every identity of the tenants concerned, by numeric identity. */
  identities: ReadonlyMap<number, { tenantId: number; spiffeId: string }>;
  trustDomains: ReadonlyMap<number, string>;
  /** Workloads of those tenants on other nodes whose node reported a transport endpoint. */
  remoteWorkloads: readonly { numericId: number; addresses: readonly string[]; endpoint: string }[];
}

/** The tenants a node's steer entries concern: those of its local identities. */
export const localIdentities = (steer: readonly Entry<"steer">[]): number[] => [...new Set(steer.map((e) => e.key.localIdentity))].sort((a, b) => a - b);

/** The node's L7 proxy's part in the document (issue 21): its hops that the transport carries. */
export interface ProxyHops {
  /** This node's proxy address. */
  address: string;
  /** The local L7 backend identities other nodes' proxies reach through the transport, and on which ports (compiler l7.ts proxyInboundHops). */
  inbound: readonly { localIdentity: number; ports: readonly number[] }[];
  /** Backends on other nodes this node's proxy reaches through the transport (its L7 document's transport servers). */
  targets: readonly { address: string; port: number }[];
}

/** The document, with `bundles` from the tenants' CA certificates (bundlePem by tenant id). */
export function buildTransportDocument(
  steer: readonly Entry<"steer">[],
  rows: TransportRows,
  bundlePem: ReadonlyMap<number, string>,
  proxy?: ProxyHops,
): TransportDocument {
  const tenantOf = (id: number) => rows.identities.get(id)?.tenantId;
  /** A steer entry's remote identities: itself, or every identity of the local one's tenant for "any peer" (0). */
  const remotesOf = (local: number, remote: number): number[] => {
    const tenant = tenantOf(local);
    if (tenant === undefined) return [];
    if (remote !== 0) return tenantOf(remote) === tenant ? [remote] : [];
    return [...rows.identities].filter(([, i]) => i.tenantId === tenant).map(([id]) => id);
  };
  const steeredTo = new Set<number>();
  /** "source destination" -> ports (0: any) */
  const pairs = new Map<string, { source: string; destination: string; ports: Set<number> }>();
  const tenantsTakingPart = new Set<number>();
  for (const { key, value } of steer) {
    if (value.action !== "allow") continue;
    const local = rows.identities.get(key.localIdentity);
    if (local === undefined) continue;
    tenantsTakingPart.add(local.tenantId);
    for (const remote of remotesOf(key.localIdentity, key.remoteIdentity)) {
      // Egress: where the transport carries a local workload's connections. Ingress: who may arrive, which
      // the receiving transport checks by address (the stream's source must be that identity's workload).
      steeredTo.add(remote);
      if (key.direction === "egress") continue;
      const source = rows.identities.get(remote)!.spiffeId;
      const id = `${source} ${local.spiffeId}`;
      let pair = pairs.get(id);
      if (pair === undefined) pairs.set(id, (pair = { source, destination: local.spiffeId, ports: new Set() }));
      pair.ports.add(key.port);
    }
  }
  /** local SPIFFE ID -> ports (0: any) any node's proxy of its trust domain may open streams to */
  const proxyAllow = new Map<string, Set<number>>();
  for (const hop of proxy?.inbound ?? []) {
    const local = rows.identities.get(hop.localIdentity);
    if (local === undefined) continue;
    tenantsTakingPart.add(local.tenantId);
    proxyAllow.set(local.spiffeId, new Set(hop.ports));
  }
  const targetAddresses = new Set((proxy?.targets ?? []).map((t) => t.address));
  const targetWorkloads = rows.remoteWorkloads.filter((w) => w.addresses.some((a) => targetAddresses.has(a)));
  for (const w of targetWorkloads) tenantsTakingPart.add(rows.identities.get(w.numericId)!.tenantId);
  const bundles = [...tenantsTakingPart].flatMap((t) => {
    const caPem = bundlePem.get(t);
    const trustDomain = rows.trustDomains.get(t);
    return caPem === undefined || trustDomain === undefined ? [] : [{ trustDomain, caPem }];
  });
  const remotes = rows.remoteWorkloads
    .filter((w) => steeredTo.has(w.numericId) || targetWorkloads.includes(w))
    .flatMap((w) => w.addresses.map((address) => ({ address, spiffeId: rows.identities.get(w.numericId)!.spiffeId, node: w.endpoint })));
  const allow = [...pairs.values()].map(({ source, destination, ports }) => ({ source, destination, ...listedPorts(ports) }));
  const remoteAddresses = new Set(remotes.map((r) => r.address));
  const targets = (proxy?.targets ?? [])
    .filter((t) => remoteAddresses.has(t.address))
    .map((t) => `${t.address}:${t.port}`)
    .filter((t, i, all) => all.indexOf(t) === i);
  const proxyPart =
    proxy === undefined || (targets.length === 0 && proxyAllow.size === 0)
      ? {}
      : {
          proxy: {
            address: proxy.address,
            targets: targets.sort(),
            allow: [...proxyAllow].map(([destination, ports]) => ({ destination, ...listedPorts(ports) })).sort((a, b) => compare(a.destination, b.destination)),
          },
        };
  return {
    bundles: bundles.sort((a, b) => compare(a.trustDomain, b.trustDomain)),
    remotes: remotes.sort((a, b) => compare(a.address, b.address)),
    allow: allow.sort((a, b) => compare(a.source, b.source) || compare(a.destination, b.destination)),
    ...proxyPart,
  };
}

/** Ports as the document lists them: absent for any port (0 among them). */
const listedPorts = (ports: ReadonlySet<number>): { ports?: number[] } => (ports.has(0) ? {} : { ports: [...ports].sort((a, b) => a - b) });

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
