import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { Backends, LoadBalancing, Name, ServicePort, Topology } from "../../mesh/specs.ts";

export const Service = Type.Object(
  {
    name: Name,
    vip: Type.String(),
    vipAllocated: Type.Boolean({ description: "True when the API chose the VIP" }),
    ports: Type.Array(ServicePort),
    backends: Backends,
    loadBalancing: LoadBalancing,
    topology: Topology,
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Service" },
);
export type Service = Static<typeof Service>;
