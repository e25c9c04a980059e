import { Type, type Static } from "@sinclair/typebox";
import { Labels, Name, Timestamp } from "../../http/schemas.ts";

export const TrustDomain = Type.String({
  pattern: "^[a-z0-9._-]+$",
  minLength: 1,
  maxLength: 255,
  description: "SPIFFE trust domain: lowercase letters, digits, '.', '-', '_'; default <tenant>.<suffix>",
});

export const DefaultAction = Type.Union([Type.Literal("allow"), Type.Literal("deny")], {
  description: "Verdict for a workload no policy selects in a direction (default allow); other tenants are always denied",
});

export const TenantSpec = Type.Object(
  {
    displayName: Type.Optional(Type.String({ maxLength: 200 })),
    labels: Type.Optional(Labels),
    trustDomain: Type.Optional(TrustDomain),
    defaultAction: Type.Optional(DefaultAction),
  },
  { additionalProperties: false },
);
export type TenantSpec = Static<typeof TenantSpec>;

export const NewTenant = Type.Composite([Type.Object({ name: Name }), TenantSpec], { additionalProperties: false });
export type NewTenant = Static<typeof NewTenant>;

export const Tenant = Type.Object(
  {
    name: Name,
    displayName: Type.String(),
    labels: Labels,
    trustDomain: Type.String(),
    defaultAction: DefaultAction,
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Tenant" },
);
export type Tenant = Static<typeof Tenant>;
