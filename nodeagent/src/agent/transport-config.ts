// SPDX-License-Identifier: Apache-2.0
/**
 * The transport's `configure` input: the API's transport document
 * (GET /v1/nodes/{node}/transport: bundles, remotes, allowed pairs) plus the
 * `workloads` only this agent has, the SVIDs it holds (svid.ts): each key
 * stays on this node.
 */
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { LocalWorkload, TransportConfig } from "../transport/control-schema.ts";
import type { HeldSvid, SvidManager } from "./svid.ts";

/** What the API serves: the transport's configuration without the workloads and the proxy's SVIDs (no key ever leaves a node). */
export const TransportDocument = Type.Omit(TransportConfig, ["workloads", "proxySvids"]);
export type TransportDocument = Static<typeof TransportDocument>;

/** The document of a node with nothing to carry. */
export const emptyDocument = (): TransportDocument => ({ bundles: [], remotes: [], allow: [] });

/** The document `body` is, or why not (the first fault, with its path). */
export function checkDocument(body: unknown): TransportDocument | string {
  if (Value.Check(TransportDocument, body)) return body;
  const e = Value.Errors(TransportDocument, body).First();
  return e ? `${e.path || "/"}: ${e.message}` : "not a transport document";
}

/** The SVIDs the agent holds now. */
export type SvidSource = Pick<SvidManager, "workloads" | "svidOf">;

/** Addresses per SPIFFE ID the transport takes (control-schema.ts LocalWorkload). */
const MAX_ADDRESSES = 16;

const pem = (der: Buffer) => new X509Certificate(der).toString();

/**
 * One local workload per SPIFFE ID of the trust domains given: workloads
 * sharing an identity share its addresses, and the transport presents one
 * SVID for it, the one that expires last (the newest rotation). A workload
 * of a tenant the document names no bundle for takes part in no mtls rule;
 * the transport would refuse the whole configuration for an SVID it cannot
 * verify, so it is left out.
 */
export function localWorkloads(svids: SvidSource, trustDomains: ReadonlySet<string>): Static<typeof LocalWorkload>[] {
  const byId = new Map<string, { svid: HeldSvid; addresses: Set<string> }>();
  for (const ref of svids.workloads()) {
    const svid = svids.svidOf(`${ref.tenant}/${ref.workload}`);
    if (!svid || !ref.addresses?.length || !trustDomains.has(svid.trustDomain)) continue;
    const held = byId.get(svid.spiffeId);
    if (!held) byId.set(svid.spiffeId, { svid, addresses: new Set(ref.addresses) });
    else {
      for (const a of ref.addresses) held.addresses.add(a);
      if (svid.notAfter > held.svid.notAfter) held.svid = svid;
    }
  }
  return [...byId.values()]
    .sort((a, b) => (a.svid.spiffeId < b.svid.spiffeId ? -1 : 1))
    .map(({ svid, addresses }) => ({
      spiffeId: svid.spiffeId,
      addresses: [...addresses].sort().slice(0, MAX_ADDRESSES),
      keyPem: createPrivateKey({ key: svid.keyDer, format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }) as string,
      chainPem: svid.chainDer.map(pem).join(""),
    }));
}

/**
 * The tenants the node's proxy needs an SVID in: those of the trust domains
 * of its targets, named by a local workload of that trust domain (the API
 * issues the proxy's SVID to a node running a workload of the tenant).
 */
export function proxyTenants(document: TransportDocument, svids: SvidSource): string[] {
  const targets = new Set((document.proxy?.targets ?? []).map((t) => t.slice(0, t.lastIndexOf(":"))));
  const trustDomains = new Set(document.remotes.filter((r) => targets.has(r.address)).map((r) => new URL(r.spiffeId).host));
  const tenants = new Set<string>();
  for (const ref of svids.workloads()) {
    const svid = svids.svidOf(`${ref.tenant}/${ref.workload}`);
    if (svid && trustDomains.has(svid.trustDomain)) tenants.add(ref.tenant);
  }
  return [...tenants].sort();
}

/** The whole `configure` input: `proxySvids` are the proxy's SVIDs held now (those of the document's trust domains go in). */
export function transportConfig(document: TransportDocument, svids: SvidSource, proxySvids: readonly { spiffeId: string; trustDomain: string; keyPem: string; chainPem: string }[] = []): TransportConfig {
  const trustDomains = new Set(document.bundles.map((b) => b.trustDomain));
  const proxy = proxySvids.filter((p) => trustDomains.has(p.trustDomain)).map(({ spiffeId, keyPem, chainPem }) => ({ spiffeId, keyPem, chainPem }));
  return { workloads: localWorkloads(svids, trustDomains), ...document, ...(proxy.length === 0 ? {} : { proxySvids: proxy }) };
}
