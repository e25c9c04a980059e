// SPDX-License-Identifier: Apache-2.0
/**
 * The transport's desired state, checked and indexed: built whole from one
 * `configure` message or refused whole (ConfigError names what is wrong), so
 * a half-applied set of keys, bundles and pairs never exists.
 */
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { isIPv4 } from "node:net";
import { createSecureContext, type SecureContext } from "node:tls";
import type { TransportConfig } from "./control-schema.ts";
import { parseEndpoint, type Endpoint } from "./endpoint.ts";
import { isNodeProxy, parseSpiffeId, verifySvid, type SpiffeId } from "./spiffe.ts";
import type { TlsPolicy } from "./tls-policy.ts";

export class ConfigError extends Error {}

/** A workload on this node and the SVID the transport presents for it. */
export interface LocalIdentity {
  id: SpiffeId;
  addresses: readonly string[];
  /** PKCS#8 PEM (what node:tls takes). */
  keyPem: string;
  chainPem: string;
  leaf: X509Certificate;
  /** Changes whenever the SVID or its trust domain's bundle does: pooled connections made under another version drain. */
  version: string;
  /** What the inbound server presents when a peer asks for this workload (SNI) and whose bundle it verifies clients against. */
  serverContext: SecureContext;
}

export interface RemoteIdentity {
  address: string;
  id: SpiffeId;
  node: { host: string; port: number };
}

export interface Bundle {
  certificates: readonly X509Certificate[];
  pem: string;
  digest: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function certificates(pem: string, what: string): X509Certificate[] {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new ConfigError(`${what}: no PEM certificate`);
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch (err) {
    throw new ConfigError(`${what}: unreadable certificate: ${(err as Error).message}`);
  }
}

function spiffeId(id: string, what: string): SpiffeId {
  const parsed = parseSpiffeId(id);
  if (!parsed) throw new ConfigError(`${what}: ${JSON.stringify(id)} is not a SPIFFE ID`);
  return parsed;
}

function ipv4(address: string, what: string): string {
  if (!isIPv4(address)) throw new ConfigError(`${what}: ${JSON.stringify(address)} is not an IPv4 address`);
  return address;
}

/** The TLS server name a client asks for to reach a workload: a digest, so the workload's name does not cross the wire in clear. */
export const serverNameFor = (spiffeId: string): string => `${createHash("sha256").update(spiffeId).digest("hex").slice(0, 40)}.svid.weft`;

const pairKey = (source: string, destination: string) => `${source}\n${destination}`;

export class TransportState {
  readonly bundles = new Map<string, Bundle>();
  readonly local = new Map<string, LocalIdentity>();
  readonly localByAddress = new Map<string, LocalIdentity>();
  readonly localByServerName = new Map<string, LocalIdentity>();
  readonly remoteByAddress = new Map<string, RemoteIdentity>();
  /** source \n destination -> allowed ports (null: every port). */
  private readonly pairs = new Map<string, Set<number> | null>();
  /** This node's L7 proxy's SVID by trust domain (also in `local`, so a rotation drains its sessions). */
  readonly proxyByTrustDomain = new Map<string, LocalIdentity>();
  /** Where streams from other nodes' proxies are delivered from: this node's proxy address; null: none taken. */
  readonly proxyAddress: string | null;
  /** Backends on other nodes the node's proxy reaches through the transport, as "ip:port". */
  readonly proxyTargets: ReadonlyMap<string, Endpoint>;
  /** Local SPIFFE ID -> ports (null: every port) any node's proxy of its trust domain may open streams to. */
  private readonly proxyAllowed = new Map<string, Set<number> | null>();

