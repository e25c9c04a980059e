// Trust bundles: the SPIFFE bundle format (SPIFFE_Trust_Domain_and_Bundle.md
// section 4, a JWK set) and plain PEM.
import { toPem } from "@weft/pki/der";
import { publicJwk, type EcPublicJwk } from "./keys.ts";
import { readCertificate } from "@weft/pki/x509";

/** SPIRE's default bundle refresh hint is 5 minutes. */
export const DEFAULT_REFRESH_HINT_SECONDS = 300;

/** The public half of one CA slot: everything a bundle needs, nothing secret. */
export interface BundleAuthority {
  caCertDer: Buffer;
  jwtKid: string;
  jwtPublicKeySpki: Buffer;
}

export type X509SvidJwk = EcPublicJwk & { use: "x509-svid"; x5c: [string] };
export type JwtSvidJwk = EcPublicJwk & { use: "jwt-svid"; kid: string };

export interface SpiffeBundle {
  keys: (X509SvidJwk | JwtSvidJwk)[];
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

/**
 * The bundle for a set of authorities (prepared, active and old alike: a
 * prepared CA must be trusted before it signs, an old one until its last
 * SVID expires). x509-svid keys carry no kid, as the spec requires.
 */
export function buildBundle(
  authorities: readonly BundleAuthority[],
  sequence: number,
  refreshHintSeconds = DEFAULT_REFRESH_HINT_SECONDS,
): SpiffeBundle {
  const x509 = authorities.map((a): X509SvidJwk => ({
    ...publicJwk(readCertificate(a.caCertDer).spkiDer),
    use: "x509-svid",
    x5c: [a.caCertDer.toString("base64")],
  }));
  const jwt = authorities.map((a): JwtSvidJwk => ({ ...publicJwk(a.jwtPublicKeySpki), use: "jwt-svid", kid: a.jwtKid }));
  return { keys: [...x509, ...jwt], spiffe_sequence: sequence, spiffe_refresh_hint: refreshHintSeconds };
}

export function bundlePem(authorities: readonly BundleAuthority[]): string {
  return authorities.map((a) => toPem("CERTIFICATE", a.caCertDer)).join("");
}

/** A JWT-SVID key as OIDC-style verifiers (jose, most JWT libraries) take it: `use: "sig"`, its alg named. */
export type JwtSigningJwk = EcPublicJwk & { use: "sig"; alg: "ES256"; kid: string };

/**
 * The bundle's JWT-SVID keys as a plain JWK set. The SPIFFE bundle marks them
 * `use: "jwt-svid"`, as its spec requires, and a JWKS consumer such as jose's
 * createRemoteJWKSet skips any key whose `use` is not "sig"; this set is the
 * same keys (prepared, active and old alike) relabelled for those verifiers.
 */
export function jwtSigningKeys(bundle: SpiffeBundle): { keys: JwtSigningJwk[] } {
  const keys = bundle.keys.filter((k): k is JwtSvidJwk => k.use === "jwt-svid");
  return { keys: keys.map((k) => ({ ...k, use: "sig", alg: "ES256" })) };
}
