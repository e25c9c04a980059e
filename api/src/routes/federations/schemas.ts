import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { FederationSpec, Name, TrustDomain } from "../../mesh/specs.ts";

export const Federation = Type.Object(
  {
    name: Name,
    trustDomain: TrustDomain,
    bundle: FederationSpec.properties.bundle,
    status: Type.Union([Type.Literal("active"), Type.Literal("pending"), Type.Literal("unavailable")], {
      description:
        "active: the bundle is served to the tenant's workloads. pending: a named tenant has not declared the reverse federation (or does not exist, or has another trust domain: all read the same), or a bundle endpoint was not fetched yet. unavailable: the bundle endpoint's last fetch failed (see reason); its last good bundle, if any, is still served",
    }),
    reason: Type.Optional(Type.String({ description: "Why the federation is not active, for bundle endpoints" })),
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Federation" },
);
export type Federation = Static<typeof Federation>;

const Base64 = Type.String({ contentEncoding: "base64" });

export const FederatedBundles = Type.Object(
  {
    bundles: Type.Array(
      Type.Object({
        trustDomain: TrustDomain,
        x509Authorities: Type.Array(Base64, { description: "CA certificates, DER in base64" }),
        jwtAuthorities: Type.Array(Type.Object({ keyId: Type.String(), publicKey: Type.String({ contentEncoding: "base64", description: "SubjectPublicKeyInfo, DER in base64" }) })),
      }),
    ),
  },
  { title: "FederatedBundles" },
);
