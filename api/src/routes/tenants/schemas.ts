import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { DefaultAction, DefaultTransport, Labels, Name, TenantSpec } from "../../mesh/specs.ts";

export const NewTenant = Type.Composite([Type.Object({ name: Name }), TenantSpec], { additionalProperties: false });
export type NewTenant = Static<typeof NewTenant>;

export const Tenant = Type.Object(
  {
    name: Name,
    displayName: Type.String(),
    labels: Labels,
    trustDomain: Type.String(),
    defaultAction: DefaultAction,
    defaultTransport: DefaultTransport,
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Tenant" },
);
export type Tenant = Static<typeof Tenant>;
