import { Type, type Static } from "@sinclair/typebox";
import { Ipv4, Name, Timestamp } from "../../http/schemas.ts";

export const WorkloadSpec = Type.Object(
  {
    identity: { ...Name, description: "An identity of the same tenant" },
    node: { ...Name, description: "A registered node" },
    addresses: Type.Array(Ipv4, {
      minItems: 1,
      maxItems: 16,
      uniqueItems: true,
      description: "Unique across the platform; the first is the one services send to",
    }),
    interface: Type.Optional(
      Type.String({ pattern: "^[A-Za-z0-9_.@-]{1,15}$", description: "Host-side veth the agent guards (Linux name, at most 15 bytes)" }),
    ),
  },
  { additionalProperties: false },
);
export type WorkloadSpec = Static<typeof WorkloadSpec>;

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
