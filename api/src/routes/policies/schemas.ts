import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { Name, PolicyMode, Rule, Selector } from "../../mesh/specs.ts";

export const Policy = Type.Object(
  {
    name: Name,
    subject: Selector,
    ingress: Type.Union([Type.Array(Rule), Type.Null()]),
    egress: Type.Union([Type.Array(Rule), Type.Null()]),
    mode: PolicyMode,
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Policy" },
);
export type Policy = Static<typeof Policy>;
