// The key material of one CA slot: an X.509 CA (key + self-signed
// certificate) and a JWT-SVID signing key, born and retired together as
// SPIRE does. Persisted sealed (private keys encrypted under the KEK); opened
// into signing-ready form on use.
import { createPrivateKey, type KeyObject } from "node:crypto";
import type { Kek } from "./kek.ts";
import { generateP256, jwkThumbprint, privateKeyDer, publicJwk } from "./keys.ts";
import type { Slot } from "./rotation.ts";
import { createCaCertificate, createLeafTemplate, type LeafTemplate } from "./x509.ts";
import { toPem } from "@weft/pki/der";
import type { BundleAuthority } from "./bundle.ts";

export const DEFAULT_CA_TTL_MS = 24 * 60 * 60 * 1000; // SPIRE's default: 24 h

/**
 * What the store persists for one slot, besides the Slot fields. Plain
 * strings (base64 DER, sealed blobs) so any column type works. No field is
 * secret in the clear; still, none of it belongs in an HTTP response except
 * through bundle.ts.
 */
export interface AuthorityMaterial {
  /** The CA certificate, base64 DER. */
  caCertDer: string;
  /** The CA private key (PKCS#8), sealed with the KEK. */
  caKeySealed: string;
  /** JWT signing key id (RFC 7638 thumbprint). */
  jwtKid: string;
  /** JWT public key, base64 SPKI DER. */
  jwtPublicKeySpki: string;
  /** JWT private key (PKCS#8), sealed with the KEK. */
  jwtKeySealed: string;
}

export type AuthoritySlot = Slot<AuthorityMaterial>;

// AAD for sealing: a sealed key only opens for the tenant, slot and purpose it was made for.
const sealContext = (tenantId: string, slotId: string, purpose: "x509-ca" | "jwt"): string =>
  `weft/ca/${tenantId}/${slotId}/${purpose}`;

export interface NewAuthorityInput {
  tenantId: string;
  slotId: string;
  trustDomain: string;
  now: Date;
  ttlMs?: number;
  kek: Kek;
}

/** Generates the keys and CA certificate for a new slot (not yet in any state). */
export function createAuthority(input: NewAuthorityInput): Omit<AuthoritySlot, "status" | "maxIssuedNotAfter"> {
  const ca = generateP256();
  const cert = createCaCertificate({
    trustDomain: input.trustDomain,
    privateKey: ca.privateKey,
    publicKeySpki: ca.publicKeySpki,
    now: input.now,
    ttlMs: input.ttlMs ?? DEFAULT_CA_TTL_MS,
  });
  const jwt = generateP256();
  return {
    id: input.slotId,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    material: {
      caCertDer: cert.der.toString("base64"),
      caKeySealed: input.kek.seal(privateKeyDer(ca.privateKey), sealContext(input.tenantId, input.slotId, "x509-ca")),
      jwtKid: jwkThumbprint(publicJwk(jwt.publicKeySpki)),
      jwtPublicKeySpki: jwt.publicKeySpki.toString("base64"),
      jwtKeySealed: input.kek.seal(privateKeyDer(jwt.privateKey), sealContext(input.tenantId, input.slotId, "jwt")),
    },
  };
}

export function bundleAuthority(m: AuthorityMaterial): BundleAuthority {
  return {
    caCertDer: Buffer.from(m.caCertDer, "base64"),
    jwtKid: m.jwtKid,
    jwtPublicKeySpki: Buffer.from(m.jwtPublicKeySpki, "base64"),
  };
}

/** A slot opened for signing. Holds private keys: keep it in memory only. */
export interface OpenAuthority {
  slotId: string;
  caCertDer: Buffer;
  /** The same certificate as PEM, encoded once: every X.509-SVID answer carries it as its chain. */
  caCertPem: string;
  leafTemplate: LeafTemplate;
  jwt: { kid: string; privateKey: KeyObject; notAfter: Date };
}

export function openAuthority(tenantId: string, slot: Omit<AuthoritySlot, "status" | "maxIssuedNotAfter">, kek: Kek): OpenAuthority {
  const pkcs8 = (sealed: string, purpose: "x509-ca" | "jwt"): KeyObject =>
    createPrivateKey({ key: kek.open(sealed, sealContext(tenantId, slot.id, purpose)), format: "der", type: "pkcs8" });
  const caCertDer = Buffer.from(slot.material.caCertDer, "base64");
  return {
    slotId: slot.id,
    caCertDer,
    caCertPem: toPem("CERTIFICATE", caCertDer),
    leafTemplate: createLeafTemplate({
      certDer: caCertDer,
      privateKey: pkcs8(slot.material.caKeySealed, "x509-ca"),
      notBefore: slot.notBefore,
      notAfter: slot.notAfter,
    }),
    jwt: { kid: slot.material.jwtKid, privateKey: pkcs8(slot.material.jwtKeySealed, "jwt"), notAfter: slot.notAfter },
  };
}
