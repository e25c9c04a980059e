import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { Labels, Name } from "../../mesh/specs.ts";

export const IdentityParams = Type.Object({ tenant: Name, name: Name });

export const Identity = Type.Object(
  {
    name: Name,
    path: Type.String(),
    spiffeId: Type.String({ description: "spiffe://<trust domain><path>" }),
    securityIdentity: Type.Integer({
      minimum: 256,
      maximum: 4_294_967_295,
      description: "Numeric identity for the datapath: u32, unique across tenants, never reused; 0-255 are reserved",
    }),
    selectors: Labels,
    nodeSelector: { ...Labels, description: "Node labels a node must carry to run this identity; empty: any node" },
    allowNodeRegistration: Type.Boolean({ description: "Whether node credentials may declare workloads of this identity themselves" }),
    x509SvidTtlSeconds: Type.Union([Type.Integer(), Type.Null()]),
    jwtSvidTtlSeconds: Type.Union([Type.Integer(), Type.Null()]),
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Identity" },
);
export type Identity = Static<typeof Identity>;

export const X509SvidRequest = Type.Object(
  {
    csr: Type.String({
      minLength: 1,
      maxLength: 16_384,
      description: "PKCS#10 CSR, PEM; EC P-256/P-384 or RSA >= 2048; at most the identity's SPIFFE ID as URI SAN",
    }),
  },
  { additionalProperties: false },
);

export const X509Svid = Type.Object(
  {
    certificate: Type.String({ description: "The leaf, PEM" }),
    chain: Type.Array(Type.String(), { description: "Issuer certificates up from the leaf, PEM each" }),
    expiresAt: Timestamp,
    serial: Type.String({ description: "Hex serial, for the issuance record" }),
  },
  { title: "X509Svid" },
);

export const NodeProxySvid = Type.Object(
  {
    ...X509Svid.properties,
    spiffeId: Type.String({ description: "spiffe://<trust domain>/weft/node/<node>/proxy: the calling node's L7 proxy" }),
  },
  { title: "NodeProxySvid" },
);

export const JwtSvidRequest = Type.Object(
  { audience: Type.Array(Type.String({ minLength: 1, maxLength: 512 }), { minItems: 1, maxItems: 32 }) },
  { additionalProperties: false },
);

export const JwtSvid = Type.Object({ token: Type.String(), expiresAt: Timestamp }, { title: "JwtSvid" });