  constructor(config: TransportConfig, tls: TlsPolicy, now = Date.now()) {
    for (const b of config.bundles) {
      if (this.bundles.has(b.trustDomain)) throw new ConfigError(`bundle ${b.trustDomain}: given twice`);
      const certs = certificates(b.caPem, `bundle ${b.trustDomain}`);
      if (certs.some((c) => !c.ca)) throw new ConfigError(`bundle ${b.trustDomain}: holds a certificate that is not a CA`);
      const pem = certs.map((c) => c.toString()).join("");
      this.bundles.set(b.trustDomain, { certificates: certs, pem, digest: createHash("sha256").update(pem).digest("hex") });
    }
    const anchors = new Map([...this.bundles].map(([td, b]) => [td, b.certificates] as const));

    for (const w of config.workloads) {
      const identity = this.identity(w, `workload ${w.spiffeId}`, anchors, tls, now);
      this.localByServerName.set(serverNameFor(identity.id.id), identity);
      for (const a of identity.addresses) {
        if (this.localByAddress.has(a)) throw new ConfigError(`workload ${w.spiffeId}: address ${a} is another workload's`);
        this.localByAddress.set(a, identity);
      }
    }

    for (const p of config.proxySvids ?? []) {
      const what = `proxy SVID ${p.spiffeId}`;
      const identity = this.identity({ ...p, addresses: [] }, what, anchors, tls, now);
      if (!isNodeProxy(identity.id)) throw new ConfigError(`${what}: not a node proxy's SPIFFE ID (spiffe://<td>/weft/node/<node>/proxy)`);
      if (this.proxyByTrustDomain.has(identity.id.trustDomain)) throw new ConfigError(`${what}: a second one for ${identity.id.trustDomain}`);
      this.proxyByTrustDomain.set(identity.id.trustDomain, identity);
    }
    this.proxyAddress = config.proxy ? ipv4(config.proxy.address, "proxy address") : null;
    const targets = new Map<string, Endpoint>();
    for (const t of config.proxy?.targets ?? []) {
      const target = parseEndpoint(t);
      if (!target) throw new ConfigError(`proxy target ${JSON.stringify(t)}: not IPV4:PORT`);
      targets.set(t, target);
    }
    this.proxyTargets = targets;
    for (const a of config.proxy?.allow ?? []) {
      spiffeId(a.destination, "proxy allow destination");
      const prior = this.proxyAllowed.get(a.destination);
      this.proxyAllowed.set(a.destination, prior === null || !a.ports ? null : new Set([...(prior ?? []), ...a.ports]));
    }

    for (const r of config.remotes) {
      const what = `remote ${r.address}`;
      const address = ipv4(r.address, what);
      if (this.localByAddress.has(address) || this.remoteByAddress.has(address)) throw new ConfigError(`${what}: given twice`);
      const node = parseEndpoint(r.node);
      if (!node) throw new ConfigError(`${what}: ${JSON.stringify(r.node)} is not a node's IPV4:PORT`);
      this.remoteByAddress.set(address, { address, id: spiffeId(r.spiffeId, what), node: { host: node.address, port: node.port } });
    }

    for (const p of config.allow) {
      spiffeId(p.source, "allowed pair source");
      spiffeId(p.destination, "allowed pair destination");
      const key = pairKey(p.source, p.destination);
      const prior = this.pairs.get(key);
      if (prior === null || !p.ports) this.pairs.set(key, null);
      else this.pairs.set(key, new Set([...(prior ?? []), ...p.ports]));
    }
  }

  /** A local SVID checked (key, chain to its trust domain's bundle, SPIFFE ID) and kept in `local`. */
  private identity(
    w: { spiffeId: string; keyPem: string; chainPem: string; addresses: readonly string[] },
    what: string,
    anchors: ReadonlyMap<string, readonly X509Certificate[]>,
    tls: TlsPolicy,
    now: number,
  ): LocalIdentity {
    const id = spiffeId(w.spiffeId, what);
    if (this.local.has(id.id)) throw new ConfigError(`${what}: given twice`);
    const chain = certificates(w.chainPem, `${what} chain`);
    const leaf = chain[0]!;
    let key: KeyObject;
    try {
      key = createPrivateKey(w.keyPem);
    } catch (err) {
      throw new ConfigError(`${what}: unreadable key: ${(err as Error).message}`);
    }
    if (!leaf.checkPrivateKey(key)) throw new ConfigError(`${what}: the key does not belong to the certificate`);
    const proven = verifySvid(leaf, chain.slice(1), anchors, now);
    if (typeof proven === "string") throw new ConfigError(`${what}: the SVID does not verify (${proven})`);
    if (proven.id !== id.id) throw new ConfigError(`${what}: the SVID is for ${proven.id}`);
    const bundle = this.bundles.get(id.trustDomain)!;
    const keyPem = key.export({ type: "pkcs8", format: "pem" }) as string;
    const chainPem = chain.map((c) => c.toString()).join("");
    const identity: LocalIdentity = {
      id,
      addresses: w.addresses.map((a) => ipv4(a, what)),
      keyPem,
      chainPem,
      leaf,
      version: `${leaf.fingerprint256}/${bundle.digest}`,
      serverContext: createSecureContext({ ...tls.contextOptions, key: keyPem, cert: chainPem, ca: bundle.pem }),
    };
    this.local.set(id.id, identity);
    return identity;
  }

  /** Whether a node's proxy (of `destination`'s trust domain: the caller checks) may open a stream to `destination` on `port`. */
  proxyAllows(destination: string, port: number): boolean {
    const ports = this.proxyAllowed.get(destination);
    return this.proxyAddress !== null && (ports === null || (ports !== undefined && ports.has(port)));
  }

  /** Whether `source` may open a stream to `destination` on `port`. */
  allows(source: string, destination: string, port: number): boolean {
    const ports = this.pairs.get(pairKey(source, destination));
    return ports === null || (ports !== undefined && ports.has(port));
  }

  /** Every bundle's CA certificates by trust domain, for verifySvid. */
  anchors(): Map<string, readonly X509Certificate[]> {
    return new Map([...this.bundles].map(([td, b]) => [td, b.certificates] as const));
  }
}

/** The state before the first `configure`: nothing to present, nothing trusted, nothing allowed. */
export const emptyConfig = (): TransportConfig => ({ workloads: [], bundles: [], remotes: [], allow: [] });
