// Key pairs for the CA (X.509 signing) and for JWT-SVID signing, and their
// public forms. Both are ECDSA P-256: the only curve every SPIFFE verifier
// must support, and ES256 is what JWT-SVID.md lists first.
import { createHash, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";

export interface EcKeyPair {
  privateKey: KeyObject;
  /** SubjectPublicKeyInfo DER. */
  publicKeySpki: Buffer;
}

export function generateP256(): EcKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateKey, publicKeySpki: publicKey.export({ type: "spki", format: "der" }) };
}

export interface EcPublicJwk {
  kty: "EC";
  crv: string;
  x: string;
  y: string;
}

export function publicJwk(spkiDer: Uint8Array): EcPublicJwk {
  const jwk = createPublicKey({ key: Buffer.from(spkiDer), format: "der", type: "spki" }).export({ format: "jwk" });
  if (jwk.kty !== "EC" || !jwk.crv || !jwk.x || !jwk.y) throw new Error("expected an EC public key");
  return { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
}

/**
 * RFC 7638 JWK thumbprint: a key id derived from the key itself, so it is
 * unique without coordination and stable across restarts.
 */
export function jwkThumbprint(jwk: EcPublicJwk): string {
  // Members in lexicographic order, no whitespace, as RFC 7638 3.2 requires.
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash("sha256").update(canonical).digest("base64url");
}

export const privateKeyDer = (k: KeyObject): Buffer => k.export({ type: "pkcs8", format: "der" });
