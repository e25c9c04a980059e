// SPDX-License-Identifier: Apache-2.0
/**
 * Who a peer certificate speaks for, by the X509-SVID rules the transport
 * enforces itself on top of OpenSSL's path validation: exactly one URI SAN,
 * a well-formed spiffe:// ID, inside its validity, and a chain that ends at
 * a CA of THAT trust domain's bundle. OpenSSL alone would accept any chain to
 * any CA it was given, so a tenant's CA could vouch for another tenant's
 * trust domain; anchoring by the SAN's trust domain is what stops it.
 */
import { X509Certificate } from "node:crypto";

/** Why a certificate does not prove a SPIFFE ID; bounded, so it can be a metric label. */
export type SvidRejection =
  | "no_uri_san"
  | "several_uri_sans"
  | "not_spiffe"
  | "expired"
  | "not_yet_valid"
  | "unknown_trust_domain"
  | "untrusted_chain";

/** spiffe://trust-domain/path (SPIFFE ID spec 2.1–2.3: lowercase trust domain, non-empty segments, no dot segments, no query or fragment). */
const SPIFFE_ID = /^spiffe:\/\/([a-z0-9._-]{1,255})((?:\/[A-Za-z0-9._-]+)*)$/;

export interface SpiffeId {
  id: string;
  trustDomain: string;
}

export function parseSpiffeId(id: string): SpiffeId | null {
  const m = SPIFFE_ID.exec(id);
  if (!m || id.length > 2048) return null;
  if (m[2]!.split("/").some((s) => s === "." || s === "..")) return null;
  return { id, trustDomain: m[1]! };
}

/** A node's L7 proxy (spiffe://<td>/weft/node/<node>/proxy: api/src/ca/node-proxy-id.ts); no tenant's identity may take such a path. */
const NODE_PROXY_PATH = /^spiffe:\/\/[^/]+\/weft\/node\/[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\/proxy$/;

export const isNodeProxy = (id: SpiffeId): boolean => NODE_PROXY_PATH.test(id.id);

/** The URI SANs of a certificate; Node quotes a value holding a comma or quote, which no SPIFFE ID has, so it is kept quoted and fails the ID check. */
function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? "")
    .split(", ")
    .filter((n) => n.startsWith("URI:"))
    .map((n) => n.slice(4));
}

/** The one SPIFFE ID a certificate carries, or why it carries none. */
export function svidId(cert: X509Certificate): SpiffeId | SvidRejection {
  const uris = uriSans(cert);
  if (uris.length === 0) return "no_uri_san";
  if (uris.length > 1) return "several_uri_sans";
  return parseSpiffeId(uris[0]!) ?? "not_spiffe";
}

const MAX_CHAIN = 5;

function validAt(cert: X509Certificate, now: number): SvidRejection | null {
  if (now < Date.parse(cert.validFrom)) return "not_yet_valid";
  if (now > Date.parse(cert.validTo)) return "expired";
  return null;
}

const signs = (issuer: X509Certificate, cert: X509Certificate): boolean => issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);

/**
 * The SPIFFE ID `leaf` proves, given the intermediates the peer presented and
 * the trust bundles by trust domain, or why it proves none.
 */
export function verifySvid(
  leaf: X509Certificate,
  presented: readonly X509Certificate[],
  bundles: ReadonlyMap<string, readonly X509Certificate[]>,
  now = Date.now(),
): SpiffeId | SvidRejection {
  const id = svidId(leaf);
  if (typeof id === "string") return id;
  const anchors = bundles.get(id.trustDomain);
  if (!anchors || anchors.length === 0) return "unknown_trust_domain";
  let cur = leaf;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const bad = validAt(cur, now);
    if (bad) return bad;
    const anchor = anchors.find((a) => signs(a, cur));
    if (anchor) return validAt(anchor, now) ?? id;
    const next = presented.find((p) => p !== cur && !p.publicKey.equals(cur.publicKey) && signs(p, cur));
    if (!next) return "untrusted_chain";
    cur = next;
  }
  return "untrusted_chain";
}
