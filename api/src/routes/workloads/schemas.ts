import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { Name } from "../../mesh/specs.ts";

export const Workload = Type.Object(
  {
    name: Name,
    identity: Name,
    node: Name,
    addresses: Type.Array(Type.String()),
    interface: Type.Union([Type.String(), Type.Null()]),
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Workload" },
);
export type Workload = Static<typeof Workload>;
