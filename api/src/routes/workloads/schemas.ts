import { Type, type Static } from "@sinclair/typebox";
import { Timestamp } from "../../http/schemas.ts";
import { HealthCheck, Name } from "../../mesh/specs.ts";

export const Workload = Type.Object(
  {
    name: Name,
    identity: Name,
    node: Name,
    addresses: Type.Array(Type.String()),
    interface: Type.Union([Type.String(), Type.Null()]),
    healthCheck: Type.Union([HealthCheck, Type.Null()], { description: "As declared, defaults filled; null: not probed" }),
    etag: Type.String(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { title: "Workload" },
);
export type Workload = Static<typeof Workload>;

export const WorkloadHealth = Type.Object(
  {
    state: Type.Union([Type.Literal("unknown"), Type.Literal("healthy"), Type.Literal("unhealthy")], {
      description: "unknown until the node's agent reports a threshold passed (or when the workload declares no healthCheck); unhealthy withdraws it as a backend on every node while another backend serves",
    }),
    since: Type.Union([Timestamp, Type.Null()]),
    node: Type.Union([Name, Type.Null()], { description: "The node whose agent reported it" }),
  },
  { title: "WorkloadHealth" },
);
export type WorkloadHealth = Static<typeof WorkloadHealth>;
