import { Type } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";

const b64url = Type.String({ description: "base64url" });

/** One key of a SPIFFE bundle (SPIFFE_Trust_Domain_and_Bundle.md 4): an EC P-256 public JWK. */
export const BundleKey = Type.Object(
  {
    kty: Type.Literal("EC"),
    crv: Type.String(),
    x: b64url,
    y: b64url,
    use: Type.Union([Type.Literal("x509-svid"), Type.Literal("jwt-svid")]),
    x5c: Type.Optional(Type.Array(Type.String({ description: "base64 DER" }), { minItems: 1, maxItems: 1 })),
    kid: Type.Optional(Type.String()),
  },
  { title: "BundleKey" },
);

export const Bundle = Type.Object(
  {
    keys: Type.Array(BundleKey),
    spiffe_sequence: Type.Integer({ description: "Rises whenever the set of keys changes" }),
    spiffe_refresh_hint: Type.Integer({ description: "Seconds between refreshes a consumer should use" }),
  },
  { title: "SpiffeBundle" },
);

/** A JWT-SVID public key for JWKS consumers (RFC 7517): the bundle's jwt-svid key with `use: "sig"`. */
export const SigningKey = Type.Object(
  {
    kty: Type.Literal("EC"),
    crv: Type.String(),
    x: b64url,
    y: b64url,
    use: Type.Literal("sig"),
    alg: Type.Literal("ES256"),
    kid: Type.String(),
  },
  { title: "JwtSigningKey" },
);

export const Jwks = Type.Object({ keys: Type.Array(SigningKey) }, { title: "JwtSigningKeySet" });

export const Authority = Type.Object(
  {
    id: Type.String({ format: "uuid" }),
    status: Type.Union([Type.Literal("prepared"), Type.Literal("active"), Type.Literal("old")]),
    notBefore: Timestamp,
    notAfter: Timestamp,
    maxIssuedNotAfter: Type.Union([Timestamp, Type.Null()], { description: "Expiry of the last SVID it signed" }),
  },
  { title: "CaAuthority" },
);

/** The CA's slots without their key material: status and lifetimes only. */
export const CaStatus = Type.Object(
  { bundleSequence: Type.Integer(), authorities: Type.Array(Authority) },
  { title: "CaStatus" },
);
